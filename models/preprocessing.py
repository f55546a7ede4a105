"""The Transform component's `preprocessing_fn`: raw tf.Example features -> model inputs.

What each feature becomes is set by the config's `feature_config`
(`models.features.Encoding`); ids are int64 ready for an embedding table:

* HASH: `[batch]`, the value (or `MISSING`) hashed into `hash_bucket_size`.
* VOCABULARY: `[batch]`, `tft.compute_and_apply_vocabulary` with OOV buckets;
  `MISSING` is learned like any other value.
* VOCAB_LIST: `[batch]`, the value's index in `vocab_list`; anything else,
  missing included, is the one id after the list.
* IDENTITY: `[batch]`, the integer value; missing or outside
  `[0, num_buckets)` is the id `num_buckets`.
* TAGS: `[batch, max_tags]`, each tag hashed to 1..buckets, 0 pads.
* BOUNDARIES: `[batch]`, the bucket of the value among `boundaries`;
  missing is the id after the last bucket.
* RAW: float32 `[batch]`, the value, 0 when missing.

Labels pass through as int64 `[batch]`. Raw columns arrive as SparseTensors
because any of them may be missing at serving time.

Derived features (`derived_features(config)`), for slicing the evaluation,
not read by the model unless the config's feature groups name them:

* `user_activity` (when the config names a `data_config.user_id_field`, our
  extension): int64 `[batch]`, the user's number of impressions in the
  Transform analysis data (the train split), bucketed by ACTIVITY_EDGES =
  (1, 5, 20, 100): 0 = none (a user the train split hasn't seen, or no user
  id), 1 = 1-4, 2 = 5-19, 3 = 20-99, 4 = 100 or more.
"""

from typing import Tuple

import tensorflow as tf
import tensorflow_transform as tft

from models.config import parse_config
from models.features import ColumnType, Encoding, Feature, vocabulary_name

MISSING = "<missing>"
# Transform(custom_config={CONFIG_KEY: config.transform_text()})
CONFIG_KEY = "config"

ACTIVITY_FEATURE = "user_activity"
# Impressions in the analysis data at which a user enters the next activity level.
ACTIVITY_EDGES = (1, 5, 20, 100)
ACTIVITY_LEVELS = ("none", "1-4", "5-19", "20-99", "100+")  # level i's name


def _dense(x, default):
  """[batch, 0 or 1] sparse (or [batch] dense) -> ([batch] values, [batch] present)."""
  if isinstance(x, tf.SparseTensor):
    shape = [x.dense_shape[0], 1]
    present = tf.sparse.to_dense(tf.SparseTensor(
        x.indices, tf.ones_like(x.values, tf.bool), shape), default_value=False)
    x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, shape),
                           default_value=default)
    return tf.squeeze(x, axis=1), tf.squeeze(present, axis=1)
  if x.shape.rank == 2:
    x = tf.squeeze(x, axis=1)
  return x, tf.ones_like(x, tf.bool)


def _text(x, column_type):
  """Any column as strings [batch]; missing and '' become MISSING."""
  value, present = _dense(x, "" if column_type is ColumnType.STRING else 0)
  if column_type is not ColumnType.STRING:
    value = tf.strings.as_string(value)
  return tf.where(tf.logical_and(present, tf.not_equal(value, "")), value, MISSING)


def _number(x, column_type):
  value, present = _dense(x, 0 if column_type is ColumnType.INT else 0.0)
  if column_type is ColumnType.FLOAT:
    present = tf.logical_and(present, tf.math.is_finite(value))
  return value, present


def tag_ids(x, buckets: int, max_tags: int, separator: str):
  """'a|b|c' strings [batch] -> hashed tag ids [batch, max_tags] in 1..buckets, 0 pads."""
  tags = tf.strings.split(x, sep=separator)
  tags = tf.ragged.boolean_mask(tags, tf.not_equal(tags, ""))
  ids = tf.strings.to_hash_bucket_fast(tags, buckets) + 1
  return ids.to_tensor(default_value=0, shape=[None, max_tags])


def encode_feature(feature: Feature, raw, column_type: ColumnType):
  """One raw column (dense or sparse) -> model input, as described above."""
  encoding = feature.encoding
  if encoding is Encoding.IDENTITY:
    value, present = _number(raw, column_type)
    value = tf.cast(value, tf.int64)
    inside = tf.logical_and(present, tf.logical_and(value >= 0, value < feature.buckets))
    return tf.where(inside, value, tf.constant(feature.buckets, tf.int64))
  if encoding is Encoding.BOUNDARIES:
    value, present = _number(raw, column_type)
    bucket = tf.raw_ops.Bucketize(input=tf.cast(value, tf.float32),
                                  boundaries=list(feature.boundaries))
    return tf.where(present, tf.cast(bucket, tf.int64),
                    tf.constant(len(feature.boundaries) + 1, tf.int64))
  if encoding is Encoding.RAW:
    value, present = _number(raw, column_type)
    return tf.where(present, tf.cast(value, tf.float32), 0.0)
  text = _text(raw, column_type)
  if encoding is Encoding.HASH:
    return tf.strings.to_hash_bucket_fast(text, feature.buckets)
  if encoding is Encoding.VOCABULARY:
    return tft.compute_and_apply_vocabulary(
        text, num_oov_buckets=feature.buckets, vocab_filename=vocabulary_name(feature),
        frequency_threshold=feature.frequency_threshold or None)
  if encoding is Encoding.VOCAB_LIST:
    matches = tf.equal(text[:, None], tf.constant(feature.vocabulary)[None, :])
    index = tf.argmax(tf.cast(matches, tf.int32), axis=1, output_type=tf.int64)
    return tf.where(tf.reduce_any(matches, axis=1), index,
                    tf.constant(len(feature.vocabulary), tf.int64))
  if encoding is Encoding.TAGS:
    text = tf.where(tf.equal(text, MISSING), "", text)
    return tag_ids(text, feature.buckets, feature.max_tags, feature.separator)
  raise ValueError(f"feature '{feature.name}': unknown encoding {encoding}")


def derived_features(config) -> Tuple[str, ...]:
  """The Transform outputs computed for slicing rather than from a feature's config."""
  return (ACTIVITY_FEATURE,) if config.user_id_field else ()


def _impression_counts(keys, vocabulary_path):
  """lookup_fn for tft.apply_vocabulary: a key's count in a `store_frequency`
  vocabulary file ('<count> <key>' lines), 0 for a key not in it."""
  table = tf.lookup.StaticHashTable(
      tf.lookup.TextFileInitializer(vocabulary_path, key_dtype=tf.string, key_index=1,
                                    value_dtype=tf.int64, value_index=0, delimiter=" "),
      default_value=0)
  return table.lookup(keys), table.size()


def user_activity(user_ids, column_type: ColumnType):
  """User id column [batch] -> activity level [batch] int64 (see the module docstring)."""
  users = _text(user_ids, column_type)
  counts = tft.apply_vocabulary(
      users, tft.vocabulary(users, vocab_filename="user_impressions", store_frequency=True),
      lookup_fn=_impression_counts)
  counts = tf.where(tf.equal(users, MISSING), tf.zeros_like(counts), counts)
  level = tf.raw_ops.Bucketize(input=tf.cast(counts, tf.float32),
                               boundaries=[float(e) for e in ACTIVITY_EDGES])
  return tf.cast(level, tf.int64)


def transform_features(inputs, config):
  """Raw features (and labels when present) -> the configured features and labels.

  Works eagerly too (no analysis pass) for configs without learned vocabularies;
  the derived features, which always need one, are preprocessing_fn's."""
  types = config.column_types
  outputs = {f.name: encode_feature(f, inputs[f.column], types[f.column])
             for f in config.features}
  for label in config.labels:
    if label in inputs:
      outputs[label] = tf.cast(_dense(inputs[label], 0)[0], tf.int64)
  return outputs


def derived_outputs(inputs, config):
  """The derived features (module docstring), computed from the analysis data."""
  outputs = {}
  if ACTIVITY_FEATURE in derived_features(config):
    column = config.user_id_field
    outputs[ACTIVITY_FEATURE] = user_activity(inputs[column], config.column_types[column])
  return outputs


def preprocessing_fn(inputs, custom_config):
  """tf.Transform entry point (Transform(preprocessing_fn='models.preprocessing.preprocessing_fn'))."""
  config = parse_config(custom_config[CONFIG_KEY], source="Transform custom_config",
                        require_model=False)
  outputs = transform_features(inputs, config)
  for name in derived_features(config):
    if name in outputs:
      raise ValueError(f"feature_config: a feature is named '{name}', which Transform "
                       f"computes itself (models.preprocessing.derived_features)")
  outputs.update(derived_outputs(inputs, config))
  return outputs


def embedding_rows(feature: Feature, tf_transform_output=None) -> int:
  """The embedding table size a feature's ids need (0 for RAW, which isn't embedded)."""
  encoding = feature.encoding
  if encoding is Encoding.VOCABULARY:
    return tf_transform_output.vocabulary_size_by_name(vocabulary_name(feature)) + feature.buckets
  if encoding is Encoding.HASH:
    return feature.buckets
  if encoding is Encoding.VOCAB_LIST:
    return len(feature.vocabulary) + 1
  if encoding is Encoding.BOUNDARIES:
    return len(feature.boundaries) + 2
  if encoding is Encoding.RAW:
    return 0
  return feature.buckets + 1  # TAGS: 0 pads; IDENTITY: the out-of-range id
