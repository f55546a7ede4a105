"""A task's calibration intercept: a shift of its logit, set after training."""

from typing import Sequence

import numpy as np
import tensorflow as tf

# Probabilities are clipped this far from 0 and 1 before their logit is taken.
_EPSILON = 1e-7


@tf.keras.utils.register_keras_serializable(package="aitm")
class LogitShift(tf.keras.layers.Layer):
  """p -> sigmoid(logit(p) + shift), `[batch, 1]` -> `[batch, 1]`.

  `shift` is a non-trainable scalar, 0 while the model trains (the layer passes
  p through), set afterwards by `fit_shift` so that the mean prediction over
  the eval split equals its label rate. Early stopping picks the epoch of
  best ranking, before the output bias of a rare label (0.5% of impressions
  bought) has settled: the exported model then under- or over-predicts by a
  constant factor in odds, which one intercept per task undoes without
  changing any ranking (the shift is monotone).
  """

  def build(self, input_shape):
    """Creates `shift`, a non-trainable scalar weight, at 0."""
    self.shift = self.add_weight(name="shift", shape=(), initializer="zeros",
                                 trainable=False)
    super().build(input_shape)

  def call(self, p):
    """Probabilities `[batch, 1]` -> sigmoid(logit(p) + shift) `[batch, 1]`, p clipped
    away from 0 and 1 first."""
    p = tf.clip_by_value(p, _EPSILON, 1 - _EPSILON)
    return tf.sigmoid(tf.math.log(p) - tf.math.log1p(-p) + self.shift)

  def get_config(self):
    """The base layer's config: LogitShift has no arguments (`shift` is a weight)."""
    return super().get_config()


def fit_shift(predictions: Sequence[float], label_rate: float) -> float:
  """The logit shift that brings the mean of `predictions` to `label_rate` (bisection;
  the mean of sigmoid(logit + b) increases with b)."""
  p = np.clip(np.asarray(predictions, np.float64), _EPSILON, 1 - _EPSILON)
  logits = np.log(p) - np.log1p(-p)
  rate = float(np.clip(label_rate, _EPSILON, 1 - _EPSILON))
  low, high = -20.0, 20.0
  for _ in range(60):
    middle = (low + high) / 2
    if np.mean(1 / (1 + np.exp(-(logits + middle)))) < rate:
      low = middle
    else:
      high = middle
  return (low + high) / 2
