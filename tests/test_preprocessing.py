"""preprocessing_fn on a few raw rows through tf.Transform's Beam implementation."""

import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import schema_utils
from tfx.utils import io_utils
from tensorflow_metadata.proto.v0 import schema_pb2

from models.config import load_config, parse_config
from models.features import ColumnType, Encoding, Feature
from models.preprocessing import (ACTIVITY_FEATURE, CONFIG_KEY, encode_feature,
                                  preprocessing_fn, tag_ids, user_activity)
from pipeline import configs

CONFIG = load_config(configs.CONFIG_PATH)
ROWS = [
    {"pid": "430548_1007", "user_id": "1000001", "cate_id": "6001", "age_level": "3",
     "price": 10, "tag_category_list": "1001|1002|1003", "tag_brand_list": "", "clk": 1,
     "buy": 1},
    {"pid": "430539_1007", "user_id": "1000002", "cate_id": "6002", "age_level": "3",
     "price": 49, "tag_category_list": "1001", "tag_brand_list": "700001", "clk": 1, "buy": 0},
    {"pid": "430548_1007", "user_id": "1000001", "cate_id": "6001", "age_level": "",
     "price": None, "tag_category_list": "", "tag_brand_list": "700002|700003", "clk": 0,
     "buy": 0},
    {"pid": "430548_1007", "user_id": "", "age_level": "5", "price": 0,
     "tag_category_list": "1002", "tag_brand_list": "", "clk": 0, "buy": 0},
]


def _instance(row):
  """A raw row as tf.Transform's instance dict: VarLen features are lists."""
  out = {}
  for column in CONFIG.columns:
    value = row.get(column.name, "x")
    if column.name in CONFIG.labels:
      out[column.name] = [value]
    elif value is None or value == "":
      out[column.name] = []
    elif column.type is ColumnType.INT:
      out[column.name] = [int(value)]
    else:
      out[column.name] = [value.encode()]
  return out


@pytest.fixture(scope="module")
def transformed():
  schema = io_utils.parse_pbtxt_file(configs.SCHEMA_PATH, schema_pb2.Schema())
  metadata = schema_utils.schema_as_feature_spec(schema).feature_spec
  from tensorflow_transform.tf_metadata import dataset_metadata
  raw_metadata = dataset_metadata.DatasetMetadata.from_feature_spec(metadata)

  def fn(inputs):  # as the Transform component calls it, with its custom_config
    return preprocessing_fn(inputs, {CONFIG_KEY: CONFIG.transform_text()})

  with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
    (data, _), _ = ([_instance(r) for r in ROWS], raw_metadata) | \
        tft_beam.AnalyzeAndTransformDataset(fn)
  return data


def test_every_feature_and_label_comes_out(transformed):
  assert set(transformed[0]) == ({f.name for f in CONFIG.features} | set(CONFIG.labels)
                                 | {ACTIVITY_FEATURE})


def test_user_activity_counts_the_users_impressions(transformed):
  # user 1000001 has 2 impressions, 1000002 one (both level 1: 1-4); no user id: 0.
  assert [t[ACTIVITY_FEATURE] for t in transformed] == [1, 1, 1, 0]


def test_user_activity_levels_follow_the_edges_of_the_analysis_data():
  """Counts come from the analysed rows only; a user they lack is level 0."""
  from tensorflow_transform.tf_metadata import dataset_metadata
  counts = {"a": 1, "b": 4, "c": 5, "d": 19, "e": 20, "f": 99, "g": 100, "h": 130}
  analysed = [{"user_id": [u.encode()]} for u, n in counts.items() for _ in range(n)]
  analysed.append({"user_id": []})  # missing: not a user
  queried = [{"user_id": [u.encode()]} for u in [*counts, "never_seen"]] + [{"user_id": []}]
  metadata = dataset_metadata.DatasetMetadata.from_feature_spec(
      {"user_id": tf.io.VarLenFeature(tf.string)})

  def fn(inputs):
    return {"level": user_activity(inputs["user_id"], ColumnType.STRING)}

  with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
    transform_fn = (analysed, metadata) | tft_beam.AnalyzeDataset(fn)
    (out, _) = ((queried, metadata), transform_fn) | tft_beam.TransformDataset()
  assert [o["level"] for o in out] == [1, 1, 2, 2, 3, 3, 4, 4, 0, 0]


def test_hashed_ids_are_stable_and_in_range(transformed):
  cate = next(f for f in CONFIG.features if f.name == "cate_id")
  assert cate.encoding is Encoding.HASH
  ids = [t["cate_id"] for t in transformed]
  assert ids[0] == ids[2] and ids[0] != ids[1]
  assert all(0 <= i < cate.buckets for i in ids)


def test_vocabulary_gives_missing_its_own_id(transformed):
  ages = [t["age_level"] for t in transformed]
  assert ages[0] == ages[1]
  assert len({ages[0], ages[2], ages[3]}) == 3  # '3', missing, '5'


def test_tag_lists_become_padded_id_lists(transformed):
  tags = np.array([t["tag_category_list"] for t in transformed])
  assert tags.shape == (4, 8)
  assert (tags[0, :3] > 0).all() and (tags[0, 3:] == 0).all()
  assert tags[0, 0] == tags[1, 0]                 # the same tag, the same id
  assert (tags[2] == 0).all()                      # missing list: all padding
  assert (np.array(transformed[0]["tag_brand_list"]) == 0).all()


def test_price_level_is_its_own_id_and_missing_gets_the_next(transformed):
  assert [t["price"] for t in transformed] == [10, 49, 50, 0]


def test_labels_stay_raw(transformed):
  assert [t["clk"] for t in transformed] == [1, 1, 0, 0]
  assert [t["buy"] for t in transformed] == [1, 0, 0, 0]


def test_tag_ids_truncate_long_lists():
  ids = tag_ids(tf.constant(["|".join(str(i) for i in range(20)), "a||b"]), 100, 8, "|")
  assert ids.shape == (2, 8)
  assert int(tf.reduce_sum(tf.cast(ids[1] > 0, tf.int32))) == 2  # empty tags dropped


def _encode(feature, values, column_type):
  return encode_feature(feature, tf.constant(values), column_type).numpy().tolist()


def test_identity_ids_outside_the_range_share_the_oov_id():
  price = Feature("price", "price", Encoding.IDENTITY, buckets=50, embedding_dim=4)
  assert _encode(price, [0, 49, 50, -3], ColumnType.INT) == [0, 49, 50, 50]


def test_vocab_list_and_boundaries():
  gender = Feature("g", "g", Encoding.VOCAB_LIST, embedding_dim=4, vocabulary=("1", "2"))
  assert _encode(gender, ["2", "1", "", "9"], ColumnType.STRING) == [1, 0, 2, 2]
  price = Feature("p", "p", Encoding.BOUNDARIES, embedding_dim=4, boundaries=(10.0, 100.0))
  assert _encode(price, [5.0, 10.0, 500.0, float("nan")], ColumnType.FLOAT) == [0, 1, 2, 3]
  raw = Feature("p", "p", Encoding.RAW)
  assert _encode(raw, [2.5, float("nan")], ColumnType.FLOAT) == [2.5, 0.0]


def test_hashing_an_int_column_hashes_its_digits():
  ids = Feature("i", "i", Encoding.HASH, buckets=1000, embedding_dim=4)
  as_int = _encode(ids, [123, 7], ColumnType.INT)
  as_text = _encode(ids, ["123", "7"], ColumnType.STRING)
  assert as_int == as_text


def test_features_follow_the_config():
  """A config change (hashing instead of a vocabulary) changes what Transform does."""
  text = CONFIG.text.replace(
      'input_names: "age_level" feature_type: IdFeature embedding_dim: 16 compute_vocabulary: true',
      'input_names: "age_level" feature_type: IdFeature embedding_dim: 16 hash_bucket_size: 7')
  age = next(f for f in parse_config(text).features if f.name == "age_level")
  assert age.encoding is Encoding.HASH and age.buckets == 7


def test_frequency_threshold_gives_rare_values_the_oov_id():
  """compute_vocabulary with frequency_threshold: only values seen that often in the
  analysed rows get their own id; rarer and unseen ones share the OOV id."""
  from tensorflow_transform.tf_metadata import dataset_metadata
  user = Feature("user_id", "user_id", Encoding.VOCABULARY, buckets=1, embedding_dim=4,
                 frequency_threshold=3)
  analysed = [{"user_id": [u.encode()]} for u, n in {"a": 5, "b": 3, "c": 2}.items()
              for _ in range(n)]
  queried = [{"user_id": [u.encode()]} for u in ("a", "b", "c", "never_seen")]
  metadata = dataset_metadata.DatasetMetadata.from_feature_spec(
      {"user_id": tf.io.VarLenFeature(tf.string)})

  def fn(inputs):
    return {"id": encode_feature(user, inputs["user_id"], ColumnType.STRING)}

  with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
    transform_fn = (analysed, metadata) | tft_beam.AnalyzeDataset(fn)
    (out, _) = ((queried, metadata), transform_fn) | tft_beam.TransformDataset()
  ids = [o["id"] for o in out]
  assert ids[0] != ids[1] and {ids[0], ids[1]} == {0, 1}   # a and b: the vocabulary
  assert ids[2] == ids[3] == 2                             # c (2 < 3) and unseen: OOV


def test_frequency_threshold_is_read_from_the_config_and_needs_a_vocabulary():
  line = 'input_names: "age_level" feature_type: IdFeature embedding_dim: 16 compute_vocabulary: true'
  age = next(f for f in parse_config(CONFIG.text.replace(
      line, line + " frequency_threshold: 50")).features if f.name == "age_level")
  assert age.encoding is Encoding.VOCABULARY and age.frequency_threshold == 50
  hashed = line.replace("compute_vocabulary: true", "hash_bucket_size: 7")
  with pytest.raises(Exception, match=r"<config>:\d+: frequency_threshold: .*age_level.*"
                     "needs compute_vocabulary"):
    parse_config(CONFIG.text.replace(line, hashed + " frequency_threshold: 50"))
