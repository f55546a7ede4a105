"""Which version directories the local server may serve: policies, completeness, config."""

import os

import pytest
import tensorflow as tf

from serving.model_versions import (ModelSource, VersionPolicy, list_versions, missing_parts,
                                    read_model_config_file, snapshot)
from serving.server import ModelRegistry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_policies_pick_versions_as_tf_serving_does():
  on_disk = [3, 10, 7, 1]
  assert VersionPolicy().select(on_disk) == [10]
  assert VersionPolicy(latest=2).select(on_disk) == [10, 7]
  assert VersionPolicy(latest=None).select(on_disk) == [10, 7, 3, 1]
  assert VersionPolicy(latest=None, specific=frozenset({1, 7, 99})).select(on_disk) == [7, 1]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
  """A small SavedModel with an asset, as the Pusher would copy it."""
  root = tmp_path_factory.mktemp("model")
  vocab = root / "vocab.txt"
  vocab.write_text("a\nb\n")

  class Model(tf.Module):
    def __init__(self):
      super().__init__()
      self.scale = tf.Variable(2.0)
      self.table = tf.lookup.StaticHashTable(
          tf.lookup.TextFileInitializer(str(vocab), tf.string, 0, tf.int64, -1,
                                        delimiter="\t"), -1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, words):
      return {"score": tf.cast(self.table.lookup(words), tf.float32) * self.scale}

  model = Model()
  path = str(root / "export")
  tf.saved_model.save(model, path, signatures={"serving_default": model.serve})
  return path


def _copy_only(source, target, keep):
  for root, _, names in os.walk(source):
    for name in names:
      rel = os.path.relpath(os.path.join(root, name), source)
      if keep(rel):
        os.makedirs(os.path.dirname(os.path.join(target, rel)), exist_ok=True)
        with open(os.path.join(root, name), "rb") as f, \
            open(os.path.join(target, rel), "wb") as out:
          out.write(f.read())


def test_a_complete_saved_model_lacks_nothing(saved_model):
  assert missing_parts(saved_model, snapshot(saved_model)) == []


@pytest.mark.parametrize("dropped, reported", [
    ("saved_model.pb", "saved_model.pb"),
    ("assets/vocab.txt", "assets/vocab.txt"),
    ("variables/variables.index", "variables/variables.index"),
    ("variables/variables.data-00000-of-00001", "variables/variables.data-*"),
])
def test_each_missing_part_is_named(saved_model, tmp_path, dropped, reported):
  target = str(tmp_path / "7")
  _copy_only(saved_model, target, lambda rel: rel != dropped)
  assert reported in missing_parts(target, snapshot(target))[0]


def test_a_truncated_graph_is_not_complete(saved_model, tmp_path):
  target = tmp_path / "7"
  _copy_only(saved_model, str(target), lambda rel: True)
  data = (target / "saved_model.pb").read_bytes()
  (target / "saved_model.pb").write_bytes(data[:len(data) // 2])
  assert missing_parts(str(target), snapshot(str(target))) == [
      "saved_model.pb (does not parse yet)"]


def test_only_numeric_directories_are_versions(tmp_path):
  for name in ("1", "12", "tmp-3", ".4"):
    (tmp_path / name).mkdir()
  (tmp_path / "5").write_text("a file, not a version")
  assert sorted(list_versions(str(tmp_path))) == [1, 12]
  assert list_versions(str(tmp_path / "absent")) == {}


def test_the_shipped_tf_serving_model_config_is_one_the_server_reads():
  path = os.path.join(REPO, "kubeflow", "serving", "models.config")
  source, = read_model_config_file(path)
  assert source.name == "aitm" and source.base_path == "/models/aitm"
  assert source.policy == VersionPolicy(latest=2)


def test_model_config_file_errors_name_the_file(tmp_path):
  bad = tmp_path / "models.config"
  bad.write_text("model_config_list { config { name: 'aitm' base_pth: '/x' } }")
  with pytest.raises(ValueError, match="models.config: not a TF Serving ModelServerConfig"):
    read_model_config_file(str(bad))
  bad.write_text("model_config_list { config { name: 'aitm' } }")
  with pytest.raises(ValueError, match="needs a name and a base_path"):
    read_model_config_file(str(bad))
  relative = tmp_path / "relative.config"
  relative.write_text("model_config_list { config { name: 'aitm' base_path: 'models/aitm' "
                      "version_labels { key: 'stable' value: 3 } } }")
  source, = read_model_config_file(str(relative))
  assert source.base_path == str(tmp_path / "models" / "aitm")
  assert source.label_map == {"stable": 3}


def test_a_registry_serves_sources_or_a_config_file_not_both(tmp_path):
  with pytest.raises(ValueError, match="either"):
    ModelRegistry([ModelSource("aitm", str(tmp_path))], config_file=str(tmp_path / "x"))
  with pytest.raises(ValueError, match="either"):
    ModelRegistry()


def test_the_clients_string_tensors_equal_tensorflows():
  import numpy as np
  from serving.client import tensor_proto
  for value in (np.array([b"a", b"", "\u00e9".encode()], dtype=object),
                np.array([["x", "y"]], dtype=object), np.array([1, 2], np.int64),
                np.array([0.5], np.float32)):
    mine, theirs = tensor_proto(value), tf.make_tensor_proto(value)
    assert mine.dtype == theirs.dtype
    np.testing.assert_array_equal(tf.make_ndarray(mine), tf.make_ndarray(theirs))
