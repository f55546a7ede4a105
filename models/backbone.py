"""Builds the Keras model a config describes: EasyRec's backbone DAG plus task towers.

    transformed features -> FeatureEmbeddings -> feature_groups (concatenated)
      -> blocks, in topological order, each a keras_layer of
         models.layer_registry
      -> output_blocks, one per task tower (or one multi-output block)
      -> per tower: dnn -> Dense(1) -> sigmoid [-> x P(conditional_on)]
         -> calibration intercept (LogitShift, set after training) -> output

One mechanism, many models: AITM, shared-bottom, ESMM, MMoE and PLE are
configs (see configs/), not code. Outputs are probabilities `[batch, 1]`
keyed by tower name; ORDER_CALIBRATE_LOSS is added as a model loss.
"""

from typing import Any, Dict, List

import tensorflow as tf

from models.config import PipelineConfig, topological_order
from models.features import Encoding
from models.layer_registry import LAYER_KINDS
from models.layers import feature_embeddings
from models.layers.calibration import LogitShift
from models.layers.mlp import MLP
from models.losses import OrderCalibration


def dnn_options(dnn, l2_reg: float) -> Dict[str, Any]:
  """EasyRec's DNN message (task tower heads): every layer alike, bias iff no BN."""
  return dict(hidden_units=list(dnn.hidden_units),
              dropout_rate=list(dnn.dropout_ratio) or 0.0,
              activation=dnn.activation, use_bn=dnn.use_bn, l2_reg=l2_reg)


def model_features(config: PipelineConfig) -> List:
  """The features some feature group uses, in config order: the model's inputs."""
  used = {n for g in config.proto.model_config.feature_groups for n in g.feature_names}
  return [f for f in config.features if f.name in used]


def _inputs_and_specs(features, embedding_rows):
  inputs, specs = {}, []
  for f in features:
    if f.encoding is Encoding.RAW:
      inputs[f.name] = tf.keras.Input(shape=(), dtype=tf.float32, name=f.name)
      specs.append(dict(name=f.name, kind=feature_embeddings.RAW, rows=0, dim=1))
    elif f.encoding is Encoding.TAGS:
      inputs[f.name] = tf.keras.Input(shape=(f.max_tags,), dtype=tf.int64, name=f.name)
      specs.append(dict(name=f.name, kind=feature_embeddings.TAGS,
                        rows=embedding_rows[f.name], dim=f.embedding_dim))
    else:
      inputs[f.name] = tf.keras.Input(shape=(), dtype=tf.int64, name=f.name)
      specs.append(dict(name=f.name, kind=feature_embeddings.ID,
                        rows=embedding_rows[f.name], dim=f.embedding_dim))
  return inputs, specs


def _pick(value, input_slice):
  return value[int(input_slice[1:-1])] if input_slice else value


def build_model(config: PipelineConfig, embedding_rows: Dict[str, int]) -> tf.keras.Model:
  """`embedding_rows`: feature name -> id range (models.preprocessing.embedding_rows)."""
  model_config = config.proto.model_config
  l2 = model_config.model_params.l2_regularization
  inputs, specs = _inputs_and_specs(model_features(config), embedding_rows)
  vectors = feature_embeddings.FeatureEmbeddings(
      specs, model_config.embedding_regularization, name="features")(inputs)

  values = {}
  for group in model_config.feature_groups:
    parts = [vectors[name] for name in group.feature_names]
    values[group.group_name] = (parts[0] if len(parts) == 1 else
                                tf.keras.layers.Concatenate(name=group.group_name)(parts))

  blocks = {b.name: b for b in model_config.backbone.blocks}
  for name in topological_order(model_config.backbone):
    block = blocks[name]
    items = [_pick(values[getattr(i, i.WhichOneof("name"))], i.input_slice)
             for i in block.inputs]
    if block.merge_inputs_into_list:
      x = items
    elif len(items) == 1:
      x = items[0]
    else:
      x = tf.keras.layers.Concatenate(axis=block.input_concat_axis,
                                      name=f"{name}_inputs")(items)
    layer = block.keras_layer
    kind = LAYER_KINDS[layer.class_name]
    # Keras layer names are the block names, as in EasyRec.
    values[name] = kind.build(getattr(layer, kind.params), l2, name)(x)

  towers = {t.tower_name: t for t in model_config.model_params.task_towers}
  outputs = {}
  for task in config.tasks:
    x = values[task.output_block]
    if task.output_index is not None:
      x = x[task.output_index]
    dnn = towers[task.name].dnn
    if dnn.hidden_units:
      x = MLP(**dnn_options(dnn, l2), name=f"{task.name}_dnn")(x)
    reg = tf.keras.regularizers.l2(l2) if l2 else None
    head = tf.keras.layers.Dense(1, activation="sigmoid", kernel_regularizer=reg,
                                 name=f"{task.name}_head")(x)
    p = head
    if task.conditional_on:
      p = tf.keras.layers.Multiply(name=f"{task.name}_x_{task.conditional_on}")(
          [head, outputs[task.conditional_on]])
    if task.calibration_weight:
      p = OrderCalibration(task.calibration_weight,
                           name=f"{task.name}_order_calibrate_loss")(
          [p] + [outputs[other] for other in task.calibrate_against])
    # The calibration intercept the Trainer sets after training (models/layers/calibration.py).
    p = LogitShift(name=f"{task.name}_calibration")(p)
    # Keras names a model output after the layer that makes it: the tower name.
    outputs[task.name] = tf.keras.layers.Activation("linear", name=task.name)(p)
  return tf.keras.Model(inputs=inputs, outputs=outputs,
                        name=model_config.model_name or "multi_task")
