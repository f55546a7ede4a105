"""The one definition of the raw columns, the features built from them and the labels.

It mirrors EasyRec's `aitm_on_taobao.config`: `data_config.input_fields` (raw
columns in file order, with their types) and `feature_config` (how each column
becomes an embedding id). ExampleGen parses with `RAW_COLUMNS`, Transform
encodes with `FEATURES`, the model embeds with `FEATURES`, the serving
signatures and the Evaluator read `LABELS` and `TASKS` - nothing keeps a list of
its own.
"""

import dataclasses
import enum
from typing import Dict, Tuple


class ColumnType(enum.Enum):
  INT = "INT"        # tf.Example int64_list
  FLOAT = "FLOAT"    # tf.Example float_list
  STRING = "STRING"  # tf.Example bytes_list


class Encoding(enum.Enum):
  VOCABULARY = "vocabulary"  # tft.compute_and_apply_vocabulary + OOV buckets
  HASH = "hash"              # hash into a fixed number of buckets
  TAGS = "tags"              # separator-split list, each tag hashed, padded
  QUANTILES = "quantiles"    # float bucketized at quantile boundaries


@dataclasses.dataclass(frozen=True)
class Feature:
  """How one raw column becomes embedding ids.

  `buckets` is the hash bucket count (HASH, TAGS), the OOV bucket count
  (VOCABULARY) or the quantile bucket count (QUANTILES).
  """
  name: str
  encoding: Encoding
  buckets: int
  embedding_dim: int = 16
  separator: str = "|"
  max_tags: int = 8

  def __post_init__(self):
    if self.buckets <= 0:
      raise ValueError(f"feature '{self.name}': buckets must be positive, got {self.buckets}")
    if self.embedding_dim <= 0:
      raise ValueError(
          f"feature '{self.name}': embedding_dim must be positive, got {self.embedding_dim}")


# Raw columns in EasyRec's file order. IDs are strings even when they look
# numeric (EasyRec declares them STRING); price is a float.
RAW_COLUMNS: Tuple[Tuple[str, ColumnType], ...] = (
    ("clk", ColumnType.INT),
    ("buy", ColumnType.INT),
    ("pid", ColumnType.STRING),
    ("adgroup_id", ColumnType.STRING),
    ("cate_id", ColumnType.STRING),
    ("campaign_id", ColumnType.STRING),
    ("customer", ColumnType.STRING),
    ("brand", ColumnType.STRING),
    ("user_id", ColumnType.STRING),
    ("cms_segid", ColumnType.STRING),
    ("cms_group_id", ColumnType.STRING),
    ("final_gender_code", ColumnType.STRING),
    ("age_level", ColumnType.STRING),
    ("pvalue_level", ColumnType.STRING),
    ("shopping_level", ColumnType.STRING),
    ("occupation", ColumnType.STRING),
    ("new_user_class_level", ColumnType.STRING),
    ("tag_category_list", ColumnType.STRING),
    ("tag_brand_list", ColumnType.STRING),
    ("price", ColumnType.FLOAT),
)

# Task towers in funnel order: tower name -> label column. `cvr` is
# P(buy | impression), trained on every impression.
TASKS: Dict[str, str] = {"ctr": "clk", "cvr": "buy"}
LABELS: Tuple[str, ...] = tuple(TASKS.values())


def _vocab(name):
  return Feature(name, Encoding.VOCABULARY, buckets=1)


def _hash(name, buckets):
  return Feature(name, Encoding.HASH, buckets=buckets)


# Low-cardinality profile columns get a learned vocabulary; high-cardinality
# ids are hashed (bucket counts from aitm_on_taobao.config).
FEATURES: Tuple[Feature, ...] = (
    _hash("user_id", 100000),
    _vocab("cms_segid"),
    _vocab("cms_group_id"),
    _vocab("age_level"),
    _vocab("pvalue_level"),
    _vocab("shopping_level"),
    _vocab("occupation"),
    _vocab("new_user_class_level"),
    _hash("adgroup_id", 100000),
    _hash("cate_id", 10000),
    _hash("campaign_id", 100000),
    _hash("customer", 100000),
    _hash("brand", 100000),
    Feature("price", Encoding.QUANTILES, buckets=50),
    _vocab("pid"),
    _vocab("final_gender_code"),
    Feature("tag_category_list", Encoding.TAGS, buckets=100000),
    Feature("tag_brand_list", Encoding.TAGS, buckets=100000),
)

COLUMN_TYPES: Dict[str, ColumnType] = dict(RAW_COLUMNS)
FEATURE_COLUMNS: Tuple[str, ...] = tuple(c for c, _ in RAW_COLUMNS if c not in LABELS)


def vocabulary_name(feature: Feature) -> str:
  """The name of the TFT vocabulary file of a VOCABULARY feature."""
  return f"vocab_{feature.name}"


def _check():
  names = {f.name for f in FEATURES}
  unknown = names - set(COLUMN_TYPES)
  if unknown:
    raise ValueError(f"features without a raw column: {sorted(unknown)}")
  missing = set(FEATURE_COLUMNS) - names
  if missing:
    raise ValueError(f"raw columns without a feature definition: {sorted(missing)}")
  for label in LABELS:
    if COLUMN_TYPES.get(label) is not ColumnType.INT:
      raise ValueError(f"label '{label}' must be an INT raw column")


_check()
