"""Models built from configs: the reference AITM's sizes, the peers, ESMM's product,
an AITM over a three-step funnel trained on generated data, and the export."""

import os

import numpy as np
import pytest
import tensorflow as tf

from datagen import taobao
from models.backbone import build_model, model_features
from models.config import load_config, parse_config
from models.features import ColumnType
from models.layer_registry import LAYER_KINDS
from models.preprocessing import embedding_rows, transform_features
from models.trainer import compile_model
from models.training import TrainingConfig
from pipeline import configs

CONFIG_DIR = os.path.join(configs.PROJECT_DIR, "configs")


def _config(name, eager=True):
  """A shipped config; `eager` swaps learned vocabularies (which need a Transform
  analysis pass) for hashing, so a test can encode features without Beam, and
  makes the 100k-row hash tables 10k rows so a few epochs train in seconds."""
  with open(os.path.join(CONFIG_DIR, name)) as f:
    text = f.read()
  if eager:
    text = text.replace("compute_vocabulary: true", "hash_bucket_size: 100")
    text = text.replace("hash_bucket_size: 100000", "hash_bucket_size: 10000")
  return parse_config(text, source=name)


def _encoded(config, rows, seed, with_cart=False, split=None):
  """Generated rows encoded as the model takes them; with `split`, (first, rest)."""
  cols, truth = taobao.generate(rows, seed=seed, with_cart=with_cart)
  if split is not None:
    head = {k: v[:split] for k, v in cols.items()}
    tail = {k: v[split:] for k, v in cols.items()}
    return (_encode(config, head), _encode(config, tail),
            {k: v[split:] for k, v in truth.items()})
  return _encode(config, cols) + (truth,)


def _encode(config, cols):
  raw = {}
  for column in config.columns:
    values = cols[column.name]
    if column.type is ColumnType.INT:
      raw[column.name] = tf.constant(np.array(values, np.int64))
    else:
      raw[column.name] = tf.constant(values)
  out = transform_features(raw, config)
  x = {f.name: out[f.name] for f in model_features(config)}
  y = {t.name: tf.cast(out[t.label], tf.float32) for t in config.tasks}
  return x, y


def _model(config):
  return build_model(config, {f.name: embedding_rows(f) for f in config.features})


def test_reference_config_builds_easyrecs_layer_sizes():
  config = load_config(os.path.join(CONFIG_DIR, "easyrec_aitm_on_taobao.config"))
  model = _model(config)
  bottom = model.get_layer("share_bottom")
  assert bottom.hidden_units == [512, 256] and bottom.use_bn and not bottom.use_bias
  assert model.get_layer("ctr_tower").hidden_units == [128]
  assert model.get_layer("cvr_tower").hidden_units == [128]
  aitm = model.get_layer("cvr_aitm")
  assert aitm.transfer_units == [128] and aitm.stop_gradient and aitm.project_dim is None
  assert model.get_layer("ctr_dnn").hidden_units == [64]
  assert model.get_layer("cvr_dnn").hidden_units == [64]
  tables = model.get_layer("features").tables
  assert tables["user_id"].input_dim == 100000 and tables["user_id"].output_dim == 16
  assert tables["pid"].input_dim == 10 and tables["price"].input_dim == 51
  # The feature group leaves final_gender_code out, so the model doesn't take it.
  assert "final_gender_code" not in model.input_names and len(model.inputs) == 17
  assert model.get_layer("all").output.shape[-1] == 17 * 16
  assert model.output_names == ["ctr", "cvr"]


@pytest.mark.parametrize("name, tasks", [
    ("aitm_taobao.config", ["ctr", "cvr"]),
    ("shared_bottom.config", ["ctr", "cvr"]),
    ("esmm.config", ["ctr", "cvr"]),
    ("mmoe.config", ["ctr", "cvr"]),
    ("ple.config", ["ctr", "cvr"]),
    ("aitm_click_cart_buy.config", ["ctr", "cart", "cvr"]),
])
def test_every_architecture_gives_probabilities_keyed_by_tower(name, tasks):
  config = _config(name)
  x, _, _ = _encoded(config, 64, seed=1, with_cart="cart" in name)
  out = _model(config)(x, training=False)
  assert list(out) == tasks
  for p in out.values():
    assert p.shape == (64, 1) and np.all((p.numpy() >= 0) & (p.numpy() <= 1))


@pytest.mark.parametrize("name", ["aitm_taobao.config", "mmoe.config", "ple.config"])
def test_each_block_is_the_layer_its_kind_registers(name):
  """(These three configs build every kind the product ships: MLP, AITMTower, FM,
  MMoE, PLE.)"""
  config = _config(name)
  model = _model(config)
  for block in config.proto.model_config.backbone.blocks:
    kind = LAYER_KINDS[block.keras_layer.class_name]
    assert type(model.get_layer(block.name)) is kind.layer_class(), block.name


def test_esmm_cvr_is_ctr_times_the_conditional_head():
  config = _config("esmm.config")
  model = _model(config)
  x, _, _ = _encoded(config, 32, seed=2)
  probe = tf.keras.Model(model.inputs, [model.get_layer("ctr").output,
                                        model.get_layer("cvr_head").output,
                                        model.get_layer("cvr").output])
  ctr, head, cvr = (t.numpy() for t in probe(x))
  np.testing.assert_allclose(cvr, ctr * head, rtol=1e-6)
  assert np.all(cvr <= ctr + 1e-7)


def _auc(labels, scores):
  metric = tf.keras.metrics.AUC(num_thresholds=1000)
  metric.update_state(labels, scores)
  return float(metric.result())


@pytest.fixture(scope="module")
def three_step(tmp_path_factory):
  """AITM over click -> cart -> buy, trained on 30k generated rows."""
  tf.keras.utils.set_random_seed(3)
  config = _config("aitm_click_cart_buy.config")
  # Held-out rows come from the same generated world (same users and ads).
  (x, y), (x_eval, y_eval), _ = _encoded(config, 38_000, seed=5, with_cart=True, split=30_000)
  model = _model(config)
  compile_model(model, config, TrainingConfig(learning_rate=1e-3))
  history = model.fit(x, y, batch_size=512, epochs=3, verbose=0)
  path = str(tmp_path_factory.mktemp("three_step") / "model")
  model.save(path, save_format="tf")
  return config, model, history.history, x_eval, y_eval, path


def test_three_step_funnel_learns_every_step(three_step):
  config, model, _, x_eval, y_eval, _ = three_step
  out = model.predict(x_eval, batch_size=2048, verbose=0)
  assert list(out) == ["ctr", "cart", "cvr"]
  for task in config.tasks:
    assert _auc(y_eval[task.name], out[task.name]) > 0.6, task.name
  # The calibrators keep each step below the one before it almost everywhere.
  assert np.mean(out["cart"] <= out["ctr"]) > 0.9
  assert np.mean(out["cvr"] <= out["cart"]) > 0.9


def test_three_step_funnel_logs_each_loss_term(three_step):
  _, _, history, _, _, _ = three_step
  for key in ("ctr_loss", "cart_loss", "cvr_loss", "cart_order_calibrate_loss",
              "cvr_order_calibrate_loss", "embedding_regularization_loss"):
    assert key in history and np.isfinite(history[key][-1]), key
  assert history["loss"][-1] < history["loss"][0]


def test_three_step_funnel_survives_save_and_load(three_step):
  _, model, _, x_eval, _, path = three_step
  batch = {k: v[:16] for k, v in x_eval.items()}
  before = model(batch, training=False)
  loaded = tf.keras.models.load_model(path)
  after = loaded(batch, training=False)
  for task in ("ctr", "cart", "cvr"):
    np.testing.assert_allclose(before[task].numpy(), after[task].numpy(), atol=1e-6)


def test_calibrator_is_part_of_the_model_loss():
  config = _config("aitm_taobao.config")
  model = _model(config)
  compile_model(model, config, TrainingConfig(learning_rate=1e-3))
  x, _, _ = _encoded(config, 16, seed=4)
  out = model(x, training=False)
  expected = float(tf.reduce_mean(tf.nn.relu(out["cvr"] - out["ctr"])))
  logs = model.evaluate(x, {t: tf.zeros((16, 1)) for t in ("ctr", "cvr")}, verbose=0,
                        return_dict=True)
  assert logs["cvr_order_calibrate_loss"] == pytest.approx(expected, abs=1e-6)
  assert logs["loss"] >= logs["ctr_loss"] + logs["cvr_loss"] + expected - 1e-6
