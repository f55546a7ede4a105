"""Multi-gate Mixture-of-Experts (MMoE).

Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
Mixture-of-Experts", KDD 2018. With experts f_1..f_n shared by all tasks and
one gate per task t:

    g_t(x) = softmax(W_t h_t(x) + b_t)        (h_t: optional gate MLP, else x)
    y_t    = sum_i g_t(x)_i f_i(x)
"""

from typing import Sequence

import tensorflow as tf

from models.layers.gating import (check_common, check_single_input, mix, positive_units,
                                  task_output_shapes)
from models.layers.mlp import MLP


@tf.keras.utils.register_keras_serializable(package="aitm")
class MMoE(tf.keras.layers.Layer):
  """Input `[batch, d]` -> list of `num_task` tensors `[batch, expert_units[-1]]`.

  Every expert is an MLP with `expert_units`; each task's gate is an optional
  MLP with `gate_units` followed by a linear `num_expert`-way layer and a
  softmax, all computed from the same input.
  """

  def __init__(self, num_task: int, num_expert: int, expert_units: Sequence[int],
               gate_units: Sequence[int] = (), use_bn: bool = False,
               dropout_rate: float = 0.0, l2_reg: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    check_common(num_task, dropout_rate, l2_reg)
    if int(num_expert) < 1:
      raise ValueError(f"`num_expert` must be >= 1. Got {num_expert}")
    self.num_task = int(num_task)
    self.num_expert = int(num_expert)
    self.expert_units = positive_units("expert_units", expert_units, allow_empty=False)
    self.gate_units = positive_units("gate_units", gate_units, allow_empty=True)
    self.use_bn = use_bn
    self.dropout_rate = dropout_rate
    self.l2_reg = l2_reg
    mlp_args = dict(use_bn=use_bn, dropout_rate=dropout_rate, l2_reg=l2_reg)
    reg = tf.keras.regularizers.l2(l2_reg) if l2_reg else None
    self.experts = [MLP(self.expert_units, name=f"expert_{i}", **mlp_args)
                    for i in range(self.num_expert)]
    self.gate_mlps = [MLP(self.gate_units, name=f"gate_mlp_{t}", **mlp_args)
                      for t in range(self.num_task)] if self.gate_units else []
    # No activation: the softmax in call() turns these into the gate.
    self.gate_logits = [tf.keras.layers.Dense(self.num_expert, kernel_regularizer=reg,
                                              name=f"gate_{t}")
                        for t in range(self.num_task)]

  def build(self, input_shape):
    """Checks that the input is one `[batch, d]` tensor."""
    check_single_input("MMoE", input_shape)
    super().build(input_shape)

  # Only Python loops over Python ints: AutoGraph has nothing to convert, and
  # skipping it saves seconds per trace (it would transpile Keras internals).
  @tf.autograph.experimental.do_not_convert
  def call(self, inputs, training=None):
    """`[batch, d]` -> a list of `num_task` tensors `[batch, expert_units[-1]]`, each
    task's gated mix of the shared experts."""
    expert_outputs = [e(inputs, training=training) for e in self.experts]
    outputs = []
    for t in range(self.num_task):
      h = self.gate_mlps[t](inputs, training=training) if self.gate_mlps else inputs
      outputs.append(mix(expert_outputs, self.gate_logits[t](h)))
    return outputs

  def compute_output_shape(self, input_shape):
    """One `[batch, expert_units[-1]]` shape per task."""
    return task_output_shapes(input_shape, self.expert_units[-1], self.num_task)

  def get_config(self):
    """The constructor arguments, for Keras serialization."""
    config = super().get_config()
    config.update(num_task=self.num_task, num_expert=self.num_expert,
                  expert_units=self.expert_units, gate_units=self.gate_units,
                  use_bn=self.use_bn, dropout_rate=self.dropout_rate,
                  l2_reg=self.l2_reg)
    return config
