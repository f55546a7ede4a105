"""EasyRec's FM block: the pairwise interactions of a list of embeddings."""

from typing import Sequence, Union

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="aitm")
class FM(tf.keras.layers.Layer):
  """Factorization-machine interactions, without linear term or bias (Rendle 2010).

  Input: a list of `[batch, d]` tensors of one width d, or one `[batch, n, d]`.
  Output: `[batch, 1]`, the sum over pairs i < j of <v_i, v_j>; with
  `use_variant`, `[batch, d]`, the same sum kept per dimension (EasyRec's
  variant). Given two vectors, e.g. a user side and an ad side, it is their dot
  product: a user-ad affinity the towers can use directly, where an MLP over
  the concatenation has to approximate a product.
  """

  def __init__(self, use_variant: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.use_variant = bool(use_variant)

  def call(self, inputs: Union[Sequence[tf.Tensor], tf.Tensor]):
    """A list of `[batch, d]` or one `[batch, n, d]` -> `[batch, 1]` (`[batch, d]` with
    `use_variant`); ValueError for embeddings of several widths or another rank."""
    if isinstance(inputs, (list, tuple)):
      widths = {int(x.shape[-1]) for x in inputs}
      if len(widths) != 1:
        raise ValueError(f"FM takes embeddings of one width; got widths {sorted(widths)}")
      stacked = tf.stack(list(inputs), axis=1)                  # [batch, n, d]
    else:
      if inputs.shape.rank != 3:
        raise ValueError(f"FM takes a list of [batch, d] tensors or one [batch, n, d]; "
                         f"got shape {inputs.shape}")
      stacked = inputs
    square_of_sum = tf.square(tf.reduce_sum(stacked, axis=1))    # [batch, d]
    sum_of_squares = tf.reduce_sum(tf.square(stacked), axis=1)   # [batch, d]
    pairs = 0.5 * (square_of_sum - sum_of_squares)
    return pairs if self.use_variant else tf.reduce_sum(pairs, axis=-1, keepdims=True)

  def get_config(self):
    """The constructor arguments, for Keras serialization."""
    config = super().get_config()
    config.update(use_variant=self.use_variant)
    return config
