"""The Transform component's `preprocessing_fn`: raw tf.Example features -> embedding ids.

Every feature comes out as int64 ids ready for an embedding table:

* VOCABULARY: `[batch]`, `tft.compute_and_apply_vocabulary` with OOV buckets;
  a missing value is the token `MISSING`, learned like any other value.
* HASH: `[batch]`, `MISSING` or the id hashed into `buckets` buckets.
* TAGS: `[batch, max_tags]`, each tag hashed to 1..buckets, 0 pads.
* QUANTILES: `[batch]`, the quantile bucket 0..buckets-1, or `buckets` when
  the value is missing.

Labels pass through unchanged (int64 `[batch]`). Raw columns arrive as
SparseTensors because any of them may be missing at serving time.
"""

import tensorflow as tf
import tensorflow_transform as tft

from models import features as F

MISSING = "<missing>"


def _dense_string(x):
  """[batch, 0 or 1] sparse strings -> [batch]; missing and '' become MISSING."""
  if isinstance(x, tf.SparseTensor):
    x = tf.sparse.to_dense(
        tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value="")
    x = tf.squeeze(x, axis=1)
  return tf.where(tf.equal(x, ""), MISSING, x)


def _dense_float(x):
  """[batch, 0 or 1] sparse floats -> ([batch] values, [batch] present mask)."""
  if isinstance(x, tf.SparseTensor):
    x = tf.sparse.to_dense(
        tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]),
        default_value=float("nan"))
    x = tf.squeeze(x, axis=1)
  present = tf.math.is_finite(x)
  return tf.where(present, x, 0.0), present


def tag_ids(x, buckets: int, max_tags: int, separator: str):
  """'a|b|c' strings [batch] -> hashed tag ids [batch, max_tags] in 1..buckets, 0 pads."""
  tags = tf.strings.split(x, sep=separator)
  tags = tf.ragged.boolean_mask(tags, tf.not_equal(tags, ""))
  ids = tf.strings.to_hash_bucket_fast(tags, buckets) + 1
  return ids.to_tensor(default_value=0, shape=[None, max_tags])


def encode_feature(feature: F.Feature, raw):
  """One raw column (dense or sparse) -> int64 ids, as described above."""
  if feature.encoding is F.Encoding.QUANTILES:
    value, present = _dense_float(raw)
    boundaries = tft.quantiles(
        tf.boolean_mask(value, present), num_buckets=feature.buckets, epsilon=0.01)
    buckets = tft.apply_buckets(value, boundaries)
    return tf.where(present, buckets, tf.cast(feature.buckets, tf.int64))
  text = _dense_string(raw)
  if feature.encoding is F.Encoding.VOCABULARY:
    return tft.compute_and_apply_vocabulary(
        text, num_oov_buckets=feature.buckets,
        vocab_filename=F.vocabulary_name(feature))
  if feature.encoding is F.Encoding.HASH:
    return tf.strings.to_hash_bucket_fast(text, feature.buckets)
  if feature.encoding is F.Encoding.TAGS:
    text = tf.where(tf.equal(text, MISSING), "", text)
    return tag_ids(text, feature.buckets, feature.max_tags, feature.separator)
  raise ValueError(f"feature '{feature.name}': unknown encoding {feature.encoding}")


def preprocessing_fn(inputs):
  """tf.Transform entry point (Transform(preprocessing_fn='models.preprocessing.preprocessing_fn'))."""
  outputs = {f.name: encode_feature(f, inputs[f.name]) for f in F.FEATURES}
  for label in F.LABELS:
    if label in inputs:
      outputs[label] = _dense_label(inputs[label])
  return outputs


def _dense_label(x):
  if isinstance(x, tf.SparseTensor):
    x = tf.squeeze(tf.sparse.to_dense(
        tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1])), axis=1)
  elif x.shape.rank == 2:
    x = tf.squeeze(x, axis=1)
  return tf.cast(x, tf.int64)


def embedding_rows(feature: F.Feature, tf_transform_output) -> int:
  """The embedding table size a feature's ids need."""
  if feature.encoding is F.Encoding.VOCABULARY:
    return tf_transform_output.vocabulary_size_by_name(
        F.vocabulary_name(feature)) + feature.buckets
  if feature.encoding is F.Encoding.HASH:
    return feature.buckets
  return feature.buckets + 1  # TAGS: 0 pads; QUANTILES: the missing bucket
