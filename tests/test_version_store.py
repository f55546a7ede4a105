"""The serving directory as a store of versions: whole publishes, retention,
rollback and restore (serving/version_store.py), the Pusher that uses them
(components/serving_pusher.py) and `aitm rollback`. Tiny SavedModels; the
served side is in tests/test_serving.py."""

import json
import os
import sys
from unittest import mock

import pytest
import tensorflow as tf

from cli.main import main as aitm
from serving import version_store
from serving.model_versions import list_versions, missing_parts, snapshot


def _saved_model(path, value=1.0):
  """A complete SavedModel: saved_model.pb, an asset, variables index and shard."""
  module = tf.Module()
  module.v = tf.Variable(value)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  asset_file = os.path.join(os.path.dirname(path), f"vocab-{value}.txt")
  with open(asset_file, "w") as f:
    f.write("a\nb\n")
  module.vocab = tf.saved_model.Asset(asset_file)
  module.f = tf.function(lambda x: {"y": x * module.v},
                         input_signature=[tf.TensorSpec([None], tf.float32)])
  tf.saved_model.save(module, path, signatures={"serving_default": module.f})
  return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  return _saved_model(str(tmp_path_factory.mktemp("model") / "export"))


def _names(base):
  return sorted(os.listdir(base))


def test_publish_renames_a_complete_copy_into_place(model, tmp_path):
  base = str(tmp_path / "aitm")
  path = version_store.publish(model, base, version=100)
  assert path == os.path.join(base, "100") and _names(base) == ["100"]
  assert missing_parts(path, snapshot(path)) == []
  # Versions only grow, past the clock if need be.
  assert version_store.next_version(base, now=50) == 101
  second = version_store.publish(model, base)
  assert int(os.path.basename(second)) > 100


def test_a_publish_that_fails_half_way_leaves_no_version(model, tmp_path):
  base = str(tmp_path / "aitm")
  version_store.publish(model, base, version=1)
  copied = []
  real_copy = tf.io.gfile.copy

  def copy_then_die(src, dst, overwrite=False):
    if copied:  # the second file: the push is killed mid-copy
      raise KeyboardInterrupt
    copied.append(dst)
    real_copy(src, dst, overwrite=overwrite)

  with mock.patch.object(tf.io.gfile, "copy", copy_then_die):
    with pytest.raises(KeyboardInterrupt):
      version_store.publish(model, base, version=2)
  assert copied and "/.staging-2-" in copied[0]   # it wrote only into the staging dir
  assert _names(base) == ["1"]                    # ... which is gone; version 1 untouched


def test_a_killed_pushs_staging_dir_is_removed_once_stale(model, tmp_path):
  base = tmp_path / "aitm"
  leftover = base / ".staging-7-1000000000-0123abcd"   # named when it was made
  leftover.mkdir(parents=True)
  (leftover / "saved_model.pb").write_bytes(b"partial")
  in_progress = base / ".staging-9-1999999990-4567abcd"
  in_progress.mkdir()
  version_store.publish(model, str(base), version=8, now=2_000_000_000)
  assert _names(base) == [".staging-9-1999999990-4567abcd", "8"]


def test_an_incomplete_model_is_not_published(model, tmp_path):
  broken = tmp_path / "broken"
  broken.mkdir()
  (broken / "saved_model.pb").write_bytes(open(os.path.join(model, "saved_model.pb"), "rb").read())
  with pytest.raises(version_store.VersionStoreError, match="variables/variables.index"):
    version_store.publish(str(broken), str(tmp_path / "aitm"))
  assert not (tmp_path / "aitm").exists() or _names(tmp_path / "aitm") == []


def test_prune_keeps_the_newest_complete_versions_and_never_an_incomplete_one(model, tmp_path):
  base = str(tmp_path / "aitm")
  for version in (1, 2, 3):
    version_store.publish(model, base, version=version)
  os.makedirs(os.path.join(base, "0"))   # someone's half copy: neither counted nor deleted
  version_store.publish(model, base, version=4, keep=2)
  assert _names(base) == ["0", "3", "4"]
  assert version_store.prune(base, 1) == [3]
  with pytest.raises(version_store.VersionStoreError, match="at least 1"):
    version_store.prune(base, 0)


def test_rollback_moves_the_newer_versions_aside_and_restore_brings_one_back(model, tmp_path):
  base = str(tmp_path / "aitm")
  for version in (10, 20, 30):
    version_store.publish(model, base, version=version)
  done = version_store.rollback(base)
  assert (done.served_before, done.served_now, done.moved) == (30, 20, [30])
  assert sorted(list_versions(base)) == [10, 20]
  assert sorted(version_store.rolled_back_versions(base)) == [30]
  # A new push is numbered above the rolled-back one.
  assert version_store.next_version(base, now=0) == 31

  done = version_store.rollback(base, to=10)
  assert done.moved == [20] and sorted(list_versions(base)) == [10]
  with pytest.raises(version_store.VersionStoreError, match="only version 10.*rolled back "
                     "earlier: 20, 30"):
    version_store.rollback(base)
  with pytest.raises(version_store.VersionStoreError, match="not a complete version"):
    version_store.rollback(base, to=99)
  version_store.restore(base, 30)
  assert sorted(list_versions(base)) == [10, 30]
  with pytest.raises(version_store.VersionStoreError, match="version 5 is not in"):
    version_store.restore(base, 5)


def test_cli_rollback_and_restore(model, tmp_path, capsys):
  serving = tmp_path / "serving"
  for version in (1, 2):
    version_store.publish(model, str(serving / "m"), version=version)
  args = ["rollback", "--serving-dir", str(serving), "--model-name", "m"]
  aitm(args)
  out = capsys.readouterr().out
  assert "version 1 is now the newest" in out and "(was 2)" in out and "rolled_back" in out
  assert _names(serving / "m") == ["1", "rolled_back"]
  with pytest.raises(SystemExit, match="holds only version 1"):
    aitm(args)
  aitm(args + ["--restore", "2"])
  assert _names(serving / "m") == ["1", "2", "rolled_back"]
  with pytest.raises(SystemExit):
    aitm(args + ["--to", "1", "--restore", "2"])   # one or the other


# --- the Pusher ----------------------------------------------------------------

def _push(model_dir, base, tmp_path, blessed=True, keep=None):
  from tfx.types import standard_artifacts

  from components.serving_pusher import KEEP_VERSIONS_KEY, Executor
  model = standard_artifacts.Model()
  model.uri = os.path.dirname(model_dir)  # the export is <uri>/Format-Serving
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / "blessing")
  blessing.set_int_custom_property("blessed", int(blessed))
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / f"pushed-{len(os.listdir(tmp_path))}")
  destination = {"filesystem": {"base_directory": base}}
  with mock.patch.object(sys, "argv", sys.argv[:1]):
    Executor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
                  {"push_destination": json.dumps(destination),
                   "custom_config": json.dumps({KEEP_VERSIONS_KEY: keep})})
  return pushed


def test_the_pusher_publishes_whole_keeps_n_and_records_the_version(tmp_path):
  models = [_saved_model(str(tmp_path / f"model{i}" / "Format-Serving"), float(i))
            for i in range(3)]
  model_dir = models[-1]
  base = str(tmp_path / "serving" / "aitm")
  artifacts = [_push(m, base, tmp_path, keep=2) for m in models]
  versions = sorted(list_versions(base))
  assert len(versions) == 2 and _names(base) == [str(v) for v in versions]  # no staging left
  last = artifacts[-1]
  assert last.get_int_custom_property("pushed") == 1
  assert last.get_string_custom_property("pushed_version") == str(versions[-1])
  assert last.get_string_custom_property("pushed_destination") == os.path.join(
      base, str(versions[-1]))
  assert os.path.exists(os.path.join(last.uri, "saved_model.pb"))  # the archive copy

  refused = _push(model_dir, base, tmp_path, blessed=False, keep=1)
  assert refused.get_int_custom_property("pushed") == 0
  assert sorted(list_versions(base)) == versions   # an unblessed model changes nothing


def test_a_push_that_fails_before_publishing_serves_nothing(tmp_path):
  """The archive copy into the artifact fails (a full disk): no version is served that
  ML Metadata won't record. Pruning that fails after the version is published leaves
  the push standing. A retried push of the same model finds its version."""
  from components import serving_pusher
  model_dir = _saved_model(str(tmp_path / "model" / "Format-Serving"))
  base = str(tmp_path / "serving" / "aitm")

  def disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")
  with mock.patch.object(serving_pusher.io_utils, "copy_dir", disk_full):
    with pytest.raises(OSError, match="No space left"):
      _push(model_dir, base, tmp_path)
  assert not os.path.exists(base) or list_versions(base) == {}

  with mock.patch.object(version_store, "prune", disk_full):
    pushed = _push(model_dir, base, tmp_path, keep=1)
  assert pushed.get_int_custom_property("pushed") == 1
  version = pushed.get_string_custom_property("pushed_version")
  again = _push(model_dir, base, tmp_path, keep=1)
  assert again.get_string_custom_property("pushed_version") == version
  assert sorted(list_versions(base)) == [int(version)]


def test_an_object_store_push_killed_half_way_serves_no_partial_version(model, tmp_path):
  """On an object store (TF's ram:// here), a push killed while staging leaves nothing
  under the base path; one killed while copying the staged model into place leaves a
  version without saved_model.pb (written last), which no server loads; the next push
  an hour later removes both leftovers. Two pushes in one second stage apart."""
  base = f"ram://{tmp_path.name}/serving/aitm"
  real_copy = tf.io.gfile.copy

  class Killed(BaseException):
    pass

  def dies_after(n, into):
    copied = []

    def copy(src, dst, overwrite=False):
      if into in dst and len(copied) >= n:
        raise Killed
      copied.append(dst)
      real_copy(src, dst, overwrite=overwrite)
    return copy

  def killed(into, version, now):
    with mock.patch.object(tf.io.gfile, "copy", dies_after(2, into)), \
        mock.patch.object(tf.io.gfile, "rmtree", lambda path: None):  # no cleanup: a kill
      with pytest.raises(Killed):
        version_store.publish(model, base, version=version, now=now)

  killed(".staging-", 1000, now=1000)
  assert tf.io.gfile.listdir(base) == []
  assert len(tf.io.gfile.listdir(version_store.staging_root(base))) == 1
  killed(f"aitm/{1001}/", 1001, now=1001)
  assert list_versions(base) == {1001: os.path.join(base, "1001")}
  assert "saved_model.pb" in missing_parts(os.path.join(base, "1001"),
                                           snapshot(os.path.join(base, "1001")))
  path = version_store.publish(model, base, version=9000, now=9000)
  assert sorted(list_versions(base)) == [9000] and path == os.path.join(base, "9000")
  assert missing_parts(path, snapshot(path)) == []
  root = version_store.staging_root(base)
  assert not tf.io.gfile.isdir(root) or tf.io.gfile.listdir(root) == []

  staged = []
  real_walk_copy = version_store._copy_tree

  def record(source, target):
    staged.append(target)
    real_walk_copy(source, target)
  with mock.patch.object(version_store, "_copy_tree", record):
    version_store.publish(model, base, version=9001, now=9001)
    version_store.publish(model, base, version=9002, now=9001)
  stagings = [t for t in staged if ".staging-" in t]
  assert len(stagings) == 2 and len(set(stagings)) == 2
