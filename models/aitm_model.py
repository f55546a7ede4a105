"""The Keras AITM of EasyRec's `aitm_on_taobao.config`.

    features -> embeddings (16 each) -> share_bottom MLP [512, 256]
      ├─ ctr_tower MLP [128] ─────────────────────┬─> head dnn [64] -> sigmoid -> ctr
      └─ cvr_tower MLP [128] ─> AITMTower(cvr, ctr) ─> head dnn [64] -> sigmoid -> cvr

Inputs are the Transform outputs (`models.preprocessing`), outputs a dict of
probabilities `[batch_size, 1]` keyed by task tower name. The calibrator
mean(max(p_cvr - p_ctr, 0)) is added as a model loss.
"""

import dataclasses
from typing import Dict, Sequence

import tensorflow as tf

from models import features as F
from models.layers import AITMTower, MLP, TagEmbedding
from models.losses import order_calibration_loss


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  bottom_units: Sequence[int] = (512, 256)
  tower_units: Sequence[int] = (128,)
  transfer_units: Sequence[int] = (128,)
  head_units: Sequence[int] = (64,)
  l2_regularization: float = 1e-6
  embedding_regularization: float = 5e-6
  calibration_weight: float = 1.0
  stop_gradient: bool = True
  # Off by default: on tens of thousands of rows the BatchNorm moving statistics
  # lag the fast-moving embeddings and eval AUC suffers (ctr 0.62 vs 0.74 on 20k
  # generated rows, same seed and epochs).
  use_bn: bool = False


def build_model(embedding_rows: Dict[str, int], config: ModelConfig = ModelConfig(),
                features: Sequence[F.Feature] = F.FEATURES) -> tf.keras.Model:
  """`embedding_rows` maps feature name -> id range (see preprocessing.embedding_rows)."""
  inputs, embedded = {}, []
  for feature in features:
    rows = embedding_rows[feature.name]
    if feature.encoding is F.Encoding.TAGS:
      x = tf.keras.Input(shape=(feature.max_tags,), dtype=tf.int64, name=feature.name)
      embedded.append(TagEmbedding(rows, feature.embedding_dim,
                                   config.embedding_regularization,
                                   name=f"{feature.name}_embedding")(x))
    else:
      x = tf.keras.Input(shape=(), dtype=tf.int64, name=feature.name)
      embedded.append(tf.keras.layers.Embedding(
          rows, feature.embedding_dim, name=f"{feature.name}_embedding",
          activity_regularizer=tf.keras.regularizers.l2(
              config.embedding_regularization))(x))
    inputs[feature.name] = x

  l2 = config.l2_regularization
  all_features = tf.keras.layers.Concatenate(name="all")(embedded)
  bottom = MLP(config.bottom_units, use_bn=config.use_bn, l2_reg=l2, name="share_bottom")(all_features)
  ctr_tower = MLP(config.tower_units, use_bn=config.use_bn, l2_reg=l2, name="ctr_tower")(bottom)
  cvr_tower = MLP(config.tower_units, use_bn=config.use_bn, l2_reg=l2, name="cvr_tower")(bottom)
  cvr_aitm = AITMTower(config.transfer_units, stop_gradient=config.stop_gradient,
                       use_bn=config.use_bn, l2_reg=l2, name="cvr_aitm")([cvr_tower, ctr_tower])

  outputs = {}
  for task, representation in zip(F.TASKS, (ctr_tower, cvr_aitm)):
    head = MLP(config.head_units, use_bn=config.use_bn, l2_reg=l2, name=f"{task}_dnn")(representation)
    outputs[task] = tf.keras.layers.Dense(
        1, activation="sigmoid", name=task,
        kernel_regularizer=tf.keras.regularizers.l2(l2))(head)

  model = tf.keras.Model(inputs=inputs, outputs=outputs, name="aitm")
  calibration = order_calibration_loss(outputs["cvr"], outputs["ctr"])
  model.add_loss(config.calibration_weight * calibration)
  model.add_metric(calibration, name="order_calibration_loss")
  return model
