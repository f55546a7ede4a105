"""MaskNet and its MaskBlock, as EasyRec's keras MaskNet.

Wang et al., "MaskNet: Introducing Feature-Wise Multiplication to CTR Ranking
Models by Instance-Guided Mask", DLP-KDD 2021. A block scales its input `net`
by a mask computed from `mask_input` (the layer-normed features):

    mask = W_w relu(W_a mask_input + b_a) + b_w       (W_a low-rank if projection_dim)
    out  = relu(LN(W_o (net * mask)))                 (or net * mask without output_size)
"""

from typing import Any, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from models.layers.mlp import MLP


def _plain(value):
  """Lists and dicts as plain Python ones: Keras wraps those a layer holds in tracking
  types, which get_config should not hand on."""
  if isinstance(value, dict) or hasattr(value, "keys"):
    return {k: _plain(value[k]) for k in value.keys()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


@tf.keras.utils.register_keras_serializable(package="aitm")
class MaskBlock(tf.keras.layers.Layer):
  """`x [batch, d]`, or `(net [batch, d], mask_input [batch, m])` -> `[batch, output_size]`,
  or `[batch, d]` when `output_size` is None.

  A single tensor is both `net` and `mask_input`; of a longer list only the
  first two are used, as in EasyRec. The aggregation width is
  int(m * `reduction_factor`) if that is given, else `aggregation_size`.
  `l2_reg` applies to the aggregation and projection kernels only, as in EasyRec.
  """

  def __init__(self, reduction_factor: Optional[float] = None,
               output_size: Optional[int] = None, aggregation_size: Optional[int] = None,
               input_layer_norm: bool = False, projection_dim: Optional[int] = None,
               l2_reg: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if reduction_factor is None and aggregation_size is None:
      raise ValueError("MaskBlock needs `reduction_factor` or `aggregation_size`")
    if reduction_factor is not None and not float(reduction_factor) > 0:
      raise ValueError(f"`reduction_factor` must be > 0. Got {reduction_factor}")
    for name, value in (("output_size", output_size), ("aggregation_size", aggregation_size),
                        ("projection_dim", projection_dim)):
      if value is not None and int(value) < 1:
        raise ValueError(f"`{name}` must be >= 1 or None. Got {value}")
    self.reduction_factor = None if reduction_factor is None else float(reduction_factor)
    self.output_size = None if output_size is None else int(output_size)
    self.aggregation_size = None if aggregation_size is None else int(aggregation_size)
    self.input_layer_norm = bool(input_layer_norm)
    self.projection_dim = None if projection_dim is None else int(projection_dim)
    self.l2_reg = float(l2_reg)

  def build(self, input_shape):
    """Creates the projection, aggregation, mask and output layers; the mask's width is
    net's, the aggregation's follows from mask_input's."""
    if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(
        input_shape[0], (list, tuple, tf.TensorShape)):
      if len(input_shape) < 2:
        raise ValueError(f"MaskBlock takes x or (net, mask_input). Got {input_shape}")
      net_shape, mask_shape = tf.TensorShape(input_shape[0]), tf.TensorShape(input_shape[1])
    else:
      net_shape = mask_shape = tf.TensorShape(input_shape)
    input_dim, mask_dim = int(net_shape[-1]), int(mask_shape[-1])
    if self.reduction_factor is not None:
      # The proto field is a float32: EasyRec multiplies by 0.7 as 0.69999998.
      aggregation_size = int(mask_dim * float(np.float32(self.reduction_factor)))
    else:
      aggregation_size = self.aggregation_size
    if aggregation_size < 1:
      raise ValueError(f"MaskBlock's aggregation width int({mask_dim} * "
                       f"{self.reduction_factor}) is 0")
    reg = tf.keras.regularizers.l2(self.l2_reg) if self.l2_reg else None
    self.input_ln = (tf.keras.layers.LayerNormalization(name="input_ln")
                     if self.input_layer_norm else None)
    self.project_layer = (tf.keras.layers.Dense(self.projection_dim, use_bias=False,
                                                kernel_regularizer=reg, name="project")
                          if self.projection_dim else None)
    self.aggr_layer = tf.keras.layers.Dense(
        aggregation_size, activation="relu", kernel_initializer="he_uniform",
        kernel_regularizer=reg, name="aggregation")
    self.weight_layer = tf.keras.layers.Dense(input_dim, name="weights")
    if self.output_size:
      self.output_layer = tf.keras.layers.Dense(self.output_size, use_bias=False,
                                                name="output")
      self.output_ln = tf.keras.layers.LayerNormalization(name="output_ln")
    else:
      self.output_layer = self.output_ln = None
    super().build(input_shape)

  def call(self, inputs):
    """x or (net, mask_input) -> `[batch, output_size or d]`: net times the mask, then
    the output projection, layer norm and relu when `output_size` is set."""
    if isinstance(inputs, (list, tuple)):
      net, mask_input = inputs[0], inputs[1]
    else:
      net = mask_input = inputs
    if self.input_ln is not None:
      net = self.input_ln(net)
    if self.project_layer is not None:
      mask_input = self.project_layer(mask_input)
    masked = net * self.weight_layer(self.aggr_layer(mask_input))
    if self.output_layer is None:
      return masked
    return tf.nn.relu(self.output_ln(self.output_layer(masked)))

  def get_config(self):
    """The constructor arguments, for Keras serialization."""
    config = super().get_config()
    config.update(reduction_factor=self.reduction_factor, output_size=self.output_size,
                  aggregation_size=self.aggregation_size,
                  input_layer_norm=self.input_layer_norm,
                  projection_dim=self.projection_dim, l2_reg=self.l2_reg)
    return config


@tf.keras.utils.register_keras_serializable(package="aitm")
class MaskNet(tf.keras.layers.Layer):
  """`[batch, d]` -> `[batch, mlp's last width]`; without `mlp`, `[batch, sum of the
  blocks' widths]` in parallel, `[batch, the last block's width]` in serial.

  The input is layer-normed (`input_layer_norm`, EasyRec's default), then fed
  to every block of `mask_blocks` (`MaskBlock` arguments) as both net and mask
  input, the outputs concatenated (`use_parallel`); or, serially, each block
  masks the previous block's output with the normed input. `mlp`, the `MLP`
  arguments, follows. `l2_reg` reaches the blocks and the MLP unless their
  dicts set their own.
  """

  def __init__(self, mask_blocks: Sequence[Dict[str, Any]], use_parallel: bool = True,
               mlp: Optional[Dict[str, Any]] = None, input_layer_norm: bool = True,
               l2_reg: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    blocks = [dict(block) for block in mask_blocks]
    if not blocks:
      raise ValueError("MaskNet needs at least one of `mask_blocks`")
    if mlp is not None and not isinstance(mlp, dict):
      raise ValueError(f"`mlp` must be a dict of MLP arguments or None. Got {mlp!r}")
    self.block_options = blocks
    self.use_parallel = bool(use_parallel)
    self.mlp_options = None if mlp is None else dict(mlp)
    self.input_layer_norm = bool(input_layer_norm)
    self.l2_reg = float(l2_reg)
    self.input_ln = (tf.keras.layers.LayerNormalization(name="input_ln")
                     if self.input_layer_norm else None)
    self.mask_layers = [MaskBlock(**{"l2_reg": l2_reg, "name": f"block_{i}", **block})
                        for i, block in enumerate(blocks)]
    self.mlp = (None if mlp is None
                else MLP(**{"l2_reg": l2_reg, "name": "mlp", **self.mlp_options}))

  # Only Python loops over the blocks: nothing for AutoGraph to convert.
  @tf.autograph.experimental.do_not_convert
  def call(self, inputs, training=None):
    """`[batch, d]` -> the blocks' masked outputs, concatenated or chained, then the MLP;
    `training` reaches the MLP's batch norm and dropout."""
    x = self.input_ln(inputs) if self.input_ln is not None else inputs
    if self.use_parallel:
      net = tf.concat([block((x, x)) for block in self.mask_layers], axis=1)
    else:
      net = x
      for block in self.mask_layers:
        net = block((net, x))
    return net if self.mlp is None else self.mlp(net, training=training)

  def get_config(self):
    """The constructor arguments, for Keras serialization."""
    config = super().get_config()
    config.update(mask_blocks=_plain(self.block_options), use_parallel=self.use_parallel,
                  mlp=_plain(self.mlp_options), input_layer_norm=self.input_layer_norm,
                  l2_reg=self.l2_reg)
    return config
