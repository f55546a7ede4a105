"""Read an EasyRec config once, check it whole, and hand out plain objects.

`load_config(path)` parses protobuf text format against `messages` (unknown
fields and wrong types fail there, with line and column), applies EasyRec's
`--edit_config_json` edits when given (`edit.py`), then checks what
the parser can't: names that must exist (features' and slices' input fields
among them), the backbone DAG, towers against output blocks, losses against
towers. Every error is a `ConfigError` naming the file, the line and the
field. Nothing here imports TensorFlow, so a bad config is refused before any
work starts.
"""

import dataclasses
import math
import os
import re
from typing import Dict, List, Mapping, Optional, Tuple

from google.protobuf import text_format

from models.config import messages
from models import loss_types
from models.config.model_classes import as_backbone
from models.config.edit import apply_edits, edit_pairs
from models.config.errors import ConfigError
from models.features import Column, ColumnType, Encoding, Feature
from models.layer_registry import LAYER_KINDS

_FIELD_TYPES = {
    "INT32": ColumnType.INT, "INT64": ColumnType.INT, "STRING": ColumnType.STRING,
    "FLOAT": ColumnType.FLOAT, "DOUBLE": ColumnType.FLOAT,
}


@dataclasses.dataclass(frozen=True)
class Task:
  """One task tower, in `model_params.task_towers` order (the funnel order)."""
  name: str
  label: str
  output_block: str
  output_index: Optional[int]        # which output of a multi-output block
  classification_weight: float       # tower weight x loss weight
  calibration_weight: float          # 0 when the tower has no ORDER_CALIBRATE_LOSS
  calibrate_against: Tuple[str, ...]  # towers p_t must not exceed
  conditional_on: Optional[str]      # ESMM: output = p(head) x p(that tower)
  # EasyRec's other binary losses on this tower, beside CLASSIFICATION
  # (models/binary_losses.py): (loss type, tower weight x loss weight, name, params).
  extra_losses: Tuple[Tuple[str, float, str, Tuple[Tuple[str, float], ...]], ...] = ()


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """A checked config. `text` is what components receive; `proto` the parsed message."""
  text: str
  source: str
  proto: object
  columns: Tuple[Column, ...]
  labels: Tuple[str, ...]
  features: Tuple[Feature, ...]
  tasks: Tuple[Task, ...]
  # model_config as a backbone, whatever its style (models/config/model_classes.py),
  # with implicit outputs made blocks: what the Keras builder reads. None without a model.
  model: object = None
  # load_config's edits, in order: (path, value, fields set); `text` holds their result.
  edits: Tuple[Tuple[str, str, int], ...] = ()

  @property
  def stem(self) -> str:
    """The config file's name without folder, extension or the note of its edits."""
    path = self.source.split(_EDITED, 1)[0]
    return os.path.splitext(os.path.basename(path))[0]

  @property
  def column_types(self) -> Dict[str, ColumnType]:
    """Each raw column's type, by column name."""
    return {c.name: c.type for c in self.columns}

  @property
  def feature_columns(self) -> Tuple[str, ...]:
    """Raw columns a prediction request carries: every column but the labels."""
    return tuple(c.name for c in self.columns if c.name not in self.labels)

  @property
  def task_labels(self) -> Dict[str, str]:
    """Each task's label column, by task name."""
    return {t.name: t.label for t in self.tasks}

  @property
  def slice_fields(self) -> Tuple[str, ...]:
    """Raw columns the evaluation is sliced by (eval_config.slice_fields), in order."""
    return tuple(self.proto.eval_config.slice_fields)

  @property
  def user_id_field(self) -> Optional[str]:
    """The raw column holding the user id (data_config.user_id_field), if any."""
    return self.proto.data_config.user_id_field or None

  def columns_text(self) -> str:
    """The config ExampleGen reads: data_config's columns and labels (parse_columns)."""
    data, subset = self.proto.data_config, messages.EasyRecConfig()
    subset.data_config.input_fields.extend(data.input_fields)
    subset.data_config.label_fields.extend(self.labels)
    subset.data_config.input_type, subset.data_config.separator = data.input_type, data.separator
    return text_format.MessageToString(subset)

  def transform_text(self) -> str:
    """The config Transform reads: data_config and the features, without what only the
    Trainer reads (batch size, epochs, embedding sizes), so a change to those keeps
    ExampleGen's and Transform's cached outputs. Parsed with require_model=False."""
    subset = messages.EasyRecConfig()
    subset.data_config.CopyFrom(self.proto.data_config)
    subset.data_config.ClearField("label_fields")
    subset.data_config.label_fields.extend(self.labels)
    for field in _TRAINING_DATA_FIELDS:
      subset.data_config.ClearField(field)
    for spec in _feature_protos(self.proto):
      feature = subset.feature_config.features.add()
      feature.CopyFrom(spec)
      for field in _MODEL_FEATURE_FIELDS:
        feature.ClearField(field)
    return text_format.MessageToString(subset)


# data_config's fields that only the Trainer's input pipeline reads.
_TRAINING_DATA_FIELDS = ("batch_size", "prefetch_size", "num_epochs", "shuffle",
                         "shuffle_buffer_size")
# A feature's fields the model reads (its embedding) and Transform doesn't.
_MODEL_FEATURE_FIELDS = ("embedding_dim", "combiner")


# How an edited config's source reads: "configs/x.config (edited: train_config.num_steps)".
_EDITED = " (edited: "


def load_config(path: str, edits: Optional[Mapping[str, object]] = None) -> PipelineConfig:
  """The config file at `path`, parsed and checked (`parse_config`); ConfigError when
  it can't be read, is not UTF-8 text, or doesn't check. `edits`, EasyRec's
  --edit_config_json as a dict (edit.apply_edits), are applied to the parsed file
  before any check: every check runs on the edited config, and its `text`, what
  components receive, is the edited config."""
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except OSError as e:
    raise ConfigError(f"{path}: can't read the config: {e.strerror}") from None
  except UnicodeDecodeError as e:
    line = e.object[:e.start].count(b"\n") + 1
    raise ConfigError(f"{path}:{line}: the config is not UTF-8 text ({e.reason} at byte "
                      f"{e.start})") from None
  if not edits:
    return parse_config(text, source=path)
  proto = _parse(text, path)
  try:
    applied = apply_edits(proto, edits)
  except ConfigError as e:
    raise ConfigError(f"{e} (editing {path})") from None
  values = [value for _, value in edit_pairs(edits)]
  # Checked as text, like any config: line numbers in errors are the edited text's.
  config = parse_config(text_format.MessageToString(proto, as_utf8=True),
                        source=f"{path}{_EDITED}{', '.join(p for p, _ in applied)})")
  return dataclasses.replace(config, edits=tuple(
      (path_, value, count) for (path_, count), value in zip(applied, values)))


_UNKNOWN_FIELD = re.compile(r'^(\d+):(\d+) : Message type "[\w.]*\.(\w+)" has no field named '
                            r'"(\w+)"')


def _parse(text: str, source: str):
  """The text parsed into an EasyRecConfig; ConfigError with file, line and column when it
  doesn't parse, saying so when the field is one of EasyRec's this project doesn't build
  (messages.NOT_SUPPORTED), not a misspelling."""
  proto = messages.EasyRecConfig()
  try:
    text_format.Parse(text, proto)
  except text_format.ParseError as e:
    known = _UNKNOWN_FIELD.match(str(e))
    if known:
      line, column, message, field = known.groups()
      reason = messages.NOT_SUPPORTED.get(message, {}).get(field)
      if reason:
        raise ConfigError(f"{source}:{line}:{column}: {field}: {reason}") from None
    raise ConfigError(f"{source}:{e} ") from None
  return proto


def parse_columns(text: str, source: str = "<config>"
                  ) -> Tuple[Tuple[Column, ...], Tuple[str, ...]]:
  """The columns and labels of a config's data_config (PipelineConfig.columns_text)."""
  return _check_data(_parse(text, source), _Locator(text, source))


def parse_config(text: str, source: str = "<config>", require_model: bool = True
                 ) -> PipelineConfig:
  """A checked config. Without `require_model`, a config that has no model_config
  (PipelineConfig.transform_text) parses, and its features need no embedding_dim."""
  proto = _parse(text, source)
  where = _Locator(text, source)
  columns, labels = _check_data(proto, where)
  embedded = require_model or proto.HasField("model_config")
  features = _check_features(proto, columns, labels, embedded, where)
  tasks: Tuple[Task, ...] = ()
  model = None
  if require_model or proto.HasField("model_config"):
    if not proto.HasField("model_config"):
      raise ConfigError(f"{source}: model_config is missing")
    model, tasks = _check_model(proto.model_config, features, labels, where)
    # The labels in funnel order, the towers' (ExampleGen checks each step against the
    # one before it); EasyRec's ESMM sample lists buy before clk.
    labels = tuple(dict.fromkeys([t.label for t in tasks] + list(labels)))
  _check_evaluation(proto, columns, labels, where)
  _check_training(proto, where)
  return PipelineConfig(text=text, source=source, proto=proto, columns=columns,
                        labels=labels, features=features, tasks=tasks, model=model)


class _Locator:
  """Finds the line a field was written on, for errors the parser can't see."""

  def __init__(self, text: str, source: str):
    self.lines = text.splitlines()
    self.source = source

  def error(self, field: str, message: str, value: Optional[str] = None) -> ConfigError:
    """A ConfigError about `field`, at the first line that sets it (to `value`, when
    given; comments ignored), or naming no line when none does."""
    pattern = re.compile(r"\b%s\s*:?\s*(\[[^\]]*)?%s" % (
        re.escape(field), r'["\']?' + re.escape(value) + r'["\']?' if value else ""))
    for number, line in enumerate(self.lines, start=1):
      if pattern.search(line.split("#")[0]):
        return ConfigError(f"{self.source}:{number}: {field}: {message}")
    return ConfigError(f"{self.source}: {field}: {message}")


# --- data_config --------------------------------------------------------------

def _check_data(proto, where) -> Tuple[Tuple[Column, ...], Tuple[str, ...]]:
  data = proto.data_config
  if not data.input_fields:
    raise where.error("data_config", "needs input_fields (the CSV columns, in file order)")
  columns, seen = [], set()
  for field in data.input_fields:
    name = field.input_name
    if not name:
      raise where.error("input_fields", "an input field has no input_name")
    if name in seen:
      raise where.error("input_name", "appears twice in data_config.input_fields", name)
    seen.add(name)
    type_name = messages.ENUMS["FieldType"][field.input_type]
    if type_name not in _FIELD_TYPES:
      raise where.error("input_type", f"{type_name} is not supported for '{name}'; "
                        f"use one of {sorted(_FIELD_TYPES)}", type_name)
    columns.append(Column(name, _FIELD_TYPES[type_name]))
  if data.separator != ",":
    raise where.error("separator", "only ',' separated CSV is read")
  if not data.label_fields:
    raise where.error("data_config", "needs label_fields")
  types = {c.name: c.type for c in columns}
  for label in data.label_fields:
    if label not in types:
      raise where.error("label_fields", f"'{label}' is not one of data_config.input_fields",
                        label)
    if types[label] is not ColumnType.INT:
      raise where.error("label_fields", f"'{label}' must be an INT32/INT64 input field "
                        "holding 0 or 1", label)
  if data.HasField("batch_size") and data.batch_size == 0:
    raise where.error("batch_size", "must be positive")
  if data.user_id_field:
    _check_input_field("user_id_field", data.user_id_field, types, data.label_fields, where)
  return tuple(columns), tuple(data.label_fields)


def _check_input_field(field, name, types, labels, where):
  """`name`, given in `field`, must be an input field and not a label."""
  if name not in types:
    raise where.error(field, f"'{name}' is not one of data_config.input_fields", name)
  if name in labels:
    raise where.error(field, f"'{name}' is a label, not an input", name)


# --- feature_config -----------------------------------------------------------

def _feature_protos(proto):
  return list(proto.feature_config.features) + list(proto.feature_configs)


def _check_features(proto, columns, labels, embedded, where) -> Tuple[Feature, ...]:
  types = {c.name: c.type for c in columns}
  features, names = [], set()
  specs = _feature_protos(proto)
  if not specs:
    raise where.error("feature_config", "no features are defined")
  for spec in specs:
    if len(spec.input_names) != 1:
      raise where.error("input_names", "a feature reads exactly one input column "
                        f"(got {list(spec.input_names)})")
    column = spec.input_names[0]
    name = spec.feature_name or column
    kind = messages.ENUMS["FeatureType"][spec.feature_type]
    if column not in types:
      raise where.error("input_names", f"'{column}' is not one of data_config.input_fields",
                        column)
    if column in labels:
      raise where.error("input_names", f"'{column}' is a label, not a feature", column)
    if name in names:
      raise where.error("feature_name", f"feature '{name}' is defined twice", name)
    if name in labels:
      raise where.error("feature_name", f"'{name}' is also a label name", name)
    names.add(name)
    if spec.vocab_file:
      raise where.error("vocab_file", "is not supported: list the values in vocab_list, "
                        "or set compute_vocabulary: true to learn them in Transform")
    if spec.combiner != "mean":
      raise where.error("combiner", f"only 'mean' is supported (feature '{name}')")
    features.append(_feature(spec, name, column, kind, types[column], embedded, where))
  return tuple(features)


def _feature(spec, name, column, kind, column_type, embedded, where) -> Feature:
  def need_dim():
    if not embedded and spec.embedding_dim == 0:
      return 0  # Transform's part of the config: embedding sizes are the model's
    if spec.embedding_dim <= 0:
      raise where.error("embedding_dim", f"feature '{name}' needs a positive embedding_dim")
    return int(spec.embedding_dim)

  # Checked for every kind: on any feature but a learned vocabulary it would be ignored.
  if spec.frequency_threshold and not (kind == "IdFeature" and spec.compute_vocabulary):
    raise where.error("frequency_threshold", f"feature '{name}': frequency_threshold "
                      "needs compute_vocabulary: true")

  if kind == "IdFeature":
    ways = [w for w, on in (("hash_bucket_size", spec.hash_bucket_size > 0),
                            ("num_buckets", spec.num_buckets > 0),
                            ("vocab_list", bool(spec.vocab_list)),
                            ("compute_vocabulary", spec.compute_vocabulary)) if on]
    if len(ways) != 1:
      raise where.error("feature_type", f"IdFeature '{name}' needs exactly one of "
                        "hash_bucket_size, num_buckets, vocab_list, compute_vocabulary "
                        f"(got {ways or 'none'})", "IdFeature")
    dim = need_dim()
    if ways[0] == "hash_bucket_size":
      return Feature(name, column, Encoding.HASH, int(spec.hash_bucket_size), dim)
    if ways[0] == "num_buckets":
      if column_type is not ColumnType.INT:
        raise where.error("num_buckets", f"feature '{name}': num_buckets takes the integer "
                          f"value as the id, but column '{column}' is {column_type.value}")
      return Feature(name, column, Encoding.IDENTITY, int(spec.num_buckets), dim)
    if ways[0] == "vocab_list":
      return Feature(name, column, Encoding.VOCAB_LIST, 1, dim,
                     vocabulary=tuple(spec.vocab_list))
    if spec.num_oov_buckets == 0:
      raise where.error("num_oov_buckets", f"feature '{name}' needs at least one OOV bucket")
    return Feature(name, column, Encoding.VOCABULARY, int(spec.num_oov_buckets), dim,
                   frequency_threshold=int(spec.frequency_threshold))
  if kind == "TagFeature":
    if spec.hash_bucket_size <= 0:
      raise where.error("feature_type", f"TagFeature '{name}' needs hash_bucket_size",
                        "TagFeature")
    if column_type is not ColumnType.STRING:
      raise where.error("input_names", f"TagFeature '{name}' reads a STRING column", column)
    if not spec.separator or spec.max_tags <= 0:
      raise where.error("separator", f"TagFeature '{name}' needs a separator and max_tags > 0")
    return Feature(name, column, Encoding.TAGS, int(spec.hash_bucket_size), need_dim(),
                   separator=spec.separator, max_tags=int(spec.max_tags))
  # RawFeature
  if column_type is ColumnType.STRING:
    raise where.error("input_names", f"RawFeature '{name}' reads a numeric column", column)
  if spec.boundaries:
    bounds = tuple(float(b) for b in spec.boundaries)
    if list(bounds) != sorted(set(bounds)):
      raise where.error("boundaries", f"feature '{name}': boundaries must increase")
    return Feature(name, column, Encoding.BOUNDARIES, len(bounds) + 1, need_dim(),
                   boundaries=bounds)
  if spec.embedding_dim:
    raise where.error("embedding_dim", f"RawFeature '{name}' without boundaries is fed as "
                      "its value; give boundaries to embed it")
  return Feature(name, column, Encoding.RAW)


# --- model_config -------------------------------------------------------------

def _check_model(model, features, labels, where):
  """(the model as a backbone with its outputs as blocks, its Tasks)."""
  if messages.ENUMS["LossWeightStrategy"][model.loss_weight_strategy] != "Fixed":
    raise where.error("loss_weight_strategy", "only Fixed loss weights are supported "
                      "(Uncertainty and Random are not)")
  model = as_backbone(model, where, labels)
  feature_names = {f.name for f in features}
  groups = {}
  if not model.feature_groups:
    raise where.error("model_config", "needs at least one feature_groups")
  for group in model.feature_groups:
    if not group.group_name or group.group_name in groups:
      raise where.error("group_name", "feature groups need distinct names",
                        group.group_name or None)
    groups[group.group_name] = len(group.feature_names)
    if messages.ENUMS["WideOrDeep"][group.wide_deep] != "DEEP":
      raise where.error("wide_deep", f"group '{group.group_name}': only DEEP groups are "
                        "supported")
    if group.negative_sampler:
      raise where.error("negative_sampler", "negative sampling (matching models) is not "
                        "supported")
    if not group.feature_names:
      raise where.error("group_name", "has no feature_names", group.group_name)
    for name in group.feature_names:
      if name not in feature_names:
        raise where.error("feature_names", f"group '{group.group_name}': '{name}' is not a "
                          "feature in feature_config", name)

  arity = _check_backbone(model.backbone, groups, where)
  shared = not model.backbone.output_blocks
  model = _with_output_blocks(model, arity, where)
  return model, _check_towers(model, arity, labels, shared, where)


def _check_backbone(backbone, groups, where) -> Dict[str, int]:
  """Checks the DAG; returns block name -> number of outputs (1: a tensor; n: a list)."""
  blocks = {}
  if not backbone.blocks:
    raise where.error("backbone", "needs blocks")
  for block in backbone.blocks:
    if not block.name:
      raise where.error("blocks", "a block has no name")
    # EasyRec's one exception: an input_layer block may carry its group's name.
    group_alias = (block.WhichOneof("layer") == "input_layer" and block.name in groups
                   and any(i.feature_group_name == block.name for i in block.inputs))
    if block.name in blocks or (block.name in groups and not group_alias):
      raise where.error("name", f"block name '{block.name}' is used twice (block or feature "
                        "group)", block.name)
    blocks[block.name] = block
  for block in backbone.blocks:
    _check_inputs(block, blocks, groups, where)

  order = topological_order(backbone)
  if order is None:
    cycle = _cycle(backbone)
    raise where.error("block_name", "the backbone has a cycle: " + " -> ".join(cycle),
                      cycle[-1])
  arity: Dict[str, int] = {}
  for name in order:
    block = blocks[name]
    layer = block.WhichOneof("layer")
    sizes = [_input_arity(block, item, arity, where) for item in _used_inputs(block)]
    if layer == "keras_layer":
      kind = _layer_kind(block, where)
      for item, size in zip(_used_inputs(block), sizes):
        if size > 1 and not kind.list_input and not block.merge_inputs_into_list:
          source = getattr(item, item.WhichOneof("name"))
          raise where.error("block_name", f"block '{block.name}': '{source}' has {size} "
                            "outputs; pick one with input_slice: \"[i]\"", source)
      arity[name] = _check_layer_settings(block, kind, where)
    elif layer == "input_layer":
      arity[name] = _check_input_layer(block, groups, where)
    else:
      # No layer: EasyRec's block passes one input on as it is, a list of them with
      # merge_inputs_into_list, else their concatenation.
      if block.merge_inputs_into_list:
        arity[name] = len(sizes)
      elif len(sizes) == 1:
        arity[name] = sizes[0]
      else:
        for item, size in zip(_used_inputs(block), sizes):
          if size > 1:
            source = getattr(item, item.WhichOneof("name"))
            raise where.error("block_name", f"block '{block.name}' concatenates its inputs, "
                              f"but '{source}' has {size} outputs; pick one with "
                              "input_slice: \"[i]\"", source)
        arity[name] = 1
  return arity


def _used_inputs(block):
  """The block's inputs but those marked ignore_input (EasyRec: ordering-only edges)."""
  return [item for item in block.inputs if not item.ignore_input]


def _input_arity(block, item, arity, where) -> int:
  """The number of outputs an input brings to the block, after its input_slice."""
  source = item.WhichOneof("name")
  value = getattr(item, source)
  n = arity[value] if source == "block_name" and value in arity else 1
  if item.input_slice:
    if int(item.input_slice[1:-1]) >= n:
      raise where.error("input_slice", f"block '{block.name}': '{value}' has {n} "
                        f"output(s), {item.input_slice} is out of range", item.input_slice)
    return 1
  return n


def _check_input_layer(block, groups, where) -> int:
  """An input_layer block: one feature group in; returns its number of outputs."""
  settings = block.input_layer
  if len(block.inputs) != 1 or block.inputs[0].WhichOneof("name") != "feature_group_name":
    raise where.error("name", f"input_layer block '{block.name}' takes exactly one "
                      "feature_group_name input", block.name)
  for field, what in (("output_seq_and_normal_feature", "sequence features are"),
                      ("wide_output_dim", "WIDE features are"),
                      ("output_2d_tensor_and_feature_list", "a (tensor, list) pair output is")):
    if getattr(settings, field):
      raise where.error(field, f"input_layer block '{block.name}': {what} not supported")
  if settings.do_batch_norm and settings.do_layer_norm:
    raise where.error("do_layer_norm", f"input_layer block '{block.name}': do_batch_norm and "
                      "do_layer_norm exclude each other (EasyRec refuses both)")
  for field in ("dropout_rate", "feature_dropout_rate"):
    if not 0.0 <= getattr(settings, field) < 1.0:
      raise where.error(field, f"input_layer block '{block.name}': {field} must be in [0, 1)")
  if settings.only_output_feature_list:
    return groups[block.inputs[0].feature_group_name]
  return 1


def _with_output_blocks(model, arity, where):
  """The model with what its towers read named in output_blocks. EasyRec's backbone
  without output_blocks outputs its concat_blocks, else its leaf blocks (none reads
  them), concatenated, then top_mlp: here a block `backbone` (a no-layer block that
  concatenates) and a block `top_mlp` do that, so the builder has one rule."""
  backbone = model.backbone
  if backbone.output_blocks:
    for field in ("concat_blocks", "top_mlp"):
      if backbone.HasField(field) if field == "top_mlp" else backbone.concat_blocks:
        raise where.error(field, f"is not used with output_blocks (EasyRec ignores it "
                          "then)")
    return model
  read = {i.block_name for b in backbone.blocks for i in b.inputs
          if i.WhichOneof("name") == "block_name"}
  outputs = list(backbone.concat_blocks) or [b.name for b in backbone.blocks
                                             if b.name not in read]
  for name in outputs:
    if name not in arity:
      raise where.error("concat_blocks", f"'{name}' is not a block", name)
  normalized = type(model)()
  normalized.CopyFrom(model)
  backbone = normalized.backbone
  backbone.ClearField("concat_blocks")
  output = outputs[0]
  if len(outputs) > 1:
    output = _new_block_name(arity, "backbone")
    concat = backbone.blocks.add(name=output)
    for name in outputs:
      if arity[name] > 1:
        raise where.error("blocks", f"the backbone's output concatenates its leaf blocks, "
                          f"but '{name}' has {arity[name]} outputs")
      concat.inputs.add(block_name=name)
    arity[output] = 1
  if model.backbone.HasField("top_mlp"):
    if arity[output] > 1:
      raise where.error("top_mlp", f"'{output}' has {arity[output]} outputs; top_mlp takes "
                        "one")
    top = backbone.blocks.add(name=_new_block_name(arity, "top_mlp"))
    top.inputs.add(block_name=output)
    top.keras_layer.class_name = "MLP"
    top.keras_layer.mlp.CopyFrom(model.backbone.top_mlp)
    if not top.keras_layer.mlp.hidden_units:
      raise where.error("top_mlp", "needs hidden_units")
    output = top.name
    arity[output] = 1
    backbone.ClearField("top_mlp")
  backbone.output_blocks.append(output)
  return normalized


def _new_block_name(arity, name):
  while name in arity:
    name += "_"
  return name


def _layer_kind(block, where):
  """The registered kind of the block's keras_layer, with its settings in its field."""
  layer = block.keras_layer
  kind = LAYER_KINDS.get(layer.class_name)
  if kind is None:
    raise where.error("class_name", f"block '{block.name}': unknown layer "
                      f"'{layer.class_name}'; known: {sorted(LAYER_KINDS)}",
                      layer.class_name)
  params = layer.WhichOneof("params")
  if params != kind.params:
    raise where.error("class_name", f"block '{block.name}': {layer.class_name} takes its "
                      f"settings in '{kind.params} {{ }}', got {params or 'none'}",
                      layer.class_name)
  return kind


def _check_inputs(block, blocks, groups, where):
  if not block.inputs:
    raise where.error("name", f"block '{block.name}' has no inputs", block.name)
  for item in block.inputs:
    source = item.WhichOneof("name")
    if source is None:
      raise where.error("inputs", f"block '{block.name}': an input names neither a "
                        "feature_group_name nor a block_name")
    value = getattr(item, source)
    if source == "feature_group_name" and value not in groups:
      raise where.error(source, f"block '{block.name}': no feature group '{value}'", value)
    if source == "block_name" and (value not in blocks or value == block.name):
      raise where.error(source, f"block '{block.name}': no block '{value}'", value)
    if item.input_slice and not re.fullmatch(r"\[\d+\]", item.input_slice):
      raise where.error("input_slice", f"block '{block.name}': input_slice must look like "
                        f"\"[0]\", got '{item.input_slice}'", item.input_slice)


def _check_layer_settings(block, kind, where) -> int:
  """What the layer kind asks of the block (models/layer_registry.py); returns its
  number of outputs."""
  if kind.input_list and (len(block.inputs) < 2 or not block.merge_inputs_into_list):
    raise where.error("name", f"{kind.class_name} block '{block.name}' takes "
                      f"{kind.input_list}: two or more inputs and "
                      "merge_inputs_into_list: true", block.name)
  settings = getattr(block.keras_layer, kind.params)
  for mlp in kind.mlps(settings):
    if not mlp.hidden_units:
      raise where.error("hidden_units", f"block '{block.name}': the MLP needs hidden_units")
  for field, message in kind.problems(settings):
    raise where.error(field, f"block '{block.name}': {message}")
  for field in kind.positive:
    if getattr(settings, field) < 1:
      raise where.error(field, f"block '{block.name}' needs {field} >= 1")
  return kind.output_count(settings)


def _dependencies(backbone) -> Dict[str, List[str]]:
  """Block name -> the blocks it reads: by block_name, and by feature_group_name where an
  input_layer block carries that group's name (EasyRec reads the block then)."""
  names = {b.name for b in backbone.blocks}
  return {b.name: [getattr(i, i.WhichOneof("name")) for i in b.inputs
                   if i.WhichOneof("name") == "block_name"
                   or (i.feature_group_name in names and i.feature_group_name != b.name)]
          for b in backbone.blocks}


def topological_order(backbone) -> Optional[List[str]]:
  """Block names in an order where every input comes first; None if there's a cycle."""
  names = [b.name for b in backbone.blocks]
  deps = {name: set(d) for name, d in _dependencies(backbone).items()}
  order, done = [], set()
  while len(order) < len(names):
    ready = [n for n in names if n not in done and deps[n] <= done]
    if not ready:
      return None
    for n in ready:
      order.append(n)
      done.add(n)
  return order


def _cycle(backbone) -> List[str]:
  deps = _dependencies(backbone)

  def visit(name, path):
    if name in path:
      return path[path.index(name):] + [name]
    for d in deps.get(name, ()):
      found = visit(d, path + [name])
      if found:
        return found
    return None

  for name in deps:
    found = visit(name, [])
    if found:
      return found
  return []


def _check_towers(model, arity, labels, shared, where) -> Tuple[Task, ...]:
  """The Tasks. `shared`: the backbone named no output_blocks, so a single-tensor output
  is every tower's input (EasyRec's shared bottom); named ones map one to one."""
  towers = model.model_params.task_towers
  backbone = model.backbone
  if not towers:
    raise where.error("model_params", "needs task_towers")
  outputs = list(backbone.output_blocks)
  for name in outputs:
    if name not in arity:
      raise where.error("output_blocks", f"'{name}' is not a block", name)
  # One output block per tower, a single multi-output block (MMoE, PLE) with one output
  # per tower, or one single-output block every tower reads (a shared bottom).
  if shared and arity[outputs[0]] == 1:
    slots = [(outputs[0], None)] * len(towers)
  elif len(outputs) == 1 and arity[outputs[0]] > 1:
    if arity[outputs[0]] != len(towers):
      raise where.error("output_blocks", f"'{outputs[0]}' has {arity[outputs[0]]} outputs "
                        f"but there are {len(towers)} task_towers")
    slots = [(outputs[0], i) for i in range(len(towers))]
  elif len(outputs) != len(towers):
    raise where.error("output_blocks", f"{len(outputs)} output_blocks for {len(towers)} "
                      "task_towers: they map one to one, in order")
  else:
    for name in outputs:
      if arity[name] > 1:
        raise where.error("output_blocks", f"'{name}' has {arity[name]} outputs; slice it "
                          "in a block of its own, or make it the only output block", name)
    slots = [(name, None) for name in outputs]

  names = [t.tower_name for t in towers]
  blocks = {b.name: b for b in backbone.blocks}
  tasks = []
  for index, (tower, (block, slot)) in enumerate(zip(towers, slots)):
    name = tower.tower_name
    if not name or name in names[:index]:
      raise where.error("tower_name", "task towers need distinct names", name or None)
    label = tower.label_name or (labels[index] if index < len(labels) else "")
    if label not in labels:
      raise where.error("label_name", f"tower '{name}': '{label}' is not in "
                        "data_config.label_fields", label or None)
    if tower.num_class != 1:
      raise where.error("num_class", f"tower '{name}': only binary tasks (num_class 1)")
    if tower.dnn.hidden_units and len(tower.dnn.dropout_ratio) > len(tower.dnn.hidden_units):
      raise where.error("dropout_ratio", f"tower '{name}': more dropout ratios than layers")
    _refuse_task_space(tower, name, where)
    classification, calibration, extra = _tower_losses(tower, name, where)
    against: Tuple[str, ...] = ()
    if calibration:
      against = tuple(tower.relation_tower_names) or _preceding(index, block, blocks, slots,
                                                                names)
      if not against:
        raise where.error("loss_type", f"tower '{name}' has an ORDER_CALIBRATE_LOSS but no "
                          "preceding tower to compare with", "ORDER_CALIBRATE_LOSS")
    for other in list(tower.relation_tower_names) + (
        [tower.conditional_on] if tower.conditional_on else []):
      if other not in names[:index]:
        raise where.error("relation_tower_names" if other in tower.relation_tower_names
                          else "conditional_on",
                          f"tower '{name}': '{other}' is not a tower before it", other)
    if tower.HasField("relation_dnn"):
      related = {t.tower_name: t for t in towers[:index]}
      for other in tower.relation_tower_names:
        if not related[other].HasField("relation_dnn"):
          raise where.error("relation_tower_names", f"tower '{name}' reads the relation "
                            f"features of '{other}', which has no relation_dnn (EasyRec "
                            "fails on it too)", other)
      if len(tower.relation_dnn.dropout_ratio) > len(tower.relation_dnn.hidden_units):
        raise where.error("dropout_ratio", f"tower '{name}': more relation_dnn dropout "
                          "ratios than layers")
    for metric in tower.metrics_set:
      if metric.WhichOneof("metric") is None:
        raise where.error("metrics_set", f"tower '{name}': only auc {{}} is supported")
    tasks.append(Task(
        name=name, label=label, output_block=block, output_index=slot,
        classification_weight=float(tower.weight * classification),
        calibration_weight=float(tower.weight * calibration),
        calibrate_against=against, conditional_on=tower.conditional_on or None,
        extra_losses=tuple((kind, float(tower.weight * weight), loss_name, params)
                           for kind, weight, loss_name, params in extra)))
  return tuple(tasks)


def _refuse_task_space(tower, name, where):
  """EasyRec's per-example task-space weights, which this project doesn't apply."""
  for field in ("task_space_indicator_label", "task_space_indicator_name",
                "task_space_indicator_value"):
    if getattr(tower, field):
      raise where.error(field, f"tower '{name}': task-space weights are not supported")
  for field in ("in_task_space_weight", "out_task_space_weight"):
    if getattr(tower, field) != 1.0:
      raise where.error(field, f"tower '{name}': task-space weights are not supported")


def _tower_losses(tower, name, where):
  """(CLASSIFICATION weight, ORDER_CALIBRATE weight, [(type, weight, name, params)] of
  the other losses) of a tower: its `losses`, else its `loss_type` with weight 1. Each
  weight is the loss's own; the tower's weight multiplies them all."""
  if not math.isfinite(tower.weight) or tower.weight < 0:
    raise where.error("weight", f"tower '{name}': the weight must be a finite number >= 0, "
                      f"got {tower.weight}")
  losses = list(tower.losses)
  if not losses:
    losses = [messages.message_class("Loss")(loss_type=tower.loss_type)]
  classification = calibration = 0.0
  has_classification, extra = False, []
  for loss in losses:
    kind = messages.ENUMS["LossType"][loss.loss_type]
    if not math.isfinite(loss.weight) or loss.weight < 0:
      raise where.error("weight", f"tower '{name}': a loss weight must be a finite number "
                        f">= 0, got {loss.weight}")
    if kind in loss_types.REFUSED:
      raise where.error("loss_type", f"tower '{name}': {kind} is not supported for a binary "
                        f"task: {loss_types.REFUSED[kind]}", kind)
    if loss.learn_loss_weight:
      raise where.error("learn_loss_weight", f"tower '{name}': learned loss weights "
                        "(EasyRec's Uncertainty strategy) are not supported")
    params_field = loss.WhichOneof("loss_param")
    if params_field and params_field != loss_types.PARAMS_FIELD.get(kind):
      raise where.error(params_field, f"tower '{name}': {params_field} sets the parameters "
                        f"of another loss type than {kind}")
    params = getattr(loss, params_field) if params_field else None
    if params is not None:
      for field in loss_types.REFUSED_PARAMS.get(kind, ()):
        if getattr(params, field):
          raise where.error(field, f"tower '{name}': {kind}'s {field} is not supported "
                            "(pairs are taken over the whole batch)")
    if kind == "CLASSIFICATION":
      if has_classification:
        raise where.error("losses", f"tower '{name}' has two CLASSIFICATION losses")
      has_classification, classification = True, loss.weight
    elif kind == "ORDER_CALIBRATE_LOSS":
      calibration += loss.weight
    else:
      extra.append((kind, loss.weight, loss.loss_name,
                    tuple((f.name, v) for f, v in params.ListFields()
                          if f.name not in loss_types.REFUSED_PARAMS.get(kind, ()))
                    if params else ()))
  names = [loss_types.loss_tensor_name(kind, loss_name, name)
           for kind, _, loss_name, _ in extra]
  if has_classification:
    names.append(loss_types.loss_tensor_name("CLASSIFICATION", "", name))
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise where.error("losses", f"tower '{name}': two losses are both named {repeated} "
                      "(EasyRec would keep only the last): give them distinct loss_name")
  if not has_classification and not extra:
    raise where.error("losses", f"tower '{name}' needs a loss besides ORDER_CALIBRATE_LOSS "
                      "(CLASSIFICATION or another binary loss)")
  return classification, calibration, extra


def _preceding(index, block, blocks, slots, names) -> Tuple[str, ...]:
  """The tower before this one in the AITM chain: the tower whose output block the
  AITMTower reads as its second input, else the previous tower in order."""
  spec = blocks.get(block)
  if spec is not None and spec.keras_layer.class_name == "AITMTower":
    owners = {b: names[i] for i, (b, s) in enumerate(slots) if s is None}
    first_preceding = spec.inputs[1].block_name
    if first_preceding in owners and owners[first_preceding] in names[:index]:
      return (owners[first_preceding],)
  return (names[index - 1],) if index > 0 else ()


# --- eval_config --------------------------------------------------------------

def _check_evaluation(proto, columns, labels, where):
  types = {c.name: c.type for c in columns}
  seen = set()
  for name in proto.eval_config.slice_fields:
    _check_input_field("slice_fields", name, types, labels, where)
    if name in seen:
      raise where.error("slice_fields", f"'{name}' is listed twice", name)
    seen.add(name)


# --- train_config -------------------------------------------------------------

def _check_training(proto, where):
  train = proto.train_config
  if len(train.optimizer_config) > 1:
    raise where.error("optimizer_config", "only one optimizer is supported")
  for optimizer in train.optimizer_config:
    kind = optimizer.WhichOneof("optimizer")
    if kind is None:
      raise where.error("optimizer_config", "names no optimizer (adam_optimizer, "
                        "adagrad_optimizer or momentum_optimizer)")
    rate = getattr(optimizer, kind).learning_rate
    if rate.WhichOneof("learning_rate") == "exponential_decay_learning_rate":
      value = rate.exponential_decay_learning_rate.initial_learning_rate
    else:
      value = rate.constant_learning_rate.learning_rate
    if value <= 0:
      raise where.error("learning_rate", "must be positive")
    if optimizer.use_moving_average:
      raise where.error("use_moving_average", "is not supported")
