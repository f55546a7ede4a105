"""Our own TFX components: the typed CSV ExampleGen and the anomalies gate."""
