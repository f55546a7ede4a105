"""Progressive Layered Extraction (PLE).

Tang et al., "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning
(MTL) Model for Personalized Recommendations", RecSys 2020. PLE stacks
`num_level` Customized Gate Control (CGC) extraction networks. At level l, with
task t's input x_t and the shared input x_s (all equal to the layer input at
level 0), task experts E_t, shared experts E_s:

    y_t = sum softmax(G_t(x_t)) * [E_t(x_t), E_s(x_s)]            (every task)
    y_s = sum softmax(G_s(x_s)) * [E_1(x_1), ..., E_T(x_T), E_s(x_s)]

y_s exists on every level but the last, where only the task outputs are used.
The next level takes y_t as x_t and y_s as x_s.

With `levels`, each level has its own expert counts and expert MLPs, as
EasyRec's `ple {}` extraction_networks do (models/config/model_classes.py);
the last level may have no shared experts.
"""

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf

from models.layers.gating import ExpertGateLayer, mix
from models.layers.mlp import MLP


@tf.keras.utils.register_keras_serializable(package="aitm")
class PLE(ExpertGateLayer):
  """Input `[batch, d]` -> list of `num_task` tensors `[batch, expert_units[-1]]`.

  Every expert on every level is an MLP with `expert_units`, so levels after
  the first take `expert_units[-1]`-wide inputs. Each gate is an optional MLP
  with `gate_units` followed by a linear layer and a softmax over the experts
  it mixes: task t's own plus the shared ones, or, for the shared gate, all.

  `levels`: one dict per level, `num_expert_per_task`, `num_expert_share` (0 allowed
  on the last level) and the keyword arguments of the task and shared experts' MLPs
  (`task_expert`, `share_expert`); given, they replace `num_level`, the expert
  counts and `expert_units` (then the last level's task expert units).
  """
  OWN_CONFIG = ("num_level", "num_expert_per_task", "num_expert_share", "levels")

  def __init__(self, num_task: int, expert_units: Sequence[int], num_level: int = 2,
               num_expert_per_task: int = 1, num_expert_share: int = 1,
               gate_units: Sequence[int] = (), use_bn: bool = False,
               dropout_rate: float = 0.0, l2_reg: float = 0.0,
               levels: Optional[Sequence[Dict[str, Any]]] = None, **kwargs):
    super().__init__(**kwargs)
    if levels:
      expert_units = levels[-1]["task_expert"]["hidden_units"]
      num_level = len(levels)
    self._set_common(num_task, expert_units, gate_units, use_bn, dropout_rate, l2_reg)
    for name, value in (("num_level", num_level),
                        ("num_expert_per_task", num_expert_per_task),
                        ("num_expert_share", num_expert_share)):
      if int(value) < 1:
        raise ValueError(f"`{name}` must be >= 1. Got {value}")
    self.num_level = int(num_level)
    self.num_expert_per_task = int(num_expert_per_task)
    self.num_expert_share = int(num_expert_share)
    self.levels = [dict(level) for level in levels] if levels else None
    plan = self._level_plan()

    def expert(settings, name):
      if settings is None:
        return self._mlp(self.expert_units, name)
      return MLP(**settings, name=name)

    def gate(name, num_choice):
      # The MLP (if any) and the logits layer are kept as a pair so call() can
      # skip the MLP without a separate branch per gate kind.
      mlp = [self._mlp(self.gate_units, f"{name}_mlp")] if self.gate_units else []
      return mlp + [self._gate_logits_layer(num_choice, name)]

    # Indexed [level][task][expert], [level][expert], [level][task] and [level].
    self.task_experts, self.shared_experts = [], []
    self.task_gates, self.shared_gates = [], []
    for level, (per_task, share, task_mlp, share_mlp) in enumerate(plan):
      self.task_experts.append([[expert(task_mlp, f"level_{level}_task_{t}_expert_{i}")
                                 for i in range(per_task)]
                                for t in range(self.num_task)])
      self.shared_experts.append([expert(share_mlp, f"level_{level}_shared_expert_{i}")
                                  for i in range(share)])
      self.task_gates.append([gate(f"level_{level}_task_{t}_gate", per_task + share)
                              for t in range(self.num_task)])
      if level < self.num_level - 1:
        self.shared_gates.append(gate(f"level_{level}_shared_gate",
                                      self.num_task * per_task + share))

  def _level_plan(self):
    """Per level: (task experts per task, shared experts, task expert MLP kwargs, shared
    expert MLP kwargs); None kwargs: the layer's own expert_units and settings."""
    if not self.levels:
      return [(self.num_expert_per_task, self.num_expert_share, None, None)] * self.num_level
    plan = []
    for index, level in enumerate(self.levels):
      per_task, share = int(level["num_expert_per_task"]), int(level["num_expert_share"])
      last = index == len(self.levels) - 1
      if per_task < 1 or share < (0 if last else 1):
        raise ValueError(f"PLE level {index}: needs num_expert_per_task >= 1 and "
                         f"num_expert_share >= {0 if last else 1}. Got {per_task}, {share}")
      widths = {level["task_expert"]["hidden_units"][-1]} | (
          {level["share_expert"]["hidden_units"][-1]} if share else set())
      if len(widths) != 1:
        raise ValueError(f"PLE level {index}: task and shared experts must end in the "
                         f"same width. Got {sorted(widths)}")
      plan.append((per_task, share, level["task_expert"], level.get("share_expert")))
    return plan

  @staticmethod
  def _gate_logits(gate, x, training):
    for layer in gate:
      x = layer(x, training=training)
    return x

  # Only Python loops over Python ints: AutoGraph has nothing to convert, and
  # skipping it saves seconds per trace (it would transpile Keras internals).
  @tf.autograph.experimental.do_not_convert
  def call(self, inputs, training=None):
    """`[batch, d]` -> a list of `num_task` tensors `[batch, expert_units[-1]]`, the task
    outputs y_t of the last level."""
    task_inputs = [inputs] * self.num_task
    shared_input = inputs
    for level in range(self.num_level):
      task_out = [[e(task_inputs[t], training=training) for e in self.task_experts[level][t]]
                  for t in range(self.num_task)]
      shared_out = [e(shared_input, training=training) for e in self.shared_experts[level]]
      next_task_inputs = [
          mix(task_out[t] + shared_out,
              self._gate_logits(self.task_gates[level][t], task_inputs[t], training))
          for t in range(self.num_task)]
      # The last level has no shared gate: nothing above it would read y_s.
      if level < self.num_level - 1:
        all_out = [o for outs in task_out for o in outs] + shared_out
        shared_logits = self._gate_logits(self.shared_gates[level], shared_input, training)
        shared_input = mix(all_out, shared_logits)
      task_inputs = next_task_inputs
    return task_inputs
