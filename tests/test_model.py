"""The Keras AITM: shapes, the calibrator, the AIT module, gradients, serialization."""

import numpy as np
import pytest
import tensorflow as tf

from models import features as F
from models.aitm_model import ModelConfig, build_model
from models.layers import AITMTower, MLP, TagEmbedding
from models.losses import order_calibration_loss

ROWS = {f.name: (f.buckets if f.encoding is not F.Encoding.VOCABULARY else 12) + 1
        for f in F.FEATURES}


def _batch(n, seed=0):
  rng = np.random.default_rng(seed)
  out = {}
  for f in F.FEATURES:
    shape = (n, f.max_tags) if f.encoding is F.Encoding.TAGS else (n,)
    out[f.name] = tf.constant(rng.integers(0, ROWS[f.name], shape), tf.int64)
  return out


@pytest.fixture(scope="module")
def model():
  return build_model(ROWS)


def test_outputs_are_probabilities_keyed_by_tower(model):
  out = model(_batch(32), training=False)
  assert set(out) == {"ctr", "cvr"}
  for p in out.values():
    assert p.shape == (32, 1)
    assert np.all((p.numpy() >= 0) & (p.numpy() <= 1))


def test_layer_sizes_follow_the_seed_config(model):
  assert model.get_layer("share_bottom").hidden_units == [512, 256]
  assert model.get_layer("ctr_tower").hidden_units == [128]
  assert model.get_layer("cvr_aitm").transfer_units == [128]
  assert model.get_layer("ctr_dnn").hidden_units == [64]
  assert model.get_layer("user_id_embedding").output_dim == 16


def test_calibrator_value_by_hand():
  p_cvr = tf.constant([0.5, 0.1, 0.3, 0.0])
  p_ctr = tf.constant([0.2, 0.4, 0.3, 0.1])
  # max(0.3, 0, 0, 0) / 4
  assert float(order_calibration_loss(p_cvr, p_ctr)) == pytest.approx(0.075)


def test_calibrator_is_part_of_the_model_loss(model):
  model.compile(loss={t: "binary_crossentropy" for t in F.TASKS})
  batch = _batch(16)
  out = model(batch, training=False)
  expected = float(order_calibration_loss(out["cvr"], out["ctr"]))
  logs = model.evaluate(batch, {t: tf.zeros((16, 1)) for t in F.TASKS}, verbose=0,
                        return_dict=True)
  assert logs["order_calibration_loss"] == pytest.approx(expected, abs=1e-6)
  # total = BCE terms + calibrator (weight 1) + regularisation (small, non-negative)
  assert logs["loss"] >= logs["ctr_loss"] + logs["cvr_loss"] + expected - 1e-6


def test_ait_module_matches_numpy_by_hand():
  rng = np.random.default_rng(1)
  q = rng.normal(size=(5, 4)).astype("float32")
  z_prev = rng.normal(size=(5, 3)).astype("float32")
  layer = AITMTower([4], use_bn=False, stop_gradient=False)
  out = layer([tf.constant(q), tf.constant(z_prev)]).numpy()
  dense = layer.transfer_mlp._layers[0]
  w, b = dense.kernel.numpy(), dense.bias.numpy()
  p = np.maximum(z_prev @ w + b, 0)
  items = np.stack([q, p], axis=1)                           # [5, 2, 4]
  h1, h2, h3 = (items @ h.kernel.numpy() for h in (layer.h1, layer.h2, layer.h3))
  logits = (h1 * h2).sum(-1) / np.sqrt(4)
  weights = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  expected = (weights[..., None] * h3).sum(1)
  np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("stop_gradient", [False, True])
def test_gradients_through_the_attention(stop_gradient):
  q = tf.Variable(tf.random.normal((8, 16)))
  z_prev = tf.Variable(tf.random.normal((8, 16)))
  layer = AITMTower([16], use_bn=False, stop_gradient=stop_gradient)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(layer([q, z_prev]) ** 2)
  grad_q, grad_prev, *grad_transfer = tape.gradient(
      loss, [q, z_prev] + layer.transfer_mlp.trainable_weights)
  assert float(tf.norm(grad_q)) > 0
  assert all(g is not None and float(tf.norm(g)) > 0 for g in grad_transfer)
  if stop_gradient:
    assert grad_prev is None  # EasyRec's default: the cvr loss leaves the ctr tower alone
  else:
    assert float(tf.norm(grad_prev)) > 0


def test_both_towers_and_the_ait_module_learn_from_the_total_loss(model):
  batch = _batch(64, seed=2)
  labels = {t: tf.cast(tf.random.uniform((64, 1), seed=4) < 0.3, tf.float32) for t in F.TASKS}
  bce = tf.keras.losses.BinaryCrossentropy()
  aitm = model.get_layer("cvr_aitm")
  weights = (model.get_layer("ctr_tower").trainable_weights
             + model.get_layer("cvr_tower").trainable_weights
             + [aitm.h1.kernel, aitm.h2.kernel, aitm.h3.kernel])
  with tf.GradientTape() as tape:
    out = model(batch, training=True)
    loss = sum(bce(labels[t], out[t]) for t in F.TASKS) + tf.add_n(model.losses)
  grads = tape.gradient(loss, weights)
  assert all(g is not None and float(tf.norm(g)) > 0 for g in grads)


def test_aitm_tower_rejects_mismatched_widths():
  with pytest.raises(ValueError, match="must equal the current tower's width"):
    AITMTower([32])([tf.zeros((2, 16)), tf.zeros((2, 16))])


@pytest.mark.parametrize("layer", [
    MLP([8, 4], dropout_rate=0.1, l2_reg=1e-6),
    AITMTower([4], project_dim=6, stop_gradient=False),
    TagEmbedding(50, 4, activity_l2=1e-5),
])
def test_layers_round_trip_through_get_config(layer):
  clone = type(layer).from_config(layer.get_config())
  assert clone.get_config() == layer.get_config()


def test_model_survives_save_and_load(model, tmp_path):
  batch = _batch(8, seed=3)
  before = model(batch, training=False)
  model.save(str(tmp_path / "m"), save_format="tf")
  loaded = tf.keras.models.load_model(str(tmp_path / "m"))
  after = loaded(batch, training=False)
  for task in F.TASKS:
    np.testing.assert_allclose(before[task].numpy(), after[task].numpy(), atol=1e-6)


def test_tag_embedding_ignores_padding():
  layer = TagEmbedding(10, 3)
  ids = tf.constant([[1, 2, 0, 0], [1, 2, 0, 0], [0, 0, 0, 0]], tf.int64)
  ids_reordered = tf.constant([[2, 0, 1, 0]], tf.int64)
  out = layer(ids).numpy()
  np.testing.assert_allclose(out[0], out[1])
  np.testing.assert_allclose(out[2], 0)
  np.testing.assert_allclose(layer(ids_reordered).numpy()[0], out[0], atol=1e-6)
