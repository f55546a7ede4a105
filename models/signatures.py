"""Serving signatures of the exported SavedModel (the contract other tools rely on).

* `serving_default`: `examples` DT_STRING [None], serialized tf.Examples of raw
  features (labels not needed; any field may be missing).
* `serving_raw`: each raw feature as a named [None] tensor (strings, `price`
  float32); an empty string or a NaN price means missing.

Both return float32 [None] probabilities keyed by task tower name, computed by
the same Transform graph and Keras model.
"""

import tensorflow as tf

from models import features as F


def _raw_serving_spec(tf_transform_output):
  spec = tf_transform_output.raw_feature_spec()
  for label in F.LABELS:
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


def make_signatures(model, tf_transform_output):
  """Returns {'serving_default': ..., 'serving_raw': ...} concrete functions."""
  model.tft_layer = tf_transform_output.transform_features_layer()
  spec = _raw_serving_spec(tf_transform_output)

  def predict(raw_features):
    transformed = model.tft_layer(raw_features)
    probabilities = model({f.name: transformed[f.name] for f in F.FEATURES}, training=False)
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
      else:
        missing = tf.logical_not(tf.math.is_finite(value))
      raw[name] = _as_sparse(value, missing)
    return predict(raw)

  raw_inputs = {
      name: tf.TensorSpec([None], tf.float32 if F.COLUMN_TYPES[name] is F.ColumnType.FLOAT
                          else tf.string, name=name)
      for name in spec}
  return {
      "serving_default": serve_examples.get_concrete_function(),
      "serving_raw": tf.function(serve_raw).get_concrete_function(raw_inputs),
  }
