"""Loss terms beyond per-task binary cross-entropy, each logged under its own name."""

from typing import Sequence

import tensorflow as tf


def order_calibration_loss(p_current, p_preceding):
  """AITM's behavioural expectation calibrator: mean(max(p_t - p_{t-1}, 0)).

  A later funnel step can't be likelier than an earlier one
  (P(buy) <= P(click)), so the model pays for every impression where it
  predicts otherwise. Inputs are probabilities of the same shape.
  """
  return tf.reduce_mean(tf.nn.relu(p_current - p_preceding))


@tf.keras.utils.register_keras_serializable(package="aitm")
class OrderCalibration(tf.keras.layers.Layer):
  """Adds `weight * sum_r order_calibration_loss(p_t, p_r)` as a model loss.

  Inputs `[p_t, p_r1, ...]`, each `[batch, 1]`; returns p_t unchanged. The
  unweighted value is reported as the metric `<name>` (TensorBoard shows it
  beside the per-task losses).
  """

  def __init__(self, weight: float = 1.0, **kwargs):
    super().__init__(**kwargs)
    self.weight = float(weight)

  def call(self, inputs: Sequence[tf.Tensor]):
    """`[p_t, p_r1, ...]`, each `[batch, 1]` -> p_t `[batch, 1]`, unchanged; adds the
    weighted loss and logs the unweighted value as the metric `<name>`."""
    current, preceding = inputs[0], inputs[1:]
    value = tf.add_n([order_calibration_loss(current, p) for p in preceding])
    self.add_loss(self.weight * value)
    self.add_metric(value, name=self.name, aggregation="mean")
    return current

  def get_config(self):
    """The constructor arguments, for Keras serialization."""
    config = super().get_config()
    config.update(weight=self.weight)
    return config


def l2_regularization_loss(model: tf.keras.Model) -> float:
  """The current value of every kernel regularizer in the model (`l2_regularization`)."""
  total = 0.0
  for layer in model.submodules:
    regularizer = getattr(layer, "kernel_regularizer", None)
    if regularizer is not None and getattr(layer, "kernel", None) is not None:
      total += float(regularizer(layer.kernel))
  return total
