"""Every feature's embedding table in one layer, with EasyRec's embedding_regularization."""

from typing import Any, Dict, List

import tensorflow as tf

# Kinds of input the layer embeds (see models.preprocessing).
ID, TAGS, RAW = "id", "tags", "raw"


@tf.keras.utils.register_keras_serializable(package="aitm")
class FeatureEmbeddings(tf.keras.layers.Layer):
  """Transformed features -> one vector per feature.

  `specs` lists, per feature, `{"name", "kind", "rows", "dim"}` with kind:
  `id` (int64 ids `[batch]` -> `[batch, dim]`), `tags` (int64 ids
  `[batch, max_tags]`, 0 = padding -> the mean of the present tags'
  vectors `[batch, dim]`, zeros when none) or `raw` (float `[batch]` ->
  `[batch, 1]`, not embedded). Input and output are dicts keyed by name.

  `regularization` is EasyRec's `embedding_regularization`: an L2 penalty
  `weight * sum(v^2) / batch` on the vectors a batch looks up (Keras'
  activity-regularizer scale), not on the whole table, so rare ids are not
  shrunk by batches that never saw them. It is added as a model loss and
  reported as the metric `embedding_regularization_loss`.
  """

  def __init__(self, specs: List[Dict[str, Any]], regularization: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.specs = [dict(s) for s in specs]
    self.regularization = float(regularization)
    self.tables = {}
    for spec in self.specs:
      if spec["kind"] not in (ID, TAGS, RAW):
        raise ValueError(f"feature '{spec['name']}': unknown kind {spec['kind']!r}")
      if spec["kind"] != RAW:
        if spec["rows"] < 1 or spec["dim"] < 1:
          raise ValueError(f"feature '{spec['name']}': rows and dim must be positive, got "
                           f"rows={spec['rows']}, dim={spec['dim']}")
        self.tables[spec["name"]] = tf.keras.layers.Embedding(
            spec["rows"], spec["dim"], name=f"{spec['name']}_embedding")

  def call(self, inputs):
    """`{name: [batch] or [batch, max_tags]}` -> `{name: [batch, dim]}` (`[batch, 1]` for
    raw features); adds the embedding_regularization loss and metric when it is set."""
    outputs, looked_up = {}, []
    for spec in self.specs:
      name, x = spec["name"], inputs[spec["name"]]
      if spec["kind"] == RAW:
        outputs[name] = tf.reshape(tf.cast(x, tf.float32), [-1, 1])
        continue
      vectors = self.tables[name](x)
      if spec["kind"] == TAGS:
        mask = tf.cast(tf.not_equal(x, 0), vectors.dtype)[..., None]   # [B, T, 1]
        vectors = vectors * mask
        looked_up.append(vectors)
        count = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)           # [B, 1]
        vectors = tf.reduce_sum(vectors, axis=1) / count
      else:
        looked_up.append(vectors)
      outputs[name] = vectors
    if self.regularization and looked_up:
      batch = tf.cast(tf.shape(looked_up[0])[0], tf.float32)
      value = self.regularization * tf.add_n(
          [tf.reduce_sum(tf.square(v)) for v in looked_up]) / batch  # padding masked out
      self.add_loss(value)
      self.add_metric(value, name="embedding_regularization_loss", aggregation="mean")
    return outputs

  def get_config(self):
    """The constructor arguments, for Keras serialization."""
    config = super().get_config()
    config.update(specs=self.specs, regularization=self.regularization)
    return config
