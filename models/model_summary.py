"""What `aitm check` prints: a config's model as built, block by block, in plain text.

`summary_lines(config, model)` takes a checked config and the Keras model
`models.backbone.build_model` made from it, and returns aligned table lines:

    header         the file, model_name, model_class as written, the config's style
    embeddings     each embedded feature: encoding, rows x dim, parameters
    feature groups each group's features and width, concatenated
    blocks         in topological order: layer, inputs, output shape(s), parameters
    towers         input, dnn, relation (DBMTL), conditional_on, head, parameters
    losses         type, loss weight x tower weight = effective weight, EasyRec's name
    totals         embedding, dense and all parameters, trainable and not

Shapes and parameter counts are read from the built Keras layers (named after
the blocks and towers, see models/backbone.py), not recomputed, so what is
printed is what trains. A VOCABULARY feature (compute_vocabulary) has no row
count before Transform runs: `embedding_rows` gives it a placeholder, and its
parameters print as "?" and stay out of the totals.
"""

import textwrap
from typing import Dict, List, Sequence

from models.backbone import model_features
from models.config import PipelineConfig, messages, topological_order
from models.features import Encoding, Feature
from models.loss_types import loss_tensor_name

# The shape printed for a dimension Keras leaves open: the batch.
BATCH = "B"


def embedding_rows(config: PipelineConfig) -> Dict[str, int]:
  """Feature -> embedding rows for build_model, from the config alone: a VOCABULARY
  feature, whose vocabulary Transform has not learned yet, gets a placeholder of one
  row plus its OOV buckets."""
  from models.preprocessing import embedding_rows as rows
  return {f.name: f.buckets + 1 if f.encoding is Encoding.VOCABULARY else rows(f)
          for f in config.features}


def format_shape(shape) -> str:
  """A Keras output shape as text: (None, 16) -> "[B, 16]"; a list of n equal ones ->
  "n x [B, 16]", of different ones -> "[B, 16], [B, 8]"."""
  if hasattr(shape, "as_list"):
    shape = shape.as_list()
  if shape and not isinstance(shape[0], (int, type(None))):
    parts = [format_shape(s) for s in shape]
    if len(set(parts)) == 1:
      return f"{len(parts)} x {parts[0]}"
    return ", ".join(parts)
  return "[" + ", ".join(BATCH if d is None else str(d) for d in shape) + "]"


def _count(weights) -> int:
  total = 0
  for w in weights:
    size = 1
    for d in w.shape:
      size *= int(d)
    total += size
  return total


def _params(layers) -> List[int]:
  """[trainable, non-trainable] parameters of the layers."""
  return [sum(_count(l.trainable_weights) for l in layers),
          sum(_count(l.non_trainable_weights) for l in layers)]


def _number(n) -> str:
  return f"{n:,}" if isinstance(n, int) else n


def _weight(w: float) -> str:
  return f"{w:g}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]],
          numeric: Sequence[int] = ()) -> List[str]:
  """Rows under a header, two spaces between columns, indented two; the columns in
  `numeric` are right-aligned, the last column is not padded."""
  cells = [list(header)] + [[_number(c) for c in row] for row in rows]
  widths = [max(len(str(row[i])) for row in cells) for i in range(len(header))]
  lines = []
  for row in cells:
    parts = [str(c).rjust(w) if i in numeric else str(c).ljust(w)
             for i, (c, w) in enumerate(zip(row, widths))]
    lines.append(("  " + "  ".join(parts)).rstrip())
  return lines


class _Layers:
  """The model's layers by name, each handed out once, so the totals can say which
  ones no section printed."""

  def __init__(self, model):
    self.by_name = {l.name: l for l in model.layers}
    self.taken = set()

  def get(self, name: str):
    """The layer called `name`, or None; marks it printed."""
    layer = self.by_name.get(name)
    if layer is not None:
      self.taken.add(name)
    return layer

  def left(self):
    """The layers no section took."""
    return [l for n, l in self.by_name.items() if n not in self.taken]


def summary_lines(config: PipelineConfig, model) -> List[str]:
  """The summary of `model`, built from `config` (build_model, embedding_rows), as text
  lines without newlines."""
  layers = _Layers(model)
  for name in model.input_names:
    layers.get(name)
  lines = _header(config, model)
  unknown = [f for f in model_features(config) if f.encoding is Encoding.VOCABULARY]
  embedding = layers.get("features")
  lines += [""] + _embeddings(config, embedding)
  group_shapes = _group_shapes(config, embedding)
  lines += [""] + _groups(config, group_shapes, layers)
  block_lines, shapes, block_params = _blocks(config, group_shapes, layers)
  lines += [""] + block_lines
  tower_lines, tower_params = _towers(config, shapes, layers)
  lines += [""] + tower_lines
  lines += [""] + _losses(config)
  dense = [a + b for a, b in zip(block_params, tower_params)]
  lines += [""] + _totals(embedding, unknown, dense, layers)
  return lines


def _header(config, model) -> List[str]:
  written = config.proto.model_config
  style = written.WhichOneof("model")
  style = ("backbone" if style in (None, "model_params")
           else f"{style} (translated to a backbone)")
  name = written.model_name or f"(not set; the model is called {model.name})"
  return [f"config       {config.source}", f"model_name   {name}",
          f"model_class  {written.model_class}", f"style        {style}"]


def _embeddings(config, layer) -> List[str]:
  rows = []
  for f in model_features(config):
    if f.encoding is Encoding.RAW:
      rows.append((f.name, f.encoding.value, "-", "-", 0))
      continue
    table_ = layer.tables[f.name]
    if f.encoding is Encoding.VOCABULARY:
      rows.append((f.name, f.encoding.value, "?", table_.output_dim, "?"))
    else:
      rows.append((f.name, f.encoding.value, table_.input_dim, table_.output_dim,
                   _count(table_.weights)))
  return ["embeddings"] + table(("feature", "encoding", "rows", "dim", "parameters"), rows,
                                numeric=(2, 3, 4))


def _group_shapes(config, layer) -> Dict[str, object]:
  """Each feature group's embeddings concatenated, as a shape."""
  vectors = layer.output_shape
  shapes = {}
  for group in config.model.feature_groups:
    parts = [vectors[n] for n in group.feature_names]
    shapes[group.group_name] = (parts[0] if len(parts) == 1 else
                                tuple(parts[0][:-1]) + (sum(p[-1] for p in parts),))
  return shapes


def _groups(config, shapes, layers) -> List[str]:
  rows = []
  for group in config.model.feature_groups:
    layers.get(group.group_name)  # its Concatenate, when something reads it whole
    rows.append((group.group_name, len(group.feature_names),
                 format_shape(shapes[group.group_name])))
  return ["feature groups (embeddings concatenated)"] + table(
      ("group", "features", "output"), rows, numeric=(1,))


def _source(item) -> str:
  """A block input as written: a block with its slice, or group:NAME."""
  kind = item.WhichOneof("name")
  text = (item.block_name + item.input_slice if kind == "block_name"
          else f"group:{item.feature_group_name}")
  return text + (" (ignored)" if item.ignore_input else "")


def _input_shape(item, shapes, group_shapes):
  """The shape a block input brings, after its input_slice. A feature group an
  input_layer block is named after is that block's output (models/backbone.py)."""
  name = getattr(item, item.WhichOneof("name"))
  shape = shapes[name] if name in shapes else group_shapes[name]
  return shape[int(item.input_slice[1:-1])] if item.input_slice else shape


def _blocks(config, group_shapes, layers):
  """(lines, block -> output shape, [trainable, non-trainable] of all blocks)."""
  backbone = config.model.backbone
  blocks = {b.name: b for b in backbone.blocks}
  shapes, rows, total = {}, [], [0, 0]
  for name in topological_order(backbone):
    block = blocks[name]
    kind = block.WhichOneof("layer")
    used = [i for i in block.inputs if not i.ignore_input]
    # The Concatenate of several inputs: named after a block without a layer (it is
    # its output), else `<block>_inputs`.
    merged = layers.get(f"{name}_inputs") if kind else (layers.get(name) if len(used) > 1
                                                          else None)
    if kind in ("keras_layer", "input_layer"):
      layer = layers.get(name)
      shapes[name] = layer.output_shape
      what = block.keras_layer.class_name if kind == "keras_layer" else "input_layer"
      counted = [layer] + ([merged] if merged else [])
    else:
      # No layer: the input passed on, a list of the inputs, or their concatenation.
      inputs = [_input_shape(i, shapes, group_shapes) for i in used]
      if block.merge_inputs_into_list:
        what, shapes[name] = "list", list(inputs)
      elif merged is not None:
        what, shapes[name] = "concat", merged.output_shape
      else:
        what, shapes[name] = "identity", inputs[0]
      counted = [merged] if merged else []
    params = _params(counted)
    total = [a + b for a, b in zip(total, params)]
    rows.append((name, what, ", ".join(_source(i) for i in block.inputs),
                 format_shape(shapes[name]), *params))
  return (["blocks (topological order)"] + table(
      ("block", "layer", "inputs", "output", "trainable", "non-trainable"), rows,
      numeric=(4, 5)), shapes, total)


def _towers(config, shapes, layers):
  """(lines, [trainable, non-trainable] of all towers)."""
  towers = {t.tower_name: t for t in config.model.model_params.task_towers}
  shared = len({(t.output_block, t.output_index) for t in config.tasks}) == 1 and \
      config.tasks[0].output_index is None
  relation = any(t.HasField("relation_dnn") for t in towers.values())
  header = ["tower", "label", "input", "input shape", "dnn"]
  if relation:
    header += ["relation input", "relation_dnn"]
  header += ["conditional_on", "head", "trainable", "non-trainable"]
  rows, total = [], [0, 0]
  for task in config.tasks:
    tower = towers[task.name]
    t = task.name
    source = task.output_block + ("" if task.output_index is None
                                  else f"[{task.output_index}]")
    shape = shapes[task.output_block]
    if task.output_index is not None:
      shape = shape[task.output_index]
    dnn = layers.get(f"{t}_dnn")
    row = [t, task.label, source + (" (shared)" if shared else ""), format_shape(shape),
           _units(tower.dnn)]
    if relation:
      row += _relation(tower, layers, dnn.output_shape if dnn else shape)
    head = layers.get(f"{t}_head")
    row += [task.conditional_on or "-", f"{head.input_shape[-1]} -> 1"]
    names = [f"{t}_relation_inputs", f"{t}_relation_dnn", f"{t}_x_{task.conditional_on}",
             f"{t}_order_calibrate_loss", f"{t}_calibration", t]
    counted = [dnn, head] + [layers.get(n) for n in names]
    params = _params([l for l in counted if l is not None])
    total = [a + b for a, b in zip(total, params)]
    rows.append(row + params)
  return ["towers"] + table(header, rows, numeric=(len(header) - 2, len(header) - 1)), total


def _units(dnn) -> str:
  return ",".join(str(u) for u in dnn.hidden_units) or "-"


def _relation(tower, layers, own_shape) -> List[str]:
  """[relation input, relation_dnn units]: the input as its parts' widths, own first."""
  if not tower.HasField("relation_dnn"):
    return ["-", "-"]
  concat = layers.get(f"{tower.tower_name}_relation_inputs")
  if concat is None:
    return [format_shape(own_shape), _units(tower.relation_dnn)]
  own, *related = concat.input_shape
  parts = [str(own[-1])] + [f"{n} {s[-1]}" for n, s in zip(tower.relation_tower_names,
                                                           related)]
  return [f"{' + '.join(parts)} = {format_shape(concat.output_shape)}",
          _units(tower.relation_dnn)]


def _easyrec_name(config, kind: str, loss, tower: str) -> str:
  """The key of the loss in EasyRec's loss dict."""
  if config.proto.model_config.WhichOneof("model") == "esmm" and kind == "CLASSIFICATION":
    # esmm.py builds its own two losses rather than MultiTaskModel's.
    return f"weighted_cross_entropy_loss_{tower}"
  return loss_tensor_name(kind, loss.loss_name, tower)


def _losses(config) -> List[str]:
  towers = {t.tower_name: t for t in config.model.model_params.task_towers}
  loss_class = messages.message_class("Loss")
  rows = []
  for task in config.tasks:
    tower = towers[task.name]
    for loss in list(tower.losses) or [loss_class(loss_type=tower.loss_type)]:
      kind = messages.ENUMS["LossType"][loss.loss_type]
      note = ""
      if kind == "ORDER_CALIBRATE_LOSS":
        note = f"p_{task.name} <= " + ", ".join(f"p_{o}" for o in task.calibrate_against)
      else:
        params = loss.WhichOneof("loss_param")
        if params:
          note = ", ".join(f"{f.name}={v:g}" if isinstance(v, float) else f"{f.name}={v}"
                           for f, v in getattr(loss, params).ListFields())
      rows.append((task.name, kind, f"{_weight(loss.weight)} x {_weight(tower.weight)} = "
                   f"{_weight(loss.weight * tower.weight)}",
                   _easyrec_name(config, kind, loss, task.name), note))
  header = ("tower", "loss", "weight", "EasyRec name", "details")
  if not any(row[-1] for row in rows):
    header, rows = header[:-1], [row[:-1] for row in rows]
  return ["losses (loss weight x tower weight = effective weight)"] + table(header, rows)


def _totals(embedding, unknown: Sequence[Feature], dense, layers) -> List[str]:
  others = []
  rest = [l for l in layers.left() if _count(l.weights)]
  if rest:
    # Weights in a layer no section above claimed (a builder change this module
    # missed): counted and named, so the totals stay the model's.
    dense = [a + b for a, b in zip(dense, _params(rest))]
    others.append("  dense includes layers of no block or tower: "
                  + ", ".join(l.name for l in rest))
  placeholder = sum(_count(embedding.tables[f.name].weights) for f in unknown)
  known = [_count(embedding.trainable_weights) - placeholder,
           _count(embedding.non_trainable_weights)]
  every = [a + b for a, b in zip(known, dense)]
  more = " + ?" if unknown else ""
  rows = [("embeddings", f"{known[0]:,}{more}", known[1], f"{sum(known):,}{more}"),
          ("dense", dense[0], dense[1], sum(dense)),
          ("all", f"{every[0]:,}{more}", every[1], f"{sum(every):,}{more}")]
  lines = ["totals"] + table(("parameters", "trainable", "non-trainable", "total"), rows,
                             numeric=(1, 2, 3)) + others
  if unknown:
    lines += textwrap.wrap(
        "? compute_vocabulary: the rows of " + ", ".join(f.name for f in unknown)
        + " are the vocabulary Transform learns, so their tables are built here with a "
        "placeholder and left out of the totals", width=88, subsequent_indent="  ")
  return lines
