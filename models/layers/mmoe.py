"""Multi-gate Mixture-of-Experts (MMoE).

Ma et al., "Modeling Task Relationships in Multi-task Learning with Multi-gate
Mixture-of-Experts", KDD 2018. With experts f_1..f_n shared by all tasks and
one gate per task t:

    g_t(x) = softmax(W_t h_t(x) + b_t)        (h_t: optional gate MLP, else x)
    y_t    = sum_i g_t(x)_i f_i(x)
"""

from typing import Sequence

import tensorflow as tf

from models.layers.gating import ExpertGateLayer, mix


@tf.keras.utils.register_keras_serializable(package="aitm")
class MMoE(ExpertGateLayer):
  """Input `[batch, d]` -> list of `num_task` tensors `[batch, expert_units[-1]]`.

  Every expert is an MLP with `expert_units`; each task's gate is an optional
  MLP with `gate_units` followed by a linear `num_expert`-way layer and a
  softmax, all computed from the same input.
  """
  OWN_CONFIG = ("num_expert",)

  def __init__(self, num_task: int, num_expert: int, expert_units: Sequence[int],
               gate_units: Sequence[int] = (), use_bn: bool = False,
               dropout_rate: float = 0.0, l2_reg: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self._set_common(num_task, expert_units, gate_units, use_bn, dropout_rate, l2_reg)
    if int(num_expert) < 1:
      raise ValueError(f"`num_expert` must be >= 1. Got {num_expert}")
    self.num_expert = int(num_expert)
    self.experts = [self._mlp(self.expert_units, f"expert_{i}")
                    for i in range(self.num_expert)]
    self.gate_mlps = [self._mlp(self.gate_units, f"gate_mlp_{t}")
                      for t in range(self.num_task)] if self.gate_units else []
    self.gate_logits = [self._gate_logits_layer(self.num_expert, f"gate_{t}")
                        for t in range(self.num_task)]

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
