"""Raw columns and features as plain objects, built from the config's
`data_config` and `feature_config` (see `models.config`).

ExampleGen parses with the columns, Transform encodes with the features, the
model embeds them, the serving signatures read the columns - all from the one
config, so they can't disagree.
"""

import dataclasses
import enum
from typing import Tuple


class ColumnType(enum.Enum):
  """A raw column's type, as the tf.Example feature list that holds it."""
  INT = "INT"        # tf.Example int64_list   (EasyRec INT32, INT64)
  FLOAT = "FLOAT"    # tf.Example float_list   (EasyRec FLOAT, DOUBLE)
  STRING = "STRING"  # tf.Example bytes_list   (EasyRec STRING)


@dataclasses.dataclass(frozen=True)
class Column:
  """One raw input column: its name and type (data_config.input_fields)."""
  name: str
  type: ColumnType


class Encoding(enum.Enum):
  """How Transform turns a feature's raw column into model input: ids, or the float."""
  HASH = "hash"              # IdFeature hash_bucket_size: string hashed into buckets
  VOCABULARY = "vocabulary"  # IdFeature compute_vocabulary: learned by Transform + OOV buckets
  VOCAB_LIST = "vocab_list"  # IdFeature vocab_list: fixed list, one OOV id after it
  IDENTITY = "identity"      # IdFeature num_buckets: the integer value is the id
  TAGS = "tags"              # TagFeature: separator-split list, each tag hashed, padded
  BOUNDARIES = "boundaries"  # RawFeature boundaries: bucketized value
  RAW = "raw"                # RawFeature without boundaries: the float value itself


@dataclasses.dataclass(frozen=True)
class Feature:
  """How one raw column becomes model input.

  `name` is the feature (and Transform output) name, `column` the raw column.
  `buckets` is the hash bucket count (HASH, TAGS), the OOV bucket count
  (VOCABULARY) or num_buckets (IDENTITY).
  """
  name: str
  column: str
  encoding: Encoding
  buckets: int = 0
  embedding_dim: int = 0
  separator: str = "|"
  max_tags: int = 8
  vocabulary: Tuple[str, ...] = ()
  boundaries: Tuple[float, ...] = ()
  frequency_threshold: int = 0   # VOCABULARY: rarer values get an OOV id


def vocabulary_name(feature: Feature) -> str:
  """The name of the TFT vocabulary file of a VOCABULARY feature."""
  return f"vocab_{feature.name}"
