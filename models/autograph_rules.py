"""Keep AutoGraph out of Keras' own code when Keras is tf_keras.

TensorFlow 2.16's AutoGraph skips the `keras` package but not `tf_keras`, the
Keras 2 that TFX 1.16 needs (TF_USE_LEGACY_KERAS=1). Tracing a model, and above
all saving a SavedModel, then transpiles Keras internals: measured here, a
test that builds, trains and saves a model took 209 s with it and 109 s
without. Our own layers are still converted.
"""

_applied = False


def skip_tf_keras() -> None:
  """Adds tf_keras to AutoGraph's do-not-convert rules (once per process)."""
  global _applied
  if _applied:
    return
  try:
    from tensorflow.python.autograph.core import config as ag_config
    rules = ag_config.CONVERSION_RULES
    ag_config.CONVERSION_RULES = (ag_config.DoNotConvert("tf_keras"),) + tuple(rules)
  except (ImportError, AttributeError):  # a TF without these internals: nothing to fix
    pass
  _applied = True
