"""Which SavedModel versions under a model's base path may be served.

TF Serving's file-system source lists the numeric subdirectories of
`base_path` (`<serving_dir>/<model_name>/<version>`, the Pusher's layout) and
its version policy picks the aspired ones: the newest N (`latest`, the
default with N=1), `all`, or `specific` versions. This module does the same,
and adds the check TF Serving leaves to the writer: a version is only offered
once it is complete and has stopped changing, so a copy in progress is never
loaded:

* complete: `saved_model.pb` parses, every asset its MetaGraph names exists,
  and `variables/variables.index` and every `variables.data-K-of-N` shard exist;
* settled: the same files with the same sizes and modification times as at the
  previous poll (a pusher that copies file by file changes one or the other
  between polls; timestamps alone aren't enough, copies may preserve them).

Paths go through tf.io.gfile, so base paths on GCS or S3 work as in TF Serving.
"""

import dataclasses
import os
import re
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.defaults import LATEST_VERSIONS

_SHARD = re.compile(r"variables\.data-(\d+)-of-(\d+)$")

# (relative path, size, mtime in ns) of every file of a version directory.
Snapshot = FrozenSet[Tuple[str, int, int]]


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
  """TF Serving's ServableVersionPolicy: `latest` N, `all`, or `specific` versions."""
  latest: Optional[int] = LATEST_VERSIONS
  specific: FrozenSet[int] = frozenset()

  @classmethod
  def from_proto(cls, proto) -> "VersionPolicy":
    """The policy of a ModelConfig's `model_version_policy` (ServableVersionPolicy);
    unset: the default, `latest` LATEST_VERSIONS."""
    which = proto.WhichOneof("policy_choice")
    if which == "all":
      return cls(latest=None)
    if which == "specific":
      return cls(latest=None, specific=frozenset(proto.specific.versions))
    if which == "latest":
      return cls(latest=proto.latest.num_versions or 1)
    return cls()

  def __post_init__(self):
    if self.latest is not None and self.latest < 1:
      raise ValueError(f"a latest-versions policy serves at least 1 version, got "
                       f"{self.latest}")

  @property
  def is_all(self) -> bool:
    """Whether every version is served (the `all` policy)."""
    return self.latest is None and not self.specific

  def select(self, versions: Iterable[int]) -> List[int]:
    """The aspired versions among `versions`, newest first."""
    ordered = sorted(set(versions), reverse=True)
    if self.specific:
      return [v for v in ordered if v in self.specific]
    return ordered if self.latest is None else ordered[:self.latest]


@dataclasses.dataclass(frozen=True)
class ModelSource:
  """One served model: TF Serving's ModelConfig (name, base_path, policy, labels)."""
  name: str
  base_path: str
  policy: VersionPolicy = VersionPolicy()
  labels: Tuple[Tuple[str, int], ...] = ()

  @property
  def label_map(self) -> Dict[str, int]:
    """The version labels as {label: version}."""
    return dict(self.labels)


def read_model_config_file(path: str) -> List[ModelSource]:
  """TF Serving's `--model_config_file` (ModelServerConfig, protobuf text format)."""
  from google.protobuf import text_format
  config = model_server_config_pb2.ModelServerConfig()
  with tf.io.gfile.GFile(path) as f:
    try:
      text_format.Parse(f.read(), config)
    except text_format.ParseError as e:
      raise ValueError(f"{path}: not a TF Serving ModelServerConfig: {e}") from e
  if not config.HasField("model_config_list"):
    raise ValueError(f"{path}: no model_config_list (only file-system model lists are "
                     "supported)")
  sources = []
  for model in config.model_config_list.config:
    if not model.name or not model.base_path:
      raise ValueError(f"{path}: every config needs a name and a base_path")
    if model.model_platform not in ("", "tensorflow"):
      raise ValueError(f"{path}: model {model.name}: platform {model.model_platform!r} "
                       "is not served here (only 'tensorflow')")
    base_path = model.base_path
    if not re.match(r"^[a-z0-9]+://", base_path) and not os.path.isabs(base_path):
      base_path = os.path.join(os.path.dirname(os.path.abspath(path)), base_path)
    sources.append(ModelSource(
        name=model.name, base_path=base_path,
        policy=VersionPolicy.from_proto(model.model_version_policy),
        labels=tuple(sorted(model.version_labels.items()))))
  names = [s.name for s in sources]
  if len(set(names)) != len(names):
    raise ValueError(f"{path}: a model name appears twice: {names}")
  return sources


def list_versions(base_path: str) -> Dict[int, str]:
  """{version: directory} for the numeric subdirectories of base_path."""
  if not tf.io.gfile.isdir(base_path):
    return {}
  found = {}
  for entry in tf.io.gfile.listdir(base_path):
    name = entry.rstrip("/")
    if name.isdigit():
      path = os.path.join(base_path, name)
      if tf.io.gfile.isdir(path):
        found[int(name)] = path
  return found


def snapshot(version_dir: str) -> Snapshot:
  """(relative path, size, mtime in ns) of every file under version_dir; a file removed
  while it is walked is left out."""
  files = []
  for root, _, names in tf.io.gfile.walk(version_dir):
    for name in names:
      path = os.path.join(root, name)
      try:
        stat = tf.io.gfile.stat(path)
      except tf.errors.NotFoundError:  # removed while we looked: not settled
        continue
      files.append((os.path.relpath(path, version_dir), stat.length, stat.mtime_nsec))
  return frozenset(files)


def missing_parts(version_dir: str, files: Snapshot) -> List[str]:
  """What a complete SavedModel in version_dir still lacks ([] when complete)."""
  present = {path for path, _, _ in files}
  if "saved_model.pb" not in present:
    return ["saved_model.pb"]
  proto = saved_model_pb2.SavedModel()
  try:
    with tf.io.gfile.GFile(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
      proto.ParseFromString(f.read())
  except Exception:  # noqa: BLE001 - a truncated protobuf fails in several ways
    return ["saved_model.pb (does not parse yet)"]
  missing = []
  for meta_graph in proto.meta_graphs:
    for asset in meta_graph.asset_file_def:
      path = os.path.join("assets", asset.filename)
      if path not in present:
        missing.append(path)
  index = os.path.join("variables", "variables.index")
  shards = [m for m in (_SHARD.search(p) for p in present if p.startswith("variables"))
            if m]
  if index not in present:
    missing.append(index)
  if shards:
    total = int(shards[0].group(2))
    have = {int(m.group(1)) for m in shards}
    missing += [f"variables/variables.data-{k:05d}-of-{total:05d}"
                for k in range(total) if k not in have]
  elif index in present:
    missing.append("variables/variables.data-*")
  return sorted(set(missing))
