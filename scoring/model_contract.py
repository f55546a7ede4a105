"""What a `--model` path means and what the SavedModel there takes and returns.

`--model` is a pushed version directory (`<base>/<version>/`, holding
`saved_model.pb`) or the model's base path, which means its newest complete version
(serving/version_store.py: the one TF Serving's `latest` policy serves). The
contract is read from `saved_model.pb` alone, so the command checks the data against
it before any worker loads the model: the raw columns and their types from
`serving_raw`'s inputs, the task towers from `serving_default`'s outputs.
"""

import dataclasses
import os
from typing import Dict, Tuple

from serving import defaults, request_rows, version_store
from serving.model_versions import missing_parts, snapshot


class ModelError(ValueError):
  """A --model path that holds no complete SavedModel with the project's signatures."""


@dataclasses.dataclass(frozen=True)
class ModelContract:
  """One SavedModel version's scoring contract."""
  version_dir: str
  kinds: Dict[str, str]         # serving_raw's inputs: column -> 'string' | 'int' | 'float'
  outputs: Tuple[str, ...]      # the task towers, e.g. ('ctr', 'cvr')

  @property
  def version(self) -> str:
    """The version's directory name (the Pusher's version number)."""
    return os.path.basename(os.path.normpath(self.version_dir))


def resolve_version(path: str) -> str:
  """The SavedModel version directory `path` means: itself when it holds saved_model.pb,
  else its newest complete numeric version. ModelError saying what is wrong."""
  if "://" in path:
    raise ModelError(f"--model {path}: a directory of this machine's file system (or a "
                     "volume mounted on it); remote paths are not read")
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise ModelError(f"--model {path} is not a directory")
  if os.path.exists(os.path.join(path, "saved_model.pb")):
    missing = missing_parts(path, snapshot(path))
    if missing:
      raise ModelError(f"--model {path} is not a complete SavedModel: it lacks "
                       f"{', '.join(missing)}")
    return path
  versions = version_store.complete_versions(path)
  if not versions:
    raise ModelError(f"--model {path} holds neither saved_model.pb nor a complete "
                     "numeric version directory (a pushed model's base path)")
  return versions[max(versions)]


def read_contract(version_dir: str) -> ModelContract:
  """The contract of the SavedModel in version_dir (its serving meta graph's
  `serving_raw` and `serving_default` signatures). ModelError when either is missing."""
  from tensorflow.core.protobuf import saved_model_pb2
  proto = saved_model_pb2.SavedModel()
  with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
    proto.ParseFromString(f.read())
  serving = [g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags]
  signatures = serving[0].signature_def if serving else {}
  wanted = (defaults.RAW_SIGNATURE, defaults.EXAMPLES_SIGNATURE)
  absent = [name for name in wanted if name not in signatures]
  if absent:
    raise ModelError(f"the SavedModel in {version_dir} has no {' or '.join(absent)} "
                     f"signature (it has: {', '.join(sorted(signatures)) or 'none'}); batch "
                     "scoring reads the project's export contract (docs/serving.md)")
  raw, examples = (signatures[name] for name in wanted)
  outputs = tuple(sorted(examples.outputs))
  if sorted(raw.outputs) != list(outputs):
    raise ModelError(f"the SavedModel in {version_dir}: serving_raw returns "
                     f"{sorted(raw.outputs)}, serving_default {list(outputs)}")
  return ModelContract(version_dir, request_rows.column_kinds(raw), outputs)
