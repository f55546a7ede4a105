"""The Adaptive Information Transfer (AIT) module of AITM.

Xi et al., "Modeling the Sequential Dependence among Audience Multi-step
Conversions with Multi-task Learning in Targeted Display Advertising",
KDD 2021. For task t with tower output q_t and the preceding task's
representation z_{t-1}:

    p_{t-1} = g(z_{t-1})                                  (transfer MLP)
    w_u     = softmax_u( <h1(u), h2(u)> / sqrt(k) ),  u in {p_{t-1}, q_t}
    z_t     = sum_u w_u h3(u)

h1, h2, h3 are linear projections to k = `project_dim` (default: q_t's width).
"""

from typing import Any, Dict, Optional, Sequence, Union

import tensorflow as tf

from models.layers.mlp import MLP


@tf.keras.utils.register_keras_serializable(package="aitm")
class AITMTower(tf.keras.layers.Layer):
  """Inputs `[q_t [batch, d], z_prev_1 [batch, d1], ...]` -> z_t `[batch, project_dim]`.

  The first input is the current task's tower, the later ones the preceding
  tasks' representations (EasyRec's input order). Each preceding input goes
  through the shared transfer MLP, whose last width must equal d. With
  `stop_gradient` (EasyRec's default) the current task's loss does not train
  the preceding towers through the transfer.

  `transfer_mlp` is the MLP's hidden units, or a dict of `MLP` arguments.
  `l2_reg` applies to the projections (and to the transfer MLP unless its
  dict says otherwise).
  """

  def __init__(self, transfer_mlp: Union[Sequence[int], Dict[str, Any]],
               project_dim: Optional[int] = None, stop_gradient: bool = True,
               l2_reg: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    options = (dict(transfer_mlp) if isinstance(transfer_mlp, dict)
               else {"hidden_units": [int(u) for u in transfer_mlp]})
    options.setdefault("l2_reg", l2_reg)
    self.transfer_options = options
    self.transfer_units = [int(u) for u in options["hidden_units"]]
    self.project_dim = project_dim
    self.stop_gradient = stop_gradient
    self.l2_reg = l2_reg
    self.transfer_mlp = MLP(name="transfer_mlp", **options)

  def build(self, input_shape):
    """Checks the input list (at least two; the transfer MLP's last width equal to d) and
    creates the projections h1, h2, h3 to k = `project_dim` or d."""
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) < 2:
      raise ValueError(
          "AITMTower takes a list [current_tower, preceding_tower, ...] of at least "
          f"two inputs. Got {input_shape}")
    dim = int(input_shape[0][-1])
    if self.transfer_units[-1] != dim:
      raise ValueError(
          f"the transfer MLP's last width ({self.transfer_units[-1]}) must equal the "
          f"current tower's width ({dim}) so the two can be attended over together")
    k = self.project_dim or dim
    reg = tf.keras.regularizers.l2(self.l2_reg) if self.l2_reg else None
    self.h1, self.h2, self.h3 = (
        tf.keras.layers.Dense(k, use_bias=False, kernel_regularizer=reg, name=n)
        for n in ("h1", "h2", "h3"))
    self._scale = float(k) ** 0.5
    super().build(input_shape)

  def call(self, inputs, training=None):
    """`[q_t [batch, d], z_prev_1 [batch, d1], ...]` -> z_t `[batch, project_dim or d]`.

    Each preceding input goes through the transfer MLP (behind a stop_gradient when
    `stop_gradient`); q_t and the transferred inputs are then mixed by attention,
    per example. `training` reaches the transfer MLP's batch norm and dropout.
    """
    current, preceding = inputs[0], inputs[1:]
    items = [current]
    for z in preceding:
      # Stop before the transfer MLP: it still learns, the preceding tower doesn't
      # learn from this task's loss.
      if self.stop_gradient:
        z = tf.stop_gradient(z)
      items.append(self.transfer_mlp(z, training=training))
    # [batch, n_items, d] -> attention weights over the items, per example.
    stacked = tf.stack(items, axis=1)
    logits = tf.reduce_sum(self.h1(stacked) * self.h2(stacked), axis=-1) / self._scale
    weights = tf.nn.softmax(logits, axis=1)                       # [batch, n_items]
    return tf.reduce_sum(weights[..., None] * self.h3(stacked), axis=1)

  def get_config(self):
    """The constructor arguments, for Keras serialization."""
    config = super().get_config()
    config.update(transfer_mlp=self.transfer_options, project_dim=self.project_dim,
                  stop_gradient=self.stop_gradient, l2_reg=self.l2_reg)
    return config
