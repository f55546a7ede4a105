"""Warm start (models/warm_start.py) without a pipeline: the row remapping by token,
the tables and weights copied whole, and each kind of architecture mismatch
falling back to a fresh start with its reason."""

import os

import numpy as np
import pytest

from models import warm_start
from models.config import parse_config
from models.features import Encoding, vocabulary_name
from pipeline import configs

CONFIG_TEXT = open(configs.CONFIG_PATH).read()
# Base run's and next run's vocabulary of every VOCABULARY feature: b and d are in
# both (at other ids), a was dropped, e and f are new.
BASE_TOKENS = [b"a", b"b", b"d"]
NEW_TOKENS = [b"d", b"e", b"b", b"f"]


class _Vocabularies:
  """The two TFTransformOutput methods the model building and snapshots call."""

  def __init__(self, tokens):
    self.tokens = tokens

  def vocabulary_by_name(self, name):
    return list(self.tokens)

  def vocabulary_size_by_name(self, name):
    return len(self.tokens)


def _model(config, tokens, seed):
  import tensorflow as tf
  from models.backbone import build_model
  from models.preprocessing import embedding_rows
  tf.keras.utils.set_random_seed(seed)
  vocabularies = _Vocabularies(tokens)
  model = build_model(config, {f.name: embedding_rows(f, vocabularies) for f in config.features})
  return model, vocabularies


def _snapshot(config, tokens, seed):
  model, vocabularies = _model(config, tokens, seed)
  return warm_start.snapshot(model, config, vocabularies)


def _variant(old, new, after=None):
  """The default config with one change (after the text `after`, when given)."""
  head, tail = CONFIG_TEXT.split(after, 1) if after else ("", CONFIG_TEXT)
  assert old in tail
  return parse_config((head + after if after else "") + tail.replace(old, new, 1))


CONFIG = parse_config(CONFIG_TEXT)


def test_a_vocabulary_table_is_remapped_by_token_and_its_oov_rows_copied():
  base = np.arange(5 * 2, dtype=np.float32).reshape(5, 2)           # a b d + 2 OOV rows
  fresh = -np.ones((6, 2), np.float32)                               # d e b f + 2 OOV rows
  table, rows = warm_start.remap_rows(base, BASE_TOKENS, fresh, NEW_TOKENS, oov_buckets=2)
  np.testing.assert_array_equal(table[0], base[2])      # d: base id 2 -> new id 0
  np.testing.assert_array_equal(table[2], base[1])      # b: base id 1 -> new id 2
  np.testing.assert_array_equal(table[[1, 3]], fresh[[1, 3]])   # e, f: fresh rows
  np.testing.assert_array_equal(table[4:], base[3:])    # the OOV buckets
  assert rows == warm_start.RowRemap(kept=2, new=2, dropped=1, oov=2)
  with pytest.raises(ValueError, match="base table has 5 rows, not 3 tokens \\+ 1 OOV"):
    warm_start.remap_rows(base, BASE_TOKENS, fresh, NEW_TOKENS, oov_buckets=1)


def test_weight_keys_are_the_same_in_every_build():
  first = [k for k, _ in warm_start.weight_keys(_model(CONFIG, BASE_TOKENS, 1)[0])]
  second = [k for k, _ in warm_start.weight_keys(_model(CONFIG, BASE_TOKENS, 2)[0])]
  assert first == second and len(set(first)) == len(first)
  # Keras' own names differ between the two builds (dense_7, dense_19): not ours.
  assert "share_bottom/dense/kernel" in first and "share_bottom/dense_1/kernel" in first
  assert "features/pid_embedding/embeddings" in first and "cvr_aitm/h1/kernel" in first


def test_a_matching_model_starts_from_the_base_and_predicts_as_it_did():
  base_model, base_vocab = _model(CONFIG, BASE_TOKENS, seed=1)
  new_model, new_vocab = _model(CONFIG, NEW_TOKENS, seed=2)
  fresh = {k: v.numpy().copy() for k, v in warm_start.weight_keys(new_model)}
  decision = warm_start.match(warm_start.snapshot(base_model, CONFIG, base_vocab),
                              warm_start.snapshot(new_model, CONFIG, new_vocab), "base/dir")
  assert decision.warm and decision.reason is None, decision.reason
  warm_start.assign(new_model, decision.weights)

  vocabulary_features = [f.name for f in CONFIG.features if f.encoding is Encoding.VOCABULARY]
  assert sorted(decision.remapped) == sorted(vocabulary_features)
  assert decision.remapped["pid"] == warm_start.RowRemap(kept=2, new=2, dropped=1, oov=1)
  # Hashed, tag and integer-id tables, and the dense weights, copied whole.
  for key in ("features/cate_id_embedding/embeddings",
              "features/tag_brand_list_embedding/embeddings",
              "features/price_embedding/embeddings", "share_bottom/dense/kernel",
              "cvr_aitm/h3/kernel", "cvr_head/bias"):
    assert key in decision.copied
  weights = dict(warm_start.weight_keys(new_model))
  np.testing.assert_array_equal(weights["features/pid_embedding/embeddings"].numpy()[1],
                                fresh["features/pid_embedding/embeddings"][1])   # e: fresh

  # The same raw values, encoded with each run's vocabulary: the same predictions.
  rng = np.random.default_rng(0)
  tokens = rng.choice([b"b", b"d"], 32)
  base_inputs, new_inputs = {}, {}
  for f in new_model.inputs:
    name = f.name.split(":")[0]
    if name in vocabulary_features:
      base_inputs[name] = np.array([BASE_TOKENS.index(t) for t in tokens], np.int64)
      new_inputs[name] = np.array([NEW_TOKENS.index(t) for t in tokens], np.int64)
    else:
      base_inputs[name] = new_inputs[name] = rng.integers(0, 40, [32, *f.shape[1:]])
  before = base_model(base_inputs, training=False)
  after = new_model(new_inputs, training=False)
  for task in ("ctr", "cvr"):
    np.testing.assert_allclose(after[task].numpy(), before[task].numpy(), rtol=1e-5)
  untrained = _model(CONFIG, NEW_TOKENS, seed=2)[0](new_inputs, training=False)
  assert not np.allclose(untrained["ctr"].numpy(), before["ctr"].numpy(), rtol=1e-3)


@pytest.mark.parametrize("config, reason", [
    # A wider ctr tower: its kernel is the first weight whose shape differs.
    (_variant("hidden_units: 128", "hidden_units: 256", after='name: "ctr_tower"'),
     "ctr_tower/dense/kernel is (256, 128) in the base model, (256, 256) now"),
    (_variant("hash_bucket_size: 10000 }", "hash_bucket_size: 20000 }"),
     "feature cate_id: buckets 10000 != 20000"),
    (_variant("embedding_dim: 16 compute_vocabulary: true",
              "embedding_dim: 8 compute_vocabulary: true"),
     "feature pid: embedding_dim 16 != 8"),
    (_variant('    feature_names: "pid"\n', ""), "feature pid of the base model is not in"),
    # Same shapes, other wiring: two 16-wide features swapped in the feature group.
    (_variant('feature_names: "cms_segid"\n    feature_names: "cms_group_id"',
              'feature_names: "cms_group_id"\n    feature_names: "cms_segid"'),
     "the model_config wires the same weights differently: 'feature_names: \"cms_segid\"' "
     "in the base model, 'feature_names: \"cms_group_id\"' now"),
])
def test_a_different_architecture_starts_fresh_naming_why(config, reason):
  decision = warm_start.match(_snapshot(CONFIG, BASE_TOKENS, 1),
                              _snapshot(config, NEW_TOKENS, 2))
  assert not decision.warm and not decision.weights
  assert reason in decision.reason, decision.reason
  assert decision.message().startswith("warm start: fresh start, ")


def test_training_only_settings_do_not_stop_a_warm_start():
  config = _variant("l2_regularization: 1e-6", "l2_regularization: 1e-4")
  assert warm_start.match(_snapshot(CONFIG, BASE_TOKENS, 1),
                          _snapshot(config, NEW_TOKENS, 2)).warm


def test_the_folder_round_trips_and_a_base_without_one_starts_fresh(tmp_path):
  model, vocabularies = _model(CONFIG, BASE_TOKENS, 1)
  serving_dir = tmp_path / "model" / "Format-Serving"
  folder = warm_start.snapshot_dir(str(serving_dir))
  assert folder == str(tmp_path / "model" / "warm_start")
  written = warm_start.snapshot(model, CONFIG, vocabularies)
  warm_start.write_snapshot(folder, written)
  read = warm_start.read_snapshot(folder)
  assert read.vocabularies == written.vocabularies == {
      f.name: BASE_TOKENS for f in CONFIG.features if f.encoding is Encoding.VOCABULARY}
  assert (read.features, read.tables, read.structure) == (
      written.features, written.tables, written.structure)
  assert sorted(read.weights) == sorted(written.weights)
  for key, value in written.weights.items():
    np.testing.assert_array_equal(read.weights[key], value)
  assert vocabulary_name(CONFIG.features[0]) == "vocab_pid"

  new_model, new_vocab = _model(CONFIG, NEW_TOKENS, 2)
  decision = warm_start.start_from(str(serving_dir), new_model, CONFIG, new_vocab)
  assert decision.warm and decision.base_model == str(serving_dir)
  np.testing.assert_array_equal(
      dict(warm_start.weight_keys(new_model))["share_bottom/dense/kernel"].numpy(),
      written.weights["share_bottom/dense/kernel"])

  with open(os.path.join(folder, warm_start.WEIGHTS_FILE), "r+b") as f:
    f.truncate(100)   # a damaged copy: a reason to start fresh, not a failed run
  damaged = warm_start.start_from(str(serving_dir), new_model, CONFIG, new_vocab)
  assert not damaged.warm and "warm_start folder can't be read: BadZipFile" in damaged.reason
  older = warm_start.start_from(str(tmp_path / "older" / "Format-Serving"), new_model,
                                CONFIG, new_vocab)
  assert not older.warm and "trained before warm start existed" in older.reason
  none = warm_start.start_from(None, new_model, CONFIG, new_vocab)
  assert not none.warm and none.summary()["reason"] == "no blessed model to start from yet"
