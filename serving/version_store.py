"""A model's serving directory, `<serving_dir>/<model_name>`, as a store of versions:
publish a version whole, keep the newest few, roll back.

TF Serving and `aitm serve` serve the numeric subdirectories of that base path
under a `latest` version policy (kubeflow/serving/models.config), so what is
served is decided by which numeric directories exist:

* `publish` copies a SavedModel into a staging directory named after the
  version, the time and a random token (two publishes never share one), checks
  that it is complete (serving.model_versions), and moves it to `<version>`.
  On a local or mounted filesystem the staging directory is
  `<base>/.staging-...` (not numeric: no server looks at it) and the move is
  an atomic rename: a server sees no new version or a complete one. On an
  object store (gs://, s3://, TF's ram://), which has no atomic rename, it is
  staged outside the base path, in `.<model>-staging/` beside it, and copied into
  `<version>` with `saved_model.pb` last, the order TF Serving's loader relies
  on; `aitm serve` loads only complete versions. A push killed half-way leaves
  a staging directory, or on an object store possibly an incomplete version
  without `saved_model.pb`; the next publish removes both once an hour old.
  Versions only grow: a new one is numbered above every existing one, rolled-
  back ones included. The version records the model it was copied from
  (`aitm_pushed_from.txt`, a file no server reads): the Pusher's publish (`once`) of a model already published returns
  that version instead of a new one, so a push retried after a crash between
  publishing and ML Metadata's record doesn't serve the model twice.
* `prune` keeps the newest `keep` complete versions and deletes older ones,
  called only after a newer version is complete; an incomplete directory is
  never counted nor deleted.
* `rollback` moves the versions newer than the target into `rolled_back/`
  (not numeric, so both servers unload them and the target becomes the newest
  served); `restore` moves one back. Nothing is deleted.
"""

import dataclasses
import os
import re
import time
import uuid
from typing import Dict, List, Optional

import tensorflow as tf

from serving.model_versions import list_versions, missing_parts, snapshot

STAGING_PREFIX = ".staging-"
# <prefix><version>-<unix seconds>-<token>: when a staging directory was made, for any
# filesystem (object stores keep no directory times).
_STAGING = re.compile(r"^\.staging-(\d+)-(\d+)-[0-9a-f]+$")
ROLLED_BACK = "rolled_back"
# Where the model a version was copied from is recorded, inside the version (servers
# ignore files a SavedModel doesn't name).
PUSHED_FROM = "aitm_pushed_from.txt"
# A staging directory (or, on an object store, an incomplete version) this old is a
# killed push's leftover, not one in progress.
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
  """{version: directory} of the versions rollback moved into `rolled_back/`."""
  return list_versions(os.path.join(base_path, ROLLED_BACK))


def next_version(base_path: str, now: Optional[float] = None) -> int:
  """The Pusher's UNIX-timestamp version, or one above the newest existing one
  (served or rolled back) when that is not older: versions never repeat or go back."""
  existing = list(list_versions(base_path)) + list(rolled_back_versions(base_path))
  version = int(time.time() if now is None else now)
  return max([version] + [v + 1 for v in existing])


def _copy_tree(source: str, target: str) -> None:
  """Copies source into target, saved_model.pb last. Paths are joined, not normalized:
  os.path.normpath would turn gs://bucket into gs:/bucket."""
  last = []
  for root, _, names in tf.io.gfile.walk(source):
    relative = os.path.relpath(root, source)
    directory = target if relative == "." else os.path.join(target, relative)
    tf.io.gfile.makedirs(directory)
    for name in names:
      pair = (os.path.join(root, name), os.path.join(directory, name))
      if relative == "." and name == "saved_model.pb":
        last.append(pair)
      else:
        tf.io.gfile.copy(*pair, overwrite=True)
  for pair in last:
    tf.io.gfile.copy(*pair, overwrite=True)


def staging_root(base_path: str) -> str:
  """Where a publish stages its copy: inside the base path where a directory rename is
  atomic, beside it on an object store."""
  if not _is_object_store(base_path):
    return base_path
  # A sibling whose name doesn't start with the base path's: object stores list by prefix.
  parent, name = base_path.rstrip("/").rsplit("/", 1)
  return f"{parent}/.{name}-staging"


def _remove_leftovers(base_path: str, now: float) -> None:
  """Staging directories, and on an object store incomplete versions, of pushes killed
  more than STALE_STAGING_SECONDS ago."""
  root = staging_root(base_path)
  if tf.io.gfile.isdir(root):
    for entry in tf.io.gfile.listdir(root):
      match = _STAGING.match(entry.rstrip("/"))
      if match and now - int(match.group(2)) > STALE_STAGING_SECONDS:
        _remove_tree(os.path.join(root, entry.rstrip("/")))
  if _is_object_store(base_path):
    for version, path in list_versions(base_path).items():
      if now - version > STALE_STAGING_SECONDS and missing_parts(path, snapshot(path)):
        _remove_tree(path)


def _remove_tree(path: str) -> None:
  """rmtree that also works where a directory is only a prefix of its files (object
  stores, ram://): what rmtree can't remove is removed file by file."""
  try:
    tf.io.gfile.rmtree(path)
  except tf.errors.NotFoundError:
    for root, _, names in list(tf.io.gfile.walk(path)):
      for name in names:
        tf.io.gfile.remove(os.path.join(root, name))


def _pushed_from(version_dir: str) -> Optional[str]:
  path = os.path.join(version_dir, PUSHED_FROM)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return f.read().strip()


def _source(model_dir: str) -> str:
  """How a version records its model's directory: as given, without a trailing slash
  (not normpath'd: that would turn gs://bucket into gs:/bucket)."""
  return model_dir.rstrip("/")


def published_version(base_path: str, model_dir: str) -> Optional[str]:
  """The complete version copied from model_dir, if one is served already."""
  source = _source(model_dir)
  for version, path in sorted(complete_versions(base_path).items(), reverse=True):
    if _pushed_from(path) == source:
      return path
  return None


def publish(model_dir: str, base_path: str, keep: Optional[int] = None,
            version: Optional[int] = None, now: Optional[float] = None,
            once: bool = False) -> str:
  """Copies the SavedModel in model_dir to `<base_path>/<version>`, whole (see the
  module docstring), then prunes to the newest `keep` versions (None: keep all).
  Returns the version's directory. With `once` (the Pusher, whose model
  directories are never reused), a complete version already copied from
  model_dir is returned instead of a new copy."""
  missing = missing_parts(model_dir, snapshot(model_dir))
  if missing:
    raise VersionStoreError(f"{model_dir} is not a complete SavedModel: missing "
                            f"{', '.join(missing)}")
  if keep is not None and keep < 1:
    raise VersionStoreError(f"keep must be at least 1, got {keep}")
  tf.io.gfile.makedirs(base_path)
  now = time.time() if now is None else now
  _remove_leftovers(base_path, now)
  existing = published_version(base_path, model_dir) if once else None
  if existing is not None:
    return existing
  version = version or next_version(base_path, now)
  target = os.path.join(base_path, str(version))
  if tf.io.gfile.exists(target):
    raise VersionStoreError(f"version {version} already exists in {base_path}")
  staging = os.path.join(staging_root(base_path),
                         f"{STAGING_PREFIX}{version}-{int(now)}-{uuid.uuid4().hex[:12]}")
  try:
    _copy_tree(model_dir, staging)
    with tf.io.gfile.GFile(os.path.join(staging, PUSHED_FROM), "w") as f:
      f.write(_source(model_dir) + "\n")
    missing = missing_parts(staging, snapshot(staging))
    if missing:
      raise VersionStoreError(f"the copy in {staging} lacks {', '.join(missing)}")
    if _is_object_store(base_path):
      _copy_tree(staging, target)
      _remove_tree(staging)
    else:
      tf.io.gfile.rename(staging, target)
  except BaseException:
    # A failed or interrupted copy leaves nothing behind (a killed one: staging,
    # removed by a later publish).
    if tf.io.gfile.exists(staging):
      _remove_tree(staging)
    if _is_object_store(base_path) and tf.io.gfile.exists(target):
      _remove_tree(target)
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
    _remove_tree(versions[version])
  return doomed


@dataclasses.dataclass(frozen=True)
class Rollback:
  """What a rollback did: the newest served version before and after, and which
  versions it moved, to where."""
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
