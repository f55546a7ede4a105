"""Serving signatures of the exported SavedModel (the contract other tools rely on).

* `serving_default`: `examples` DT_STRING [None], serialized tf.Examples of raw
  features (labels not needed; any field may be missing).
* `serving_raw`: each raw feature column as a named [None] tensor, typed by
  `data_config.input_fields`: STRING -> string ('' means missing), FLOAT /
  DOUBLE -> float32 (NaN means missing), INT32 / INT64 -> int64 (always
  present; send a tf.Example to `serving_default` to leave one out).

Both return float32 [None] probabilities keyed by task tower name, computed by
the same Transform graph and Keras model.

* `transformed_features` (when the config has derived features,
  models.preprocessing.derived_features): `examples` as `serving_default` ->
  the Transform-computed slice features, e.g. `user_activity` int64 [None].
  The Evaluator runs it to slice by them (ModelSpec.preprocessing_function_names;
  the name is TFMA's default preprocessing signature, which TFMA also calls,
  when present, on a baseline model it wasn't told to). Only the derived
  features: TFMA looks a slice feature up in these outputs before the raw
  ones, so returning every Transform output would make `pid` slices show
  vocabulary ids instead of the raw values.
"""

import tensorflow as tf

from models.backbone import model_features
from models.features import ColumnType
from models.preprocessing import derived_features

# The signature TFMA runs for the slice features (models.eval_config).
TRANSFORM_SIGNATURE = "transformed_features"

_DTYPES = {ColumnType.STRING: tf.string, ColumnType.FLOAT: tf.float32,
           ColumnType.INT: tf.int64}


def _raw_serving_spec(tf_transform_output, config):
  spec = tf_transform_output.raw_feature_spec()
  for label in config.labels:
    spec.pop(label, None)
  return spec


def _as_sparse(values, missing):
  """[batch] dense -> [batch, 1] SparseTensor without the missing entries."""
  keep = tf.where(tf.logical_not(missing))
  batch = tf.shape(values, out_type=tf.int64)[0]
  return tf.SparseTensor(
      indices=tf.concat([keep, tf.zeros_like(keep)], axis=1),
      values=tf.gather_nd(values, keep),
      dense_shape=tf.stack([batch, tf.constant(1, tf.int64)]))


def make_signatures(model, tf_transform_output, config):
  """Returns {'serving_default', 'serving_raw'[, 'transformed_features']} concrete functions."""
  model.tft_layer = tf_transform_output.transform_features_layer()
  spec = _raw_serving_spec(tf_transform_output, config)
  names = [f.name for f in model_features(config)]

  def predict(raw_features):
    transformed = model.tft_layer(raw_features)
    probabilities = model({name: transformed[name] for name in names}, training=False)
    return {task: tf.reshape(p, [-1]) for task, p in probabilities.items()}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
  def serve_examples(examples):
    return predict(tf.io.parse_example(examples, spec))

  def serve_raw(features):
    raw = {}
    for name in spec:
      value = features[name]
      if value.dtype == tf.string:
        missing = tf.equal(value, "")
      elif value.dtype.is_floating:
        missing = tf.logical_not(tf.math.is_finite(value))
      else:
        missing = tf.zeros_like(value, tf.bool)
      raw[name] = _as_sparse(value, missing)
    return predict(raw)

  types = config.column_types
  raw_inputs = {name: tf.TensorSpec([None], _DTYPES[types[name]], name=name) for name in spec}
  signatures = {
      "serving_default": serve_examples.get_concrete_function(),
      "serving_raw": tf.function(serve_raw).get_concrete_function(raw_inputs),
  }
  derived = derived_features(config)
  if derived:
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_examples(examples):
      transformed = model.tft_layer(tf.io.parse_example(examples, spec))
      return {name: transformed[name] for name in derived}

    signatures[TRANSFORM_SIGNATURE] = transform_examples.get_concrete_function()
  return signatures
