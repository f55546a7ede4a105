"""Embedding of a padded tag-id list, mean-pooled over the tags present."""

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="aitm")
class TagEmbedding(tf.keras.layers.Layer):
  """Ids `[batch_size, max_tags]` (0 = padding) -> `[batch_size, dim]`.

  The mean of the present tags' embeddings; all-padding rows give zeros.
  `activity_l2` regularises the looked-up vectors, as EasyRec's
  `embedding_regularization` does, rather than the whole table.
  """

  def __init__(self, rows: int, dim: int, activity_l2: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if rows <= 1 or dim <= 0:
      raise ValueError(f"`rows` must be > 1 and `dim` > 0. Got rows={rows}, dim={dim}")
    self.rows, self.dim, self.activity_l2 = rows, dim, activity_l2
    self.embedding = tf.keras.layers.Embedding(
        rows, dim, activity_regularizer=(
            tf.keras.regularizers.l2(activity_l2) if activity_l2 else None))

  def call(self, ids):
    vectors = self.embedding(ids)                                  # [B, T, D]
    mask = tf.cast(tf.not_equal(ids, 0), vectors.dtype)[..., None]  # [B, T, 1]
    count = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)           # [B, 1]
    return tf.reduce_sum(vectors * mask, axis=1) / count

  def get_config(self):
    config = super().get_config()
    config.update(rows=self.rows, dim=self.dim, activity_l2=self.activity_l2)
    return config
