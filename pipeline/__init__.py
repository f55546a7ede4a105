"""The TFX pipeline graph and its runners."""
