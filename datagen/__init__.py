"""Synthetic data in the layouts the pipeline reads."""
