"""Loss terms beyond per-task binary cross-entropy."""

import tensorflow as tf


def order_calibration_loss(p_current, p_preceding):
  """AITM's behavioural expectation calibrator: mean(max(p_t - p_{t-1}, 0)).

  A later funnel step can't be likelier than an earlier one
  (P(buy) <= P(click)), so the model pays for every impression where it
  predicts otherwise. Inputs are probabilities of the same shape.
  """
  return tf.reduce_mean(tf.nn.relu(p_current - p_preceding))
