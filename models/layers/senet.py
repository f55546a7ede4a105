"""The SENet (squeeze-and-excitation) layer of FiBiNET, as EasyRec's keras SENet.

Huang et al., "FiBiNET: Combining Feature Importance and Bilinear feature
Interaction for Click-Through Rate Prediction", RecSys 2019; the grouped
squeeze and the skip connection and layer norm are FiBiNet++'s (Zhang et al.
2022). For N fields e_i of width d_i, each cut into g groups:

    z = [max and mean of each group of each field]      [batch, N*g*2]
    a = W2(relu(W1 z))                                  [batch, sum d_i]
    y = LN(x * a + x),  x = concat(e_1..e_N)
"""

from typing import Sequence

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="aitm")
class SENet(tf.keras.layers.Layer):
  """A list of N field embeddings `[batch, d_i]` -> `[batch, sum d_i]`.

  Every d_i must be a multiple of `num_squeeze_group` (g), and at least g.
  W1 has max(1, N*g*2 // `reduction_ratio`) relu units, W2 one linear unit per
  input column; both have a bias and, as in EasyRec, no l2. The defaults are
  EasyRec's proto defaults.
  """

  def __init__(self, reduction_ratio: int = 4, num_squeeze_group: int = 2,
               use_skip_connection: bool = True, use_output_layer_norm: bool = True,
               **kwargs):
    super().__init__(**kwargs)
    if int(reduction_ratio) < 1 or int(num_squeeze_group) < 1:
      raise ValueError("`reduction_ratio` and `num_squeeze_group` must be >= 1. Got "
                       f"{reduction_ratio} and {num_squeeze_group}")
    self.reduction_ratio = int(reduction_ratio)
    self.num_squeeze_group = int(num_squeeze_group)
    self.use_skip_connection = bool(use_skip_connection)
    self.use_output_layer_norm = bool(use_output_layer_norm)
    # Keras' default epsilon (1e-3), as EasyRec's.
    self.layer_norm = (tf.keras.layers.LayerNormalization(name="output_ln")
                       if self.use_output_layer_norm else None)

  def build(self, input_shape):
    """Checks the field widths and creates W1 and W2, whose sizes depend on them."""
    if not isinstance(input_shape, (list, tuple)) or not input_shape or not all(
        isinstance(s, (list, tuple, tf.TensorShape)) for s in input_shape):
      raise ValueError("SENet takes a list of field embeddings [batch, d_i], not one "
                       f"tensor. Got {input_shape}")
    g = self.num_squeeze_group
    self._widths = []
    for i, shape in enumerate(input_shape):
      shape = tf.TensorShape(shape)
      if shape.rank != 2 or shape[-1] is None:
        raise ValueError(f"SENet field {i} must be [batch, d] with d known. Got {shape}")
      dim = int(shape[-1])
      if dim < g or dim % g:
        raise ValueError(f"SENet field {i} has width {dim}, which is not a positive "
                         f"multiple of num_squeeze_group {g}")
      self._widths.append(dim)
    reduction_size = max(1, len(input_shape) * g * 2 // self.reduction_ratio)
    self.reduce_layer = tf.keras.layers.Dense(
        reduction_size, activation="relu", kernel_initializer="he_normal", name="W1")
    self.excite_layer = tf.keras.layers.Dense(
        sum(self._widths), kernel_initializer="glorot_normal", name="W2")
    super().build(input_shape)

  # Only Python loops over the fields: nothing for AutoGraph to convert. The wrapper
  # hides the signature from Keras, which then passes `training`; nothing here uses it.
  @tf.autograph.experimental.do_not_convert
  def call(self, inputs: Sequence[tf.Tensor], training=None):
    """N tensors `[batch, d_i]` -> `[batch, sum d_i]`, each column reweighted by the
    excitation of every field's group max and mean."""
    g = self.num_squeeze_group
    squeezed = []
    for emb, dim in zip(inputs, self._widths):
      groups = tf.reshape(emb, [-1, g, dim // g])
      squeezed += [tf.reduce_max(groups, axis=-1), tf.reduce_mean(groups, axis=-1)]
    weights = self.excite_layer(self.reduce_layer(tf.concat(squeezed, axis=1)))
    x = tf.concat(list(inputs), axis=-1)
    output = x * weights
    if self.use_skip_connection:
      output += x
    if self.layer_norm is not None:
      output = self.layer_norm(output)
    return output

  def get_config(self):
    """The constructor arguments, for Keras serialization."""
    config = super().get_config()
    config.update(reduction_ratio=self.reduction_ratio,
                  num_squeeze_group=self.num_squeeze_group,
                  use_skip_connection=self.use_skip_connection,
                  use_output_layer_norm=self.use_output_layer_norm)
    return config
