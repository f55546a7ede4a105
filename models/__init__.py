"""The model library: features, preprocessing_fn, Keras layers and model, run_fn, TFMA config."""
