"""The AIT module, the calibrator, feature embeddings and MLP: by hand, and round trips."""

import numpy as np
import pytest
import tensorflow as tf

from models.layers import AITMTower, FM, FeatureEmbeddings, LogitShift, MLP
from models.layers.calibration import fit_shift
from models.losses import OrderCalibration, order_calibration_loss


def _softmax(x):
  e = np.exp(x - x.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("project_dim", [None, 6])
def test_ait_module_matches_numpy_by_hand(project_dim):
  rng = np.random.default_rng(1)
  q = rng.normal(size=(5, 4)).astype("float32")
  z_prev = rng.normal(size=(5, 3)).astype("float32")
  layer = AITMTower({"hidden_units": [4], "use_bn": False}, project_dim=project_dim,
                    stop_gradient=False)
  out = layer([tf.constant(q), tf.constant(z_prev)]).numpy()
  dense = layer.transfer_mlp._layers[0]
  p = np.maximum(z_prev @ dense.kernel.numpy() + dense.bias.numpy(), 0)  # transfer MLP
  items = np.stack([q, p], axis=1)                                        # [5, 2, 4]
  h1, h2, h3 = (items @ h.kernel.numpy() for h in (layer.h1, layer.h2, layer.h3))
  k = project_dim or 4
  assert h1.shape == (5, 2, k)
  weights = _softmax((h1 * h2).sum(-1) / np.sqrt(k))                       # [5, 2]
  expected = (weights[..., None] * h3).sum(1)
  assert out.shape == (5, k)
  np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("stop_gradient", [False, True])
def test_gradients_through_the_attention(stop_gradient):
  q = tf.Variable(tf.random.normal((8, 16)))
  z_prev = tf.Variable(tf.random.normal((8, 16)))
  layer = AITMTower([16], stop_gradient=stop_gradient)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(layer([q, z_prev], training=True) ** 2)
  grad_q, grad_prev, *grad_transfer = tape.gradient(
      loss, [q, z_prev] + layer.transfer_mlp.trainable_weights)
  assert float(tf.norm(grad_q)) > 0
  assert all(g is not None and float(tf.norm(g)) > 0 for g in grad_transfer)
  if stop_gradient:
    assert grad_prev is None  # EasyRec's default: the cvr loss leaves the ctr tower alone
  else:
    assert float(tf.norm(grad_prev)) > 0


def test_aitm_tower_rejects_mismatched_widths():
  with pytest.raises(ValueError, match="must equal the current tower's width"):
    AITMTower([32])([tf.zeros((2, 16)), tf.zeros((2, 16))])


def test_calibrator_value_and_gradient_by_hand():
  p_cvr = tf.Variable([[0.5], [0.1], [0.3], [0.0]])
  p_ctr = tf.Variable([[0.2], [0.4], [0.3], [0.1]])
  layer = OrderCalibration(weight=2.0, name="cvr_order_calibrate_loss")
  with tf.GradientTape() as tape:
    out = layer([p_cvr, p_ctr])
    loss = tf.add_n(layer.losses)
  # Only row 0 breaks the order (0.5 > 0.2): mean(relu) = 0.3 / 4, times the weight.
  assert float(loss) == pytest.approx(2.0 * 0.075)
  assert float(order_calibration_loss(p_cvr, p_ctr)) == pytest.approx(0.075)
  np.testing.assert_array_equal(out.numpy(), p_cvr.numpy())
  g_cvr, g_ctr = tape.gradient(loss, [p_cvr, p_ctr])
  np.testing.assert_allclose(g_cvr.numpy().ravel(), [0.5, 0, 0, 0])   # 2.0 / 4 where violated
  np.testing.assert_allclose(g_ctr.numpy().ravel(), [-0.5, 0, 0, 0])


def test_calibrator_sums_over_relation_towers():
  p = tf.constant([[0.5], [0.5]])
  layer = OrderCalibration(weight=1.0)
  layer([p, tf.constant([[0.4], [0.6]]), tf.constant([[0.1], [0.1]])])
  assert float(tf.add_n(layer.losses)) == pytest.approx(0.05 + 0.4)


def test_mlp_follows_easyrec_options():
  mlp = MLP([8, 4], use_bn=True, use_final_bn=False, final_activation="", dropout_rate=[0.1, 0.0],
            activation="nn.relu")
  mlp(tf.zeros((2, 3)))
  kinds = [type(layer).__name__ for layer in mlp._layers]
  # Hidden: Dense (no bias, BN has beta) -> BN -> ReLU -> Dropout; last: Dense with bias only.
  assert kinds == ["Dense", "BatchNormalization", "Activation", "Dropout", "Dense"]
  assert not mlp._layers[0].use_bias and mlp._layers[-1].use_bias
  with pytest.raises(ValueError, match="one per layer"):
    MLP([8, 4], dropout_rate=[0.1, 0.1, 0.1])


def test_feature_embeddings_shapes_padding_and_regularization():
  specs = [dict(name="user", kind="id", rows=10, dim=3),
           dict(name="tags", kind="tags", rows=10, dim=3),
           dict(name="price", kind="raw", rows=0, dim=1)]
  layer = FeatureEmbeddings(specs, regularization=0.5)
  ids = tf.constant([[1, 2, 0, 0], [1, 2, 0, 0], [0, 0, 0, 0], [2, 0, 1, 0]], tf.int64)
  out = layer({"user": tf.constant([1, 2, 3, 4], tf.int64), "tags": ids,
               "price": tf.constant([1.0, 2.0, 3.0, 4.0])})
  assert out["user"].shape == (4, 3) and out["tags"].shape == (4, 3)
  assert out["price"].shape == (4, 1)
  tags = out["tags"].numpy()
  np.testing.assert_allclose(tags[0], tags[1])
  np.testing.assert_allclose(tags[2], 0)                    # no tags: zeros
  np.testing.assert_allclose(tags[3], tags[0], atol=1e-6)   # order and padding don't matter
  user_table = layer.tables["user"].embeddings.numpy()
  tag_table = layer.tables["tags"].embeddings.numpy()
  expected = 0.5 * ((user_table[[1, 2, 3, 4]] ** 2).sum()
                    + 2 * (tag_table[[1, 2]] ** 2).sum() + (tag_table[[2, 1]] ** 2).sum()) / 4
  assert float(tf.add_n(layer.losses)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("layer", [
    MLP([8, 4], dropout_rate=0.1, l2_reg=1e-6, use_final_bn=False, final_activation="sigmoid"),
    AITMTower({"hidden_units": [4], "use_bn": False}, project_dim=6, stop_gradient=False),
    FeatureEmbeddings([dict(name="a", kind="tags", rows=5, dim=2)], regularization=1e-5),
    OrderCalibration(weight=0.5),
])
def test_layers_round_trip_through_get_config(layer):
  clone = type(layer).from_config(layer.get_config())
  assert clone.get_config() == layer.get_config()


def test_fm_is_the_sum_of_pairwise_dot_products():
  rng = np.random.default_rng(4)
  vectors = [rng.normal(size=(6, 5)).astype("float32") for _ in range(3)]
  pairs = sum(np.sum(vectors[i] * vectors[j], axis=1) for i in range(3) for j in range(i + 1, 3))
  out = FM()([tf.constant(v) for v in vectors]).numpy()
  assert out.shape == (6, 1)
  np.testing.assert_allclose(out[:, 0], pairs, rtol=1e-5, atol=1e-5)
  # Two vectors: their dot product; the variant keeps it per dimension.
  two = FM(use_variant=True)([tf.constant(vectors[0]), tf.constant(vectors[1])]).numpy()
  np.testing.assert_allclose(two, vectors[0] * vectors[1], rtol=1e-5, atol=1e-5)
  stacked = FM()(tf.constant(np.stack(vectors, axis=1))).numpy()
  np.testing.assert_allclose(stacked, out, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="one width"):
    FM()([tf.zeros((2, 4)), tf.zeros((2, 3))])
  clone = FM.from_config(FM(use_variant=True, name="affinity").get_config())
  assert clone.use_variant and clone.name == "affinity"


def test_calibration_intercept_passes_through_then_shifts_the_logit():
  p = tf.constant([[0.01], [0.2], [0.7]])
  layer = LogitShift()
  np.testing.assert_allclose(layer(p).numpy(), p.numpy(), rtol=1e-5)
  layer.shift.assign(np.log(3.0))
  odds = p.numpy() / (1 - p.numpy()) * 3
  np.testing.assert_allclose(layer(p).numpy(), odds / (1 + odds), rtol=1e-5)
  assert not layer.trainable_weights
  # The shift that brings a mean prediction to a label rate, by bisection.
  rng = np.random.default_rng(2)
  predictions = 1 / (1 + np.exp(-rng.normal(-5, 1, size=10_000)))
  shift = fit_shift(predictions, 0.02)
  logits = np.log(predictions / (1 - predictions)) + shift
  assert abs(np.mean(1 / (1 + np.exp(-logits))) - 0.02) < 1e-6
  assert fit_shift(predictions, predictions.mean()) == pytest.approx(0, abs=1e-6)
  assert LogitShift.from_config(LogitShift(name="ctr_calibration").get_config()).name == (
      "ctr_calibration")
