"""EasyRec's MLP block: Dense -> BatchNorm -> activation -> Dropout, per layer."""

from typing import Optional, Sequence, Union

import tensorflow as tf


def keras_activation(name: Optional[str]):
  """EasyRec writes 'nn.relu' or 'tf.nn.relu'; Keras wants 'relu'. '' means linear."""
  if not name:
    return None
  for prefix in ("tf.", "nn."):
    if name.startswith(prefix):
      name = name[len(prefix):]
  return tf.keras.activations.get(name)


@tf.keras.utils.register_keras_serializable(package="aitm")
class MLP(tf.keras.layers.Layer):
  """A stack of fully connected layers, with EasyRec's MLP options.

  Input `[batch_size, in_dim]`, output `[batch_size, hidden_units[-1]]`.
  The last layer has its own switches (`use_final_bn`, `final_activation`,
  `use_final_bias`), as in EasyRec; left as None they follow the other
  layers. A layer with batch norm needs no bias (the norm's beta is one), so
  `use_bias` defaults to `not use_bn`. `dropout_rate` is one rate for every
  layer or one per layer.
  """

  def __init__(self, hidden_units: Sequence[int], activation: str = "relu",
               use_bn: bool = True, dropout_rate: Union[float, Sequence[float]] = 0.0,
               use_bias: Optional[bool] = None, l2_reg: float = 0.0,
               use_final_bn: Optional[bool] = None, final_activation: Optional[str] = None,
               use_final_bias: Optional[bool] = None, initializer: str = "he_uniform",
               **kwargs):
    super().__init__(**kwargs)
    hidden_units = [int(u) for u in hidden_units]
    if not hidden_units or min(hidden_units) <= 0:
      raise ValueError(f"`hidden_units` must be positive integers. Got {hidden_units}")
    rates = ([float(dropout_rate)] * len(hidden_units)
             if isinstance(dropout_rate, (int, float)) else [float(r) for r in dropout_rate])
    if len(rates) == 1:
      rates = rates * len(hidden_units)
    if len(rates) != len(hidden_units) or not all(0.0 <= r < 1.0 for r in rates):
      raise ValueError(f"`dropout_rate` must be one rate in [0, 1) or one per layer. "
                       f"Got {dropout_rate} for {len(hidden_units)} layers")
    self.hidden_units = hidden_units
    self.activation = activation
    self.use_bn = use_bn
    self.dropout_rate = dropout_rate if isinstance(dropout_rate, (int, float)) else rates
    self.use_bias = (not use_bn) if use_bias is None else use_bias
    self.l2_reg = l2_reg
    self.use_final_bn = use_bn if use_final_bn is None else use_final_bn
    self.final_activation = activation if final_activation is None else final_activation
    self.use_final_bias = ((not self.use_final_bn) if use_final_bias is None
                           else use_final_bias)
    self.initializer = initializer
    reg = tf.keras.regularizers.l2(l2_reg) if l2_reg else None
    self._layers = []
    last = len(hidden_units) - 1
    for i, units in enumerate(hidden_units):
      bn = self.use_final_bn if i == last else use_bn
      self._layers.append(tf.keras.layers.Dense(
          units, use_bias=self.use_final_bias if i == last else self.use_bias,
          kernel_initializer=initializer, kernel_regularizer=reg))
      if bn:
        self._layers.append(tf.keras.layers.BatchNormalization())
      act = keras_activation(self.final_activation if i == last else activation)
      if act is not None:
        self._layers.append(tf.keras.layers.Activation(act))
      if rates[i]:
        self._layers.append(tf.keras.layers.Dropout(rates[i]))

  def call(self, inputs, training=None):
    """`[batch_size, in_dim]` -> `[batch_size, hidden_units[-1]]`; `training` switches
    batch norm and dropout."""
    x = inputs
    for layer in self._layers:
      x = layer(x, training=training)
    return x

  def get_config(self):
    """The constructor arguments, the defaults resolved, for Keras serialization."""
    config = super().get_config()
    config.update(hidden_units=self.hidden_units, activation=self.activation,
                  use_bn=self.use_bn, dropout_rate=self.dropout_rate,
                  use_bias=self.use_bias, l2_reg=self.l2_reg,
                  use_final_bn=self.use_final_bn, final_activation=self.final_activation,
                  use_final_bias=self.use_final_bias, initializer=self.initializer)
    return config
