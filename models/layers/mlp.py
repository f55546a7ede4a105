"""EasyRec's MLP block: Dense -> BatchNorm -> activation -> Dropout, per layer."""

from typing import Optional, Sequence

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="aitm")
class MLP(tf.keras.layers.Layer):
  """A stack of fully connected layers with EasyRec's defaults.

  Input `[batch_size, in_dim]`, output `[batch_size, hidden_units[-1]]`.
  With batch norm on (the default) the Dense layers carry no bias, since the
  norm's beta plays that role.
  """

  def __init__(self, hidden_units: Sequence[int], activation: str = "relu",
               use_bn: bool = True, dropout_rate: float = 0.0,
               use_bias: Optional[bool] = None, l2_reg: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    hidden_units = [int(u) for u in hidden_units]
    if not hidden_units or min(hidden_units) <= 0:
      raise ValueError(f"`hidden_units` must be positive integers. Got {hidden_units}")
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f"`dropout_rate` must be in [0, 1). Got {dropout_rate}")
    self.hidden_units = hidden_units
    self.activation = activation
    self.use_bn = use_bn
    self.dropout_rate = dropout_rate
    self.use_bias = (not use_bn) if use_bias is None else use_bias
    self.l2_reg = l2_reg
    reg = tf.keras.regularizers.l2(l2_reg) if l2_reg else None
    self._layers = []
    for units in hidden_units:
      self._layers.append(tf.keras.layers.Dense(
          units, use_bias=self.use_bias, kernel_initializer="he_uniform",
          kernel_regularizer=reg))
      if use_bn:
        self._layers.append(tf.keras.layers.BatchNormalization())
      self._layers.append(tf.keras.layers.Activation(activation))
      if dropout_rate:
        self._layers.append(tf.keras.layers.Dropout(dropout_rate))

  def call(self, inputs, training=None):
    x = inputs
    for layer in self._layers:
      x = layer(x, training=training)
    return x

  def get_config(self):
    config = super().get_config()
    config.update(hidden_units=self.hidden_units, activation=self.activation,
                  use_bn=self.use_bn, dropout_rate=self.dropout_rate,
                  use_bias=self.use_bias, l2_reg=self.l2_reg)
    return config
