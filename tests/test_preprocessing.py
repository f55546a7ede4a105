"""preprocessing_fn on a few raw rows through tf.Transform's Beam implementation."""

import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import schema_utils
from tfx.utils import io_utils
from tensorflow_metadata.proto.v0 import schema_pb2

from models import features as F
from models.preprocessing import preprocessing_fn, tag_ids
from pipeline import configs

ROWS = [
    {"pid": "430548_1007", "user_id": "1000001", "age_level": "3", "price": 10.0,
     "tag_category_list": "1001|1002|1003", "tag_brand_list": "", "clk": 1, "buy": 1},
    {"pid": "430539_1007", "user_id": "1000002", "age_level": "3", "price": 200.0,
     "tag_category_list": "1001", "tag_brand_list": "700001", "clk": 1, "buy": 0},
    {"pid": "430548_1007", "user_id": "1000001", "age_level": "", "price": None,
     "tag_category_list": "", "tag_brand_list": "700002|700003", "clk": 0, "buy": 0},
    {"pid": "430548_1007", "user_id": "", "age_level": "5", "price": 50.0,
     "tag_category_list": "1002", "tag_brand_list": "", "clk": 0, "buy": 0},
]


def _instance(row):
  """A raw row as tf.Transform's instance dict: VarLen features are lists."""
  out = {}
  for name, column_type in F.RAW_COLUMNS:
    value = row.get(name, "x")
    if name in F.LABELS:
      out[name] = [value]
    elif value is None or value == "":
      out[name] = []
    elif column_type is F.ColumnType.FLOAT:
      out[name] = [float(value)]
    else:
      out[name] = [value.encode()]
  return out


@pytest.fixture(scope="module")
def transformed():
  schema = io_utils.parse_pbtxt_file(configs.SCHEMA_PATH, schema_pb2.Schema())
  metadata = schema_utils.schema_as_feature_spec(schema).feature_spec
  from tensorflow_transform.tf_metadata import dataset_metadata
  raw_metadata = dataset_metadata.DatasetMetadata.from_feature_spec(metadata)
  with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
    (data, _), _ = ([_instance(r) for r in ROWS], raw_metadata) | \
        tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
  return data


def test_every_feature_and_label_comes_out(transformed):
  assert set(transformed[0]) == {f.name for f in F.FEATURES} | set(F.LABELS)


def test_hashed_ids_are_stable_and_in_range(transformed):
  ids = [t["user_id"] for t in transformed]
  assert ids[0] == ids[2] and ids[0] != ids[1]
  assert all(0 <= i < 100000 for i in ids)


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


def test_price_is_bucketized_and_missing_gets_its_own_bucket(transformed):
  buckets = [t["price"] for t in transformed]
  assert buckets[2] == 50
  assert buckets[0] < buckets[3] <= buckets[1] < 50


def test_labels_stay_raw(transformed):
  assert [t["clk"] for t in transformed] == [1, 1, 0, 0]
  assert [t["buy"] for t in transformed] == [1, 0, 0, 0]


def test_tag_ids_truncate_long_lists():
  ids = tag_ids(tf.constant(["|".join(str(i) for i in range(20)), "a||b"]), 100, 8, "|")
  assert ids.shape == (2, 8)
  assert int(tf.reduce_sum(tf.cast(ids[1] > 0, tf.int32))) == 2  # empty tags dropped
