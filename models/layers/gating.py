"""What the expert-gate layers (MMoE, PLE) share: argument checks and the gated mix."""

import tensorflow as tf


def positive_units(name, units, allow_empty):
  """`units` as ints; ValueError naming `name` unless all are positive and, without
  `allow_empty`, there is at least one."""
  units = [int(u) for u in units]
  if (not units and not allow_empty) or any(u <= 0 for u in units):
    raise ValueError(f"`{name}` must be a {'' if allow_empty else 'non-empty '}"
                     f"list of positive integers. Got {units}")
  return units


def check_common(num_task, dropout_rate, l2_reg):
  """ValueError unless num_task >= 1, dropout_rate is in [0, 1) and l2_reg >= 0."""
  if int(num_task) < 1:
    raise ValueError(f"`num_task` must be >= 1. Got {num_task}")
  if not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f"`dropout_rate` must be in [0, 1). Got {dropout_rate}")
  if l2_reg < 0.0:
    raise ValueError(f"`l2_reg` must be >= 0. Got {l2_reg}")


def check_single_input(layer_name, input_shape):
  """ValueError unless `input_shape` is one rank-2 shape `[batch, d]`."""
  # A list here is almost surely a caller passing the task towers by mistake.
  if isinstance(input_shape, (list, tuple)) and input_shape and \
      isinstance(input_shape[0], (list, tuple, tf.TensorShape)):
    raise ValueError(f"{layer_name} takes one tensor [batch, d]. Got {input_shape}")
  if tf.TensorShape(input_shape).rank != 2:
    raise ValueError(f"{layer_name} takes a rank-2 input [batch, d]. Got {input_shape}")


def mix(expert_outputs, gate_logits):
  """Softmax-weighted sum of `[batch, units]` expert outputs -> `[batch, units]`."""
  weights = tf.nn.softmax(gate_logits, axis=-1)                 # [batch, n]
  stacked = tf.stack(expert_outputs, axis=1)                    # [batch, n, units]
  return tf.reduce_sum(weights[..., None] * stacked, axis=1)


def task_output_shapes(input_shape, units: int, num_task: int):
  """One `[batch, units]` shape per task."""
  return [tf.TensorShape(input_shape)[:-1].concatenate([units])] * num_task
