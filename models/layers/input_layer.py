"""EasyRec's input_layer block: a feature group's embeddings as one tensor, a list or a stack.

EasyRec's `EnhancedInputLayer` (easy_rec/python/layers/common_layers.py) with the
options of backbone.proto's InputLayer that concern non-sequence DEEP features.
"""

from typing import Sequence

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="aitm")
class GroupInput(tf.keras.layers.Layer):
  """A list of N feature embeddings `[batch, d_i]` -> the group's input.

  Output: the concatenation `[batch, sum d_i]` (default); the list itself with
  `only_output_feature_list`; `[batch, N, d]` with `only_output_3d_tensor` (equal
  widths). `do_batch_norm` / `do_layer_norm` normalize each feature and the
  concatenation; `dropout_rate` drops units of each listed feature and of the
  concatenation; `feature_dropout_rate` drops whole features while training, one
  draw per feature for the whole batch, and rescales the kept ones, as EasyRec does.
  """

  def __init__(self, do_batch_norm: bool = False, do_layer_norm: bool = False,
               dropout_rate: float = 0.0, feature_dropout_rate: float = 0.0,
               only_output_feature_list: bool = False, only_output_3d_tensor: bool = False,
               **kwargs):
    super().__init__(**kwargs)
    if do_batch_norm and do_layer_norm:
      raise ValueError("do_batch_norm and do_layer_norm exclude each other")
    for name, rate in (("dropout_rate", dropout_rate),
                       ("feature_dropout_rate", feature_dropout_rate)):
      if not 0.0 <= rate < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1). Got {rate}")
    self.do_batch_norm, self.do_layer_norm = do_batch_norm, do_layer_norm
    self.dropout_rate, self.feature_dropout_rate = float(dropout_rate), float(feature_dropout_rate)
    self.only_output_feature_list = only_output_feature_list
    self.only_output_3d_tensor = only_output_3d_tensor
    self._norms, self._concat_norm = [], None
    self._dropout = tf.keras.layers.Dropout(self.dropout_rate) if self.dropout_rate else None

  def _norm(self, name):
    if self.do_batch_norm:
      return tf.keras.layers.BatchNormalization(name=name)
    if self.do_layer_norm:
      return tf.keras.layers.LayerNormalization(name=name)
    return None

  def build(self, input_shape):
    """One normalization per feature and one for the concatenation, when asked."""
    if not isinstance(input_shape, (list, tuple)) or not input_shape:
      raise ValueError(f"GroupInput takes a list of feature embeddings. Got {input_shape}")
    if self.only_output_3d_tensor and len({int(s[-1]) for s in input_shape}) != 1:
      raise ValueError("only_output_3d_tensor needs features of one embedding width. Got "
                       f"{[int(s[-1]) for s in input_shape]}")
    self._norms = [self._norm(f"feature_{i}_norm") for i in range(len(input_shape))]
    self._concat_norm = self._norm("concat_norm")
    super().build(input_shape)

  def call(self, inputs: Sequence[tf.Tensor], training=None):
    """N tensors `[batch, d_i]` -> `[batch, sum d_i]`, the list, or `[batch, N, d]`."""
    features = list(inputs)
    if self.feature_dropout_rate and training:
      keep = 1.0 - self.feature_dropout_rate
      mask = tf.cast(tf.random.uniform([len(features)]) < keep, features[0].dtype) / keep
      features = [f * mask[i] for i, f in enumerate(features)]
    if self.only_output_feature_list or self.only_output_3d_tensor:
      if self._norms[0] is not None:
        features = [norm(f, training=training) for norm, f in zip(self._norms, features)]
      if self._dropout is not None:
        features = [self._dropout(f, training=training) for f in features]
      return tf.stack(features, axis=1) if self.only_output_3d_tensor else features
    x = tf.concat(features, axis=-1)
    if self._concat_norm is not None:
      x = self._concat_norm(x, training=training)
    if self._dropout is not None and not self.feature_dropout_rate:
      x = self._dropout(x, training=training)
    return x

  def get_config(self):
    """The constructor arguments, for Keras serialization."""
    config = super().get_config()
    config.update(do_batch_norm=self.do_batch_norm, do_layer_norm=self.do_layer_norm,
                  dropout_rate=self.dropout_rate,
                  feature_dropout_rate=self.feature_dropout_rate,
                  only_output_feature_list=self.only_output_feature_list,
                  only_output_3d_tensor=self.only_output_3d_tensor)
    return config
