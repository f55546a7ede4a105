"""What the expert-gate layers (MMoE, PLE) share: their base class, argument checks and
the gated mix."""

from typing import Sequence, Tuple

import tensorflow as tf

from models.layers.mlp import MLP


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


class ExpertGateLayer(tf.keras.layers.Layer):
  """Base of MMoE and PLE: one input `[batch, d]` -> a list of `num_task` tensors
  `[batch, expert_units[-1]]`, experts and gates built from one set of MLP settings.

  A subclass calls `_set_common` first and names its own constructor arguments in
  `OWN_CONFIG`, which `get_config` returns with the shared ones.
  """
  OWN_CONFIG: Tuple[str, ...] = ()
  _COMMON_CONFIG = ("num_task", "expert_units", "gate_units", "use_bn", "dropout_rate",
                    "l2_reg")

  def _set_common(self, num_task: int, expert_units: Sequence[int],
                  gate_units: Sequence[int], use_bn: bool, dropout_rate: float,
                  l2_reg: float) -> None:
    check_common(num_task, dropout_rate, l2_reg)
    self.num_task = int(num_task)
    self.expert_units = positive_units("expert_units", expert_units, allow_empty=False)
    self.gate_units = positive_units("gate_units", gate_units, allow_empty=True)
    self.use_bn, self.dropout_rate, self.l2_reg = use_bn, dropout_rate, l2_reg

  def _mlp(self, units: Sequence[int], name: str) -> MLP:
    """An expert or gate MLP with the layer's batch norm, dropout and L2 settings."""
    return MLP(units, name=name, use_bn=self.use_bn, dropout_rate=self.dropout_rate,
               l2_reg=self.l2_reg)

  def _gate_logits_layer(self, num_choice: int, name: str) -> tf.keras.layers.Dense:
    """A gate's linear `num_choice`-way layer; no activation: the softmax in `mix`
    turns it into the gate."""
    reg = tf.keras.regularizers.l2(self.l2_reg) if self.l2_reg else None
    return tf.keras.layers.Dense(num_choice, kernel_regularizer=reg, name=name)

  def build(self, input_shape):
    """Checks that the input is one `[batch, d]` tensor."""
    check_single_input(type(self).__name__, input_shape)
    super().build(input_shape)

  def compute_output_shape(self, input_shape):
    """One `[batch, expert_units[-1]]` shape per task."""
    return task_output_shapes(input_shape, self.expert_units[-1], self.num_task)

  def get_config(self):
    """The constructor arguments, for Keras serialization."""
    config = super().get_config()
    config.update({name: getattr(self, name) for name in self._COMMON_CONFIG + self.OWN_CONFIG})
    return config
