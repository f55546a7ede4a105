"""The Trainer's Adam: Keras' update, in one kernel per variable."""

import numpy as np
import pytest
import tensorflow as tf

from models.optimizers import FusedAdam
from models.training import warmup_cosine


def _model(seed):
  """An embedding table (IndexedSlices gradients, repeated ids) under a dense layer."""
  tf.keras.utils.set_random_seed(seed)
  ids = tf.keras.Input(shape=(3,), dtype=tf.int64)
  vectors = tf.keras.layers.Embedding(50, 4)(ids)
  out = tf.keras.layers.Dense(1)(tf.keras.layers.Flatten()(vectors))
  return tf.keras.Model(ids, out)


@pytest.mark.parametrize("rate", [3e-2, "schedule"])
def test_it_trains_as_keras_adam_does(rate):
  rng = np.random.default_rng(0)
  # Few ids: every batch repeats some and leaves others out (rows moved by momentum only).
  x = rng.integers(0, 12, size=(64, 3))
  y = rng.normal(size=(64, 1)).astype(np.float32)
  weights = []
  for optimizer in (tf.keras.optimizers.Adam, FusedAdam):
    model = _model(seed=1)
    model.compile(optimizer(warmup_cosine(3e-2, 20) if rate == "schedule" else rate,
                            beta_1=0.8, beta_2=0.99), loss="mse")
    model.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0)
    weights.append(model.get_weights())
  table_before = _model(seed=1).get_weights()[0]
  np.testing.assert_array_equal(weights[1][0][12:], table_before[12:])  # never looked up
  assert not np.allclose(weights[1][0][:12], table_before[:12])
  for keras, fused in zip(*weights):
    np.testing.assert_allclose(fused, keras, rtol=2e-5, atol=1e-6)


def test_amsgrad_runs_keras_own_update():
  variable = tf.Variable([1.0, 2.0])
  optimizer = FusedAdam(0.1, amsgrad=True)
  optimizer.apply_gradients([(tf.constant([0.5, -0.5]), variable)])
  np.testing.assert_allclose(variable.numpy(), [0.9, 2.1], rtol=1e-5)
