"""Builds the Keras model a config describes: EasyRec's backbone DAG plus task towers.

    transformed features -> FeatureEmbeddings -> feature_groups (concatenated)
      -> blocks, in topological order: a keras_layer of models.layer_registry,
         an input_layer (a group's embeddings as a tensor, list or stack), or no
         layer (the inputs passed on, concatenated)
      -> output_blocks, one per task tower, one multi-output block, or one
         block every tower reads
      -> per tower: dnn [-> relation_dnn over its own and its related towers'
         features (DBMTL)] -> Dense(1) -> sigmoid [-> x P(conditional_on)]
         -> calibration intercept (LogitShift, set after training) -> output

One mechanism, many models: AITM, shared-bottom, ESMM, MMoE, PLE, DBMTL and
EasyRec's model-class configs (translated by models/config/model_classes.py)
are configs, not code. Outputs are probabilities `[batch, 1]` keyed by tower
name; ORDER_CALIBRATE_LOSS is added as a model loss.
"""

from typing import Any, Dict, List

import tensorflow as tf

from models.config import PipelineConfig, topological_order
from models.features import Encoding
from models.layer_registry import LAYER_KINDS
from models.layers import feature_embeddings
from models.layers.calibration import LogitShift
from models.layers.input_layer import GroupInput
from models.layers.mlp import MLP
from models.losses import OrderCalibration


def dnn_options(dnn, l2_reg: float) -> Dict[str, Any]:
  """EasyRec's DNN message (task tower heads): every layer alike, bias iff no BN."""
  return dict(hidden_units=list(dnn.hidden_units),
              dropout_rate=list(dnn.dropout_ratio) or 0.0,
              activation=dnn.activation, use_bn=dnn.use_bn, l2_reg=l2_reg)


def model_features(config: PipelineConfig) -> List:
  """The features some feature group uses, in config order: the model's inputs."""
  used = {n for g in config.model.feature_groups for n in g.feature_names}
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


def _merge(name, items, block):
  """A block's inputs as its layer takes them: the list with merge_inputs_into_list,
  one input as it is, else their concatenation (named after a block without a layer,
  whose output it is; else `<block>_inputs`)."""
  if block.merge_inputs_into_list:
    return items
  if len(items) == 1:
    return items[0]
  concat = name if block.WhichOneof("layer") is None else f"{name}_inputs"
  return tf.keras.layers.Concatenate(axis=block.input_concat_axis, name=concat)(items)


def build_model(config: PipelineConfig, embedding_rows: Dict[str, int]) -> tf.keras.Model:
  """`embedding_rows`: feature name -> id range (models.preprocessing.embedding_rows)."""
  model_config = config.model
  l2 = model_config.model_params.l2_regularization
  inputs, specs = _inputs_and_specs(model_features(config), embedding_rows)
  vectors = feature_embeddings.FeatureEmbeddings(
      specs, model_config.embedding_regularization, name="features")(inputs)

  group_features = {g.group_name: [vectors[n] for n in g.feature_names]
                    for g in model_config.feature_groups}
  groups = {}

  def group_value(group):
    # A group read without an input_layer block is its embeddings concatenated (EasyRec's
    # implicit input_layer); the layer is named after the group. An input_layer block
    # named after the group stands for it.
    if group in values:
      return values[group]
    if group not in groups:
      parts = group_features[group]
      groups[group] = (parts[0] if len(parts) == 1 else
                       tf.keras.layers.Concatenate(name=group)(parts))
    return groups[group]

  values = {}
  blocks = {b.name: b for b in model_config.backbone.blocks}
  for name in topological_order(model_config.backbone):
    block = blocks[name]
    layer = block.WhichOneof("layer")
    if layer == "input_layer":
      settings = block.input_layer
      values[name] = GroupInput(
          do_batch_norm=settings.do_batch_norm, do_layer_norm=settings.do_layer_norm,
          dropout_rate=settings.dropout_rate,
          feature_dropout_rate=settings.feature_dropout_rate,
          only_output_feature_list=settings.only_output_feature_list,
          only_output_3d_tensor=settings.only_output_3d_tensor,
          name=name)(group_features[block.inputs[0].feature_group_name])
      continue
    items = []
    for item in block.inputs:
      if item.ignore_input:
        continue
      source = item.WhichOneof("name")
      value = (values[item.block_name] if source == "block_name"
               else group_value(item.feature_group_name))
      items.append(_pick(value, item.input_slice))
    x = _merge(name, items, block)
    if layer is None:
      values[name] = x
      continue
    keras_layer = block.keras_layer
    kind = LAYER_KINDS[keras_layer.class_name]
    # Keras layer names are the block names, as in EasyRec.
    values[name] = kind.build(getattr(keras_layer, kind.params), l2, name)(x)

  towers = {t.tower_name: t for t in model_config.model_params.task_towers}
  reg = tf.keras.regularizers.l2(l2) if l2 else None
  outputs, relation_features = {}, {}
  for task in config.tasks:
    x = values[task.output_block]
    if task.output_index is not None:
      x = x[task.output_index]
    tower = towers[task.name]
    dnn = tower.dnn
    if dnn.hidden_units:
      x = MLP(**dnn_options(dnn, l2), name=f"{task.name}_dnn")(x)
    if tower.HasField("relation_dnn"):
      # DBMTL's Bayesian relation: the tower sees the relation features of the towers it
      # names, not their probabilities, and its gradient flows into them.
      related = [relation_features[other] for other in tower.relation_tower_names]
      if related:
        x = tf.keras.layers.Concatenate(name=f"{task.name}_relation_inputs")([x] + related)
      if tower.relation_dnn.hidden_units:
        x = MLP(**dnn_options(tower.relation_dnn, l2), name=f"{task.name}_relation_dnn")(x)
      relation_features[task.name] = x
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
