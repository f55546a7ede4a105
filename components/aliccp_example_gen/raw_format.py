"""Ali-CCP's raw lines: parsed, joined and turned into tf.Examples. Plain Python,
no Beam and no files: `executor` reads the files and runs these functions.

The raw format (Ali-CCP, Tianchi dataset 408, as the ESMM and AITM authors read it):

  sample_skeleton_<suffix>  one line per impression:
      sample_id,click,buy,common_feature_index,feature_count,features
  common_features_<suffix>  one line per common feature index (the features a
                            request shares: the user's profile and history):
      common_feature_index,feature_count,features

`features` is `feature_count` items joined by \\x01, each item
`field_id\\x02feature_id\\x03value`. The value (a count or weight) is not used:
the AITM authors read only the feature ids, as here. A sample's features are
its own plus those of the common_features line with its common_feature_index.

What a sample becomes (`to_example`): `click` and `buy` as int64 labels, and one
bytes feature per kept field (`fields`: field id -> column name) holding the
field's feature ids joined by SEPARATOR, the sample's own ids first, then its
common ones, each id once. A field with no id is left out (a missing value). A
field can hold several ids (e.g. 210 or 853 on some samples); the config reads
such a column with a TagFeature whose separator is SEPARATOR. Fields not in
`fields` are dropped.
"""

from typing import Dict, List, Mapping, Sequence, Tuple

import tensorflow as tf

# The fields the AITM paper's code keeps from Ali-CCP (github.com/xidongbo/AITM,
# process_public_dataset.py `use_columns`, and AITM.py `all_columns`): 18 fields,
# without 210 (the item's intention nodes). Column names are the ones NVIDIA
# Merlin's Ali-CCP loader gives the same field ids.
PAPER_FIELDS: Tuple[Tuple[str, str], ...] = (
    ("101", "user_id"),
    ("121", "user_profile"),          # categorical id of the user profile
    ("122", "user_group"),            # categorical group id of the user profile
    ("124", "user_gender"),
    ("125", "user_age"),
    ("126", "user_consumption_1"),    # consumption level, type I
    ("127", "user_consumption_2"),    # consumption level, type II
    ("128", "user_is_occupied"),      # occupation: whether the user works
    ("129", "user_geography"),
    ("205", "item_id"),
    ("206", "item_category"),
    ("207", "item_shop"),
    ("216", "item_brand"),
    ("508", "user_item_categories"),  # combination of 109_14 (user's categories) and 206
    ("509", "user_item_shops"),       # combination of 110_14 and 207
    ("702", "user_item_brands"),      # combination of 127_14 and 216
    ("853", "user_item_intentions"),  # combination of 150_14 and 210
    ("301", "position"),              # a categorical expression of the position
)
# The one Ali-CCP item field the paper leaves out; add it with
# fields=PAPER_FIELDS + (ITEM_INTENTION,).
ITEM_INTENTION = ("210", "item_intention")

CLICK_LABEL, BUY_LABEL = "click", "buy"
# Joins the ids of a multi-valued field; the configs' TagFeature separator.
SEPARATOR = "|"

SKELETON_PREFIX, COMMON_PREFIX = "sample_skeleton_", "common_features_"
_SKELETON_COLUMNS = "sample_id,click,buy,common_feature_index,feature_count,features"
_COMMON_COLUMNS = "common_feature_index,feature_count,features"

# column name -> feature ids, in order
Features = Dict[str, List[str]]


class MalformedLine(ValueError):
  """A raw line that can't be read; the executor adds the file and line number."""

  def __init__(self, message: str, field: str = ""):
    super().__init__(message)
    self.field = field


def _shown(text: str, limit: int = 60) -> str:
  return repr(text if len(text) <= limit else text[:limit] + "...")


def parse_features(count_text: str, text: str, keep: Mapping[str, str]) -> Features:
  """`feature_count` and `features` of a line -> the kept fields' ids, by column."""
  try:
    count = int(count_text)
  except ValueError:
    raise MalformedLine(f"{_shown(count_text)} is not an integer", "feature_count") from None
  items = text.split("\x01") if text else []
  if len(items) != count:
    # Also what a line cut short looks like.
    raise MalformedLine(f"feature_count is {count} but the line holds {len(items)} "
                        f"feature item(s)", "features")
  kept: Features = {}
  for number, item in enumerate(items, start=1):
    field, has_field_end, rest = item.partition("\x02")
    feature_id, has_id_end, _value = rest.partition("\x03")
    if not (has_field_end and has_id_end and field and feature_id):
      raise MalformedLine(f"item {number} {_shown(item)} is not "
                          f"field_id\\x02feature_id\\x03value", "features")
    column = keep.get(field)
    if column is None:
      continue
    if SEPARATOR in feature_id:
      raise MalformedLine(f"item {number}: feature id {_shown(feature_id)} of field {field} "
                          f"holds the separator {SEPARATOR!r}", "features")
    ids = kept.setdefault(column, [])
    if feature_id not in ids:
      ids.append(feature_id)
  return kept


def _label(name: str, value: str) -> int:
  if value not in ("0", "1"):
    raise MalformedLine(f"label must be 0 or 1, got {_shown(value)}", name)
  return int(value)


def parse_skeleton_line(line: str, keep: Mapping[str, str]
                        ) -> Tuple[str, int, int, str, Features]:
  """A sample_skeleton line -> (sample_id, click, buy, common_feature_index, features)."""
  parts = line.split(",", 5)
  if len(parts) != 6:
    raise MalformedLine(f"{len(parts)} comma-separated fields where a sample_skeleton line "
                        f"has 6 ({_SKELETON_COLUMNS})")
  sample_id, click, buy, index, count, text = parts
  if not sample_id:
    raise MalformedLine("is empty", "sample_id")
  click_value, buy_value = _label(CLICK_LABEL, click), _label(BUY_LABEL, buy)
  if not index:
    raise MalformedLine("is empty", "common_feature_index")
  return sample_id, click_value, buy_value, index, parse_features(count, text, keep)


def parse_common_line(line: str, keep: Mapping[str, str]) -> Tuple[str, Features]:
  """A common_features line -> (common_feature_index, features)."""
  parts = line.split(",", 2)
  if len(parts) != 3:
    raise MalformedLine(f"{len(parts)} comma-separated fields where a common_features line "
                        f"has 3 ({_COMMON_COLUMNS})")
  index, count, text = parts
  if not index:
    raise MalformedLine("is empty", "common_feature_index")
  return index, parse_features(count, text, keep)


def merge_features(own: Features, common: Features) -> Features:
  """The sample's own ids, then its common ones, each id once per field."""
  merged = {column: list(ids) for column, ids in own.items()}
  for column, ids in common.items():
    target = merged.setdefault(column, [])
    target.extend(i for i in ids if i not in target)
  return merged


def to_example(click: int, buy: int, features: Features,
               columns: Sequence[str]) -> tf.train.Example:
  """One sample as a tf.Example: `click` and `buy` as int64, and each of `columns` that
  has ids as one SEPARATOR-joined string (a column without ids is left out)."""
  example = tf.train.Example()
  feature = example.features.feature
  feature[CLICK_LABEL].int64_list.value.append(click)
  feature[BUY_LABEL].int64_list.value.append(buy)
  for column in columns:
    ids = features.get(column)
    if ids:
      feature[column].bytes_list.value.append(SEPARATOR.join(ids).encode("utf-8"))
  return example


def common_file_name(skeleton_name: str) -> str:
  """sample_skeleton_<suffix> -> common_features_<suffix> (base names)."""
  return COMMON_PREFIX + skeleton_name[len(SKELETON_PREFIX):]
