"""A CSV ExampleGen that types columns by the declared raw columns, not by guessing."""
