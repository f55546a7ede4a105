"""A model's serving directory, `<serving_dir>/<model_name>`, as a store of versions:
publish a version whole, keep the newest few, roll back.

TF Serving and `aitm serve` serve the numeric subdirectories of that base path
under a `latest` version policy (kubeflow/serving/models.config), so what is
served is decided by which numeric directories exist:

* `publish` copies a SavedModel into `.staging-<version>` (not numeric: no
  server looks at it), checks that it is complete (serving.model_versions), and
  renames it to `<version>`. On a local or mounted filesystem the rename is
  atomic: a server sees no new version or a complete one, and a push killed
  half-way leaves only a staging directory, removed by the next publish. On
  an object store (gs://, s3://), where there is no directory rename, it
  copies into `<version>` with `saved_model.pb` last, the TFX Pusher's order,
  which TF Serving's loader relies on. Versions only grow: a new one is
  numbered above every existing one, rolled-back ones included.
* `prune` keeps the newest `keep` complete versions and deletes older ones,
  called only after a newer version is complete; an incomplete directory is
  never counted nor deleted.
* `rollback` moves the versions newer than the target into `rolled_back/`
  (not numeric, so both servers unload them and the target becomes the newest
  served); `restore` moves one back. Nothing is deleted.
"""

import dataclasses
import os
import time
from typing import Dict, List, Optional

import tensorflow as tf

from serving.model_versions import list_versions, missing_parts, snapshot

STAGING_PREFIX = ".staging-"
ROLLED_BACK = "rolled_back"
# A staging directory this old is a killed push's leftover, not one in progress.
STALE_STAGING_SECONDS = 3600


class VersionStoreError(ValueError):
  """A publish, rollback or restore that can't be done; nothing was changed."""


def _is_object_store(path: str) -> bool:
  return "://" in path and not path.startswith("file://")


def complete_versions(base_path: str) -> Dict[int, str]:
  """{version: directory} of the complete numeric versions under base_path."""
  return {v: path for v, path in list_versions(base_path).items()
          if not missing_parts(path, snapshot(path))}


def rolled_back_versions(base_path: str) -> Dict[int, str]:
  return list_versions(os.path.join(base_path, ROLLED_BACK))


def next_version(base_path: str, now: Optional[float] = None) -> int:
  """The Pusher's UNIX-timestamp version, or one above the newest existing one
  (served or rolled back) when that is not older: versions never repeat or go back."""
  existing = list(list_versions(base_path)) + list(rolled_back_versions(base_path))
  version = int(time.time() if now is None else now)
  return max([version] + [v + 1 for v in existing])


def _copy_tree(source: str, target: str) -> None:
  """Copies source into target, saved_model.pb last."""
  last = []
  for root, _, names in tf.io.gfile.walk(source):
    relative = os.path.relpath(root, source)
    tf.io.gfile.makedirs(os.path.normpath(os.path.join(target, relative)))
    for name in names:
      pair = (os.path.join(root, name), os.path.normpath(os.path.join(target, relative, name)))
      if relative == "." and name == "saved_model.pb":
        last.append(pair)
      else:
        tf.io.gfile.copy(*pair, overwrite=True)
  for pair in last:
    tf.io.gfile.copy(*pair, overwrite=True)


def _remove_stale_staging(base_path: str, now: float) -> None:
  for entry in tf.io.gfile.listdir(base_path):
    name = entry.rstrip("/")
    path = os.path.join(base_path, name)
    if name.startswith(STAGING_PREFIX):
      newest = max([mtime for _, _, mtime in snapshot(path)] or [0]) / 1e9
      if now - newest > STALE_STAGING_SECONDS:
        tf.io.gfile.rmtree(path)


def publish(model_dir: str, base_path: str, keep: Optional[int] = None,
            version: Optional[int] = None) -> str:
  """Copies the SavedModel in model_dir to `<base_path>/<version>`, whole (see the
  module docstring), then prunes to the newest `keep` versions (None: keep all).
  Returns the new version's directory."""
  missing = missing_parts(model_dir, snapshot(model_dir))
  if missing:
    raise VersionStoreError(f"{model_dir} is not a complete SavedModel: missing "
                            f"{', '.join(missing)}")
  if keep is not None and keep < 1:
    raise VersionStoreError(f"keep must be at least 1, got {keep}")
  tf.io.gfile.makedirs(base_path)
  now = time.time()
  version = version or next_version(base_path, now)
  target = os.path.join(base_path, str(version))
  if tf.io.gfile.exists(target):
    raise VersionStoreError(f"version {version} already exists in {base_path}")
  if _is_object_store(base_path):
    _copy_tree(model_dir, target)
  else:
    _remove_stale_staging(base_path, now)
    staging = os.path.join(base_path, f"{STAGING_PREFIX}{version}")
    try:
      _copy_tree(model_dir, staging)
      missing = missing_parts(staging, snapshot(staging))
      if missing:
        raise VersionStoreError(f"the copy in {staging} lacks {', '.join(missing)}")
      tf.io.gfile.rename(staging, target)
    except BaseException:
      if tf.io.gfile.exists(staging):
        tf.io.gfile.rmtree(staging)
      raise
  if keep is not None:
    prune(base_path, keep)
  return target


def prune(base_path: str, keep: int) -> List[int]:
  """Deletes the complete versions older than the newest `keep` complete ones;
  returns the deleted versions. Incomplete directories are left alone."""
  if keep < 1:
    raise VersionStoreError(f"keep must be at least 1, got {keep}")
  versions = complete_versions(base_path)
  doomed = sorted(versions)[:-keep]
  for version in doomed:
    tf.io.gfile.rmtree(versions[version])
  return doomed


@dataclasses.dataclass(frozen=True)
class Rollback:
  served_before: int
  served_now: int
  moved: List[int]            # versions moved into rolled_back/
  rolled_back_dir: str


def rollback(base_path: str, to: Optional[int] = None) -> Rollback:
  """Makes `to` (default: the newest complete version before the newest one) the
  newest served version by moving every version newer than it into
  `rolled_back/`. Refuses, changing nothing, when there is nothing to roll back
  to or `to` is not a complete version older than the newest."""
  versions = complete_versions(base_path)
  if not versions:
    raise VersionStoreError(f"{base_path} holds no complete version")
  newest = max(versions)
  if to is None:
    older = [v for v in versions if v < newest]
    if not older:
      raise VersionStoreError(f"{base_path} holds only version {newest}: nothing to roll "
                              "back to" + _rolled_back_note(base_path))
    to = max(older)
  elif to not in versions:
    raise VersionStoreError(
        f"version {to} is not a complete version in {base_path} (complete: "
        f"{', '.join(map(str, sorted(versions)))})" + _rolled_back_note(base_path))
  elif to == newest:
    raise VersionStoreError(f"version {to} is already the newest served version")
  target_dir = os.path.join(base_path, ROLLED_BACK)
  # Every numeric directory above the target, complete or not: none may be served.
  moved = sorted(v for v in list_versions(base_path) if v > to)
  clash = sorted(set(moved) & set(rolled_back_versions(base_path)))
  if clash:
    raise VersionStoreError(f"{target_dir} already holds version(s) "
                            f"{', '.join(map(str, clash))}: move them away first")
  tf.io.gfile.makedirs(target_dir)
  for version in reversed(moved):  # newest first: never an older one served alone above
    tf.io.gfile.rename(os.path.join(base_path, str(version)),
                       os.path.join(target_dir, str(version)))
  return Rollback(served_before=newest, served_now=to, moved=moved, rolled_back_dir=target_dir)


def restore(base_path: str, version: int) -> str:
  """Moves a rolled-back version back to `<base_path>/<version>`; returns its path."""
  rolled = rolled_back_versions(base_path)
  if version not in rolled:
    raise VersionStoreError(f"version {version} is not in {os.path.join(base_path, ROLLED_BACK)}"
                            + (f" (there: {', '.join(map(str, sorted(rolled)))})"
                               if rolled else " (empty)"))
  target = os.path.join(base_path, str(version))
  if tf.io.gfile.exists(target):
    raise VersionStoreError(f"{target} exists already")
  tf.io.gfile.rename(rolled[version], target)
  return target


def _rolled_back_note(base_path: str) -> str:
  rolled = rolled_back_versions(base_path)
  return (f"; rolled back earlier: {', '.join(map(str, sorted(rolled)))} "
          "(aitm rollback --restore VERSION)" if rolled else "")
