"""The Pusher, publishing each blessed model whole and keeping the newest few versions.

TFX's Pusher copies into `<base_directory>/<version>` file by file, so a push
killed half-way leaves a version directory TF Serving would try to load, and
it never deletes old versions. This one (same inputs, outputs and
PushDestination, so the Kubeflow `push_destination` runtime parameter works
as before) publishes through serving.version_store: staged and renamed into
place, numbered above every existing version, and then the complete versions
beyond the newest `keep_versions` are deleted. The artifact records the
version and destination as TFX's does. The steps are ordered so that any
failure leaves serving and ML Metadata agreeing: the archive copy into the
artifact first (a failure: nothing served, the run failed), then the version
(a retry finds it rather than publishing it again), then the pruning (a
failure is a warning: the push stands).
"""

from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.pusher import component as pusher_component
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, json_utils, proto_utils

from serving import version_store

# Pusher(custom_config={KEEP_VERSIONS_KEY: n}); left out: every version is kept.
KEEP_VERSIONS_KEY = "keep_versions"


class Executor(pusher_executor.Executor):
  """TFX's Pusher executor, publishing through serving.version_store (module docstring)."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """Publishes a blessed model as a new version under the filesystem destination,
    deletes the versions beyond `keep_versions` and records the push; a model that
    is not blessed is marked not pushed. ValueError for another destination or
    versioning."""
    self._log_startup(input_dict, output_dict, exec_properties)
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(model_push)
      return
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
                              destination)
    if destination.WhichOneof("destination") != "filesystem":
      raise ValueError("the serving Pusher pushes to a filesystem destination only, got "
                       f"{destination.WhichOneof('destination')!r}")
    if destination.filesystem.versioning not in (
        pusher_pb2.Versioning.AUTO,
        pusher_pb2.Versioning.UNIX_TIMESTAMP):
      raise ValueError("the serving Pusher numbers versions by UNIX timestamp (versioning "
                       "AUTO or UNIX_TIMESTAMP)")
    custom_config = json_utils.loads(
        exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {}
    keep = custom_config.get(KEEP_VERSIONS_KEY)
    base = destination.filesystem.base_directory
    model_path = self.GetModelPath(input_dict)
    # First the archive copy in the artifact, as TFX's Pusher keeps: a failure here
    # (a full disk) must come before anything is served that ML Metadata won't know.
    io_utils.copy_dir(model_path, model_push.uri)
    # Then the version; a retry of a push that published but crashed before ML
    # Metadata recorded it finds that version instead of serving the model twice.
    serving_path = version_store.publish(model_path, base, once=True)
    version = serving_path.rstrip("/").rsplit("/", 1)[-1]
    deleted = []
    if keep is not None:
      try:
        deleted = version_store.prune(base, keep)
      except Exception as e:  # noqa: BLE001 - the push stands; old versions stay
        print(f"  [Pusher] WARNING: version {version} is published, but deleting the "
              f"versions beyond the newest {keep} failed: {type(e).__name__}: {e}",
              flush=True)
    print(f"  [Pusher] published version {version} to {base}"
          + (f"; deleted {', '.join(map(str, deleted))} (keeping the newest {keep})"
             if deleted else ""), flush=True)
    self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
    logging.info("Model pushed to %s.", serving_path)


class Pusher(pusher_component.Pusher):
  """tfx.components.Pusher with the executor above (node id `Pusher`, as before)."""

  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
