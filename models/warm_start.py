"""Warm start: a new model starts from a base model's weights (TFX's `base_model`,
the latest blessed model) when the two have the same architecture.

Every trained model leaves what a later run needs next to its SavedModel, in
`<model artifact>/warm_start/` (the Pusher copies only `Format-Serving`, so
serving never sees it):

* `weights.npz`: every weight, keyed by its path in the model (`weight_keys`);
* `vocabularies/<feature>.txt`: each VOCABULARY feature's Transform vocabulary,
  one token a line in id order;
* `manifest.json`: the format version, the model's features (encoding, buckets,
  embedding dim, column), which weights are whose embedding table, and the
  model_config's structure.

Transform relearns the vocabularies every run, so a token's id, and with it
its embedding row, moves between runs. A VOCABULARY table is therefore
remapped by token: a token in both vocabularies keeps its base row, a new
token keeps its fresh initialisation, a token the new vocabulary dropped loses
its row, and the OOV bucket rows (ids after the vocabulary) are copied. Hash,
tag, integer-id, vocab_list and bucketized tables, whose ids mean the same
thing every run, are copied whole, as are the dense weights.

Anything else is a different architecture, and the model starts fresh with
the reason, naming the weight or feature (`match`): a base without the
files above (trained before warm start existed), another format, a feature
added, dropped or configured differently, a weight only one side has, a
weight whose shape differs, or the same weights wired differently (the
model_config, its regularisation and loss settings aside, differs).
Optimizer slots are not restored: Adam starts its moments afresh.
"""

import dataclasses
import io
import json
import os
import re
import zipfile
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from google.protobuf import text_format

from models.backbone import model_features
from models.features import Encoding, vocabulary_name
from models.layers.feature_embeddings import FeatureEmbeddings

DIR_NAME = "warm_start"
# Bumped when the files' layout or the weight keys change: an older base is
# then a different architecture, never misread.
FORMAT = 1
WEIGHTS_FILE, MANIFEST_FILE, VOCABULARY_DIR = "weights.npz", "manifest.json", "vocabularies"
# model_config fields that change how a model is trained, not which weights it
# has or how they are wired: a base trained with other values still fits.
_TRAINING_ONLY_FIELDS = ("embedding_regularization",)
_PARAMS_TRAINING_ONLY_FIELDS = ("l2_regularization",)
_TOWER_TRAINING_ONLY_FIELDS = ("losses", "metrics_set", "weight")


def snapshot_dir(model_dir: str) -> str:
  """`<model artifact>/warm_start` for the artifact's serving dir (FnArgs'
  `serving_model_dir` or `base_model`, both `<model artifact>/Format-Serving`)."""
  return os.path.join(os.path.dirname(model_dir.rstrip("/")), DIR_NAME)


def weight_keys(model: tf.keras.Model) -> List[Tuple[str, tf.Variable]]:
  """(key, variable) for every weight of `model`, the key its path from the
  top-level layer, e.g. `share_bottom/dense_1/kernel`.

  Keras numbers the layers it names itself process-wide (`dense_7` in one
  build, `dense_19` in the next), so below the top-level layer (named by the
  config: blocks, towers, `features`) each name is renumbered by its order
  among siblings of the same stem: the first `dense` is `dense`, the next
  `dense_1`. The same config thus gives the same keys in every process."""
  keys = []
  for layer in model.layers:
    ordinals: Dict[tuple, Dict[str, int]] = {}
    for weight in layer.weights:
      parts = weight.name.split(":")[0].split("/")
      path = [layer.name]
      for part in parts[1:-1]:
        stem = re.sub(r"_\d+$", "", part)
        seen = ordinals.setdefault((tuple(path), stem), {})
        number = seen.setdefault(part, len(seen))
        path.append(stem if number == 0 else f"{stem}_{number}")
      keys.append(("/".join(path + parts[-1:]), weight))
  names = [k for k, _ in keys]
  if len(set(names)) != len(names):
    raise ValueError(f"weight keys are not unique: {sorted(names)}")
  return keys


def _feature_spec(feature) -> Dict:
  """What decides a feature's ids and table, as JSON (a VOCABULARY feature's
  tokens aside: those are remapped)."""
  return {"column": feature.column, "encoding": feature.encoding.value,
          "buckets": feature.buckets, "embedding_dim": feature.embedding_dim,
          "separator": feature.separator, "max_tags": feature.max_tags,
          "vocabulary": list(feature.vocabulary), "boundaries": list(feature.boundaries)}


def model_structure(config) -> str:
  """The config's model_config as text, without the settings that only change
  training (regularisation, losses, metrics, tower weights)."""
  structure = type(config.proto.model_config)()
  structure.CopyFrom(config.proto.model_config)
  for field in _TRAINING_ONLY_FIELDS:
    structure.ClearField(field)
  for field in _PARAMS_TRAINING_ONLY_FIELDS:
    structure.model_params.ClearField(field)
  for tower in structure.model_params.task_towers:
    for field in _TOWER_TRAINING_ONLY_FIELDS:
      tower.ClearField(field)
  return text_format.MessageToString(structure)


@dataclasses.dataclass
class Snapshot:
  """A model's weights and what they mean: the warm_start/ folder in memory."""
  features: Dict[str, Dict]            # model feature -> _feature_spec
  tables: Dict[str, str]               # weight key of an embedding table -> its feature
  weights: Dict[str, np.ndarray]       # weight key -> value
  vocabularies: Dict[str, List[bytes]]  # VOCABULARY feature -> tokens in id order
  structure: str                       # model_structure(config)
  format: int = FORMAT


def snapshot(model: tf.keras.Model, config, tf_transform_output) -> Snapshot:
  """`model`'s weights now (the trained ones after fit, the fresh ones before),
  with the vocabularies its ids were looked up in."""
  features = model_features(config)
  table_feature = {}
  for layer in model.layers:
    if isinstance(layer, FeatureEmbeddings):
      table_feature.update({id(table.embeddings): name for name, table in layer.tables.items()})
  keys = weight_keys(model)
  return Snapshot(
      features={f.name: _feature_spec(f) for f in features},
      tables={key: table_feature[id(w)] for key, w in keys if id(w) in table_feature},
      weights={key: np.asarray(w.numpy()) for key, w in keys},
      vocabularies={f.name: list(tf_transform_output.vocabulary_by_name(vocabulary_name(f)))
                    for f in features if f.encoding is Encoding.VOCABULARY},
      structure=model_structure(config))


def write_snapshot(directory: str, snap: Snapshot) -> None:
  """Writes warm_start/ (the module docstring); `directory` may be on gs://."""
  tf.io.gfile.makedirs(os.path.join(directory, VOCABULARY_DIR))
  buffer = io.BytesIO()  # np.savez seeks, which a GFile on object storage can't
  np.savez(buffer, **snap.weights)
  with tf.io.gfile.GFile(os.path.join(directory, WEIGHTS_FILE), "wb") as f:
    f.write(buffer.getvalue())
  for feature, tokens in snap.vocabularies.items():
    with tf.io.gfile.GFile(os.path.join(directory, VOCABULARY_DIR, f"{feature}.txt"), "wb") as f:
      f.write(b"".join(token + b"\n" for token in tokens))
  manifest = {"format": snap.format, "features": snap.features, "tables": snap.tables,
              "shapes": {k: list(v.shape) for k, v in snap.weights.items()},
              "vocabularies": sorted(snap.vocabularies), "structure": snap.structure}
  # Last: a folder with a manifest is complete.
  with tf.io.gfile.GFile(os.path.join(directory, MANIFEST_FILE), "w") as f:
    json.dump(manifest, f, indent=1)


class NoSnapshot(Exception):
  """The base model left nothing to warm-start from; the message says what is missing."""


def read_snapshot(directory: str) -> Snapshot:
  """The warm_start/ folder `write_snapshot` wrote; NoSnapshot when it is missing
  or incomplete."""
  manifest_path = os.path.join(directory, MANIFEST_FILE)
  if not tf.io.gfile.exists(manifest_path):
    raise NoSnapshot(f"the base model has no {DIR_NAME}/{MANIFEST_FILE} (trained before "
                     "warm start existed, or its export did not finish)")
  try:
    with tf.io.gfile.GFile(manifest_path) as f:
      manifest = json.load(f)
    if manifest.get("format") != FORMAT:
      raise NoSnapshot(f"the base model's {DIR_NAME} folder has format "
                       f"{manifest.get('format')}, this Trainer reads {FORMAT}")
    with tf.io.gfile.GFile(os.path.join(directory, WEIGHTS_FILE), "rb") as f:
      arrays = np.load(io.BytesIO(f.read()))
      weights = {key: arrays[key] for key in arrays.files}
    vocabularies = {}
    for feature in manifest["vocabularies"]:
      with tf.io.gfile.GFile(os.path.join(directory, VOCABULARY_DIR, f"{feature}.txt"),
                             "rb") as f:
        vocabularies[feature] = f.read().split(b"\n")[:-1]
    return Snapshot(manifest["features"], manifest["tables"], weights, vocabularies,
                    manifest["structure"], manifest["format"])
  # A damaged folder is a reason to start fresh, not to fail the run.
  except (OSError, tf.errors.OpError, ValueError, KeyError, zipfile.BadZipFile) as e:
    raise NoSnapshot(f"the base model's {DIR_NAME} folder can't be read: "
                     f"{type(e).__name__}: {e}") from None


@dataclasses.dataclass
class RowRemap:
  """How a VOCABULARY table's rows were filled from the base model's."""
  kept: int      # tokens in both vocabularies: the base row, moved to the new id
  new: int       # tokens only in the new vocabulary: fresh rows
  dropped: int   # tokens only in the base vocabulary: their rows are not used
  oov: int       # OOV bucket rows, copied

  def as_dict(self) -> Dict[str, int]:
    """The four counts by name, for training_summary.json."""
    return dataclasses.asdict(self)


def remap_rows(base_table: np.ndarray, base_tokens: List[bytes], fresh_table: np.ndarray,
               tokens: List[bytes], oov_buckets: int) -> Tuple[np.ndarray, RowRemap]:
  """A VOCABULARY table `[len(tokens) + oov_buckets, dim]` for the new vocabulary:
  `fresh_table` with each token's row from `base_table` where the base
  vocabulary had the token, and the OOV bucket rows (the last `oov_buckets`,
  tft.compute_and_apply_vocabulary's layout) copied."""
  for table, vocab, side in ((base_table, base_tokens, "base"), (fresh_table, tokens, "new")):
    if table.shape[0] != len(vocab) + oov_buckets:
      raise ValueError(f"the {side} table has {table.shape[0]} rows, not {len(vocab)} "
                       f"tokens + {oov_buckets} OOV buckets")
  if base_table.shape[1:] != fresh_table.shape[1:]:
    raise ValueError(f"embedding dim {base_table.shape[1:]} != {fresh_table.shape[1:]}")
  base_id = {token: i for i, token in enumerate(base_tokens)}
  table = fresh_table.copy()
  new_ids = [i for i, token in enumerate(tokens) if token in base_id]
  table[new_ids] = base_table[[base_id[tokens[i]] for i in new_ids]]
  if oov_buckets:
    table[len(tokens):] = base_table[len(base_tokens):]
  kept = len(new_ids)
  return table, RowRemap(kept=kept, new=len(tokens) - kept, dropped=len(base_tokens) - kept,
                         oov=oov_buckets)


@dataclasses.dataclass
class Decision:
  """Whether the model starts from the base model, and what it took from it."""
  base_model: Optional[str]          # the base model's serving dir; None: none given
  warm: bool
  reason: Optional[str] = None       # why a fresh start (None when warm)
  weights: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)
  copied: List[str] = dataclasses.field(default_factory=list)   # weight keys, as they were
  remapped: Dict[str, RowRemap] = dataclasses.field(default_factory=dict)  # by token

  def message(self) -> str:
    """One line for the Trainer's log: where the weights came from and how many were
    copied and remapped, or why the start is fresh."""
    if not self.warm:
      return f"warm start: fresh start, {self.reason}"
    rows = [sum(getattr(r, part) for r in self.remapped.values())
            for part in ("kept", "new", "dropped")]
    return (f"warm start: from {self.base_model}: {len(self.copied)} weights copied, "
            f"{len(self.remapped)} vocabulary tables remapped by token ({rows[0]:,} rows "
            f"kept, {rows[1]:,} new tokens fresh, {rows[2]:,} dropped tokens' rows unused)")

  def summary(self) -> Dict:
    """For training_summary.json."""
    return {"base_model": self.base_model, "warm": self.warm, "reason": self.reason,
            "copied": sorted(self.copied),
            "remapped": {f: r.as_dict() for f, r in sorted(self.remapped.items())}}


def _first_difference(base: Dict, new: Dict) -> str:
  return next(f"{k} {base.get(k)!r} != {new.get(k)!r}" for k in sorted(set(base) | set(new))
              if base.get(k) != new.get(k))


def _first_line_difference(base: str, new: str) -> str:
  for old_line, new_line in zip(base.splitlines() + [""], new.splitlines() + [""]):
    if old_line != new_line:
      return f"{old_line.strip() or '(end)'!r} in the base model, {new_line.strip() or '(end)'!r} now"
  return "they differ"


def match(base: Snapshot, new: Snapshot, base_model: Optional[str] = None) -> Decision:
  """The weights `new` starts from when `base` has the same architecture (the
  module docstring), else a fresh start with the first reason found."""
  def fresh(reason):
    return Decision(base_model, False, reason)

  if base.format != new.format:
    return fresh(f"the base model's format is {base.format}, this Trainer's {new.format}")
  for name in new.features:
    if name not in base.features:
      return fresh(f"feature {name} is not in the base model")
    if base.features[name] != new.features[name]:
      return fresh(f"feature {name}: {_first_difference(base.features[name], new.features[name])}")
  for name in base.features:
    if name not in new.features:
      return fresh(f"feature {name} of the base model is not in this model")
  for key in new.weights:
    if key not in base.weights:
      return fresh(f"weight {key} is not in the base model")
  for key in base.weights:
    if key not in new.weights:
      return fresh(f"the base model's weight {key} is not in this model")
  if base.tables != new.tables:
    return fresh("the embedding tables belong to other features: "
                 + _first_difference(base.tables, new.tables))

  weights, copied, remapped = {}, [], {}
  for key, value in new.weights.items():
    feature = new.tables.get(key)
    old = base.weights[key]
    if feature in new.vocabularies:
      try:
        weights[key], remapped[feature] = remap_rows(
            old, base.vocabularies.get(feature, []), value, new.vocabularies[feature],
            new.features[feature]["buckets"])
      except ValueError as e:
        return fresh(f"feature {feature}'s table: {e}")
    elif old.shape != value.shape:
      return fresh(f"{key} is {tuple(old.shape)} in the base model, {tuple(value.shape)} now")
    else:
      weights[key] = old
      copied.append(key)
  if base.structure != new.structure:
    return fresh("the model_config wires the same weights differently: "
                 + _first_line_difference(base.structure, new.structure))
  return Decision(base_model, True, None, weights, copied, remapped)


def assign(model: tf.keras.Model, weights: Dict[str, np.ndarray]) -> None:
  """Sets each of `model`'s weights to `weights[key]` (every key must be there)."""
  for key, variable in weight_keys(model):
    variable.assign(weights[key])


def start_from(base_model: Optional[str], model: tf.keras.Model, config,
               tf_transform_output) -> Decision:
  """Sets `model`'s weights from the base model's warm_start/ folder when the
  architecture matches (`match`); otherwise leaves its fresh weights. Never
  raises for a base model it can't use: the Decision says why."""
  if not base_model:
    return Decision(None, False, "no blessed model to start from yet")
  try:
    base = read_snapshot(snapshot_dir(base_model))
  except NoSnapshot as e:
    return Decision(base_model, False, str(e))
  decision = match(base, snapshot(model, config, tf_transform_output), base_model)
  if decision.warm:
    assign(model, decision.weights)
  return decision
