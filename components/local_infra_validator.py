"""Infra validation before push on a machine without a container engine: the candidate
is loaded by a fresh model server and must answer its own warmup requests.

TFX's InfraValidator starts `tensorflow/serving` in Docker or on Kubernetes
(the Kubeflow pipeline runs it: components/kubernetes_infra_validator.py).
Locally there is neither, so this component does the same with the project's
server: it copies the candidate SavedModel into a temporary base path as
version 1, starts `aitm serve`'s server in a process of its own
(serving/server_process.py), waits until GetModelStatus says AVAILABLE (the
server replays the warmup requests while loading, as TF Serving does), then
sends every warmup request in the model (models/warmup_requests.py) over
gRPC, and blesses the model only if every one is answered. A model that is
not a complete SavedModel, fails to load, fails a warmup request, or doesn't
load within `max_loading_seconds` is not blessed, and TFX's Pusher
(components/serving_pusher.py inherits its CheckBlessing) pushes nothing.

Its output is TFX's standard `InfraBlessing`, marked as TFX's InfraValidator
marks it (custom property `blessed` 1 or 0, an empty INFRA_BLESSED or
INFRA_NOT_BLESSED file), plus a `reason` custom property (also the file's
content) saying what was checked or what failed. With a `model_blessing`
input, a model the Evaluator didn't bless is not started at all.
"""

import os
import tempfile
import time
from typing import Any, Dict, List, NamedTuple

from tfx import types
from tfx.components.util import model_utils
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, path_utils

from models.warmup_requests import WarmupFileError, read_requests
from serving.client import ServingClient, ServingError
from serving.model_versions import missing_parts, snapshot
from serving.server_process import ServerProcess, ServerProcessError

MODEL_KEY, MODEL_BLESSING_KEY, BLESSING_KEY = "model", "model_blessing", "blessing"
MODEL_NAME_KEY, MAX_LOADING_SECONDS_KEY = "model_name", "max_loading_seconds"
# TFX's InfraValidator's names (tfx/components/infra_validator/executor.py), which
# TFX's Pusher and model_utils.is_infra_validated read.
BLESSED_KEY, BLESSED_FILE, NOT_BLESSED_FILE = "blessed", "INFRA_BLESSED", "INFRA_NOT_BLESSED"
REASON_KEY = "reason"
# TFX's InfraValidator's default ValidationSpec.max_loading_time_seconds.
DEFAULT_MAX_LOADING_SECONDS = 300
# The version the candidate is served as.
VERSION = 1


class Outcome(NamedTuple):
  """An infra validation's verdict and, in a line, what was checked or what failed."""
  blessed: bool
  reason: str


def validate(model_path: str, model_name: str,
             max_loading_seconds: float = DEFAULT_MAX_LOADING_SECONDS) -> Outcome:
  """Loads the SavedModel at `model_path` in a fresh server process and sends it its
  warmup requests over gRPC (module docstring); the Outcome says whether all passed."""
  files = snapshot(model_path)
  missing = missing_parts(model_path, files) if files else ["every file"]
  if missing:
    return Outcome(False, f"not a complete SavedModel: {model_path} lacks "
                   f"{', '.join(missing)}")
  try:
    requests = read_requests(model_path)
  except WarmupFileError as e:
    return Outcome(False, f"bad warmup file: {e}")
  start = time.monotonic()
  with tempfile.TemporaryDirectory(prefix="infra-validation-") as tmp:
    base_path = os.path.join(tmp, model_name)
    io_utils.copy_dir(model_path, os.path.join(base_path, str(VERSION)))
    with ServerProcess(base_path, model_name) as server:
      try:
        server.start(timeout=max_loading_seconds)
      except ServerProcessError as e:
        return Outcome(False, f"the model server did not start: {e}")
      with ServingClient(server.address, model_name=model_name,
                         timeout=max_loading_seconds) as client:
        failure = _wait_until_loaded(client, start + max_loading_seconds)
        if failure:
          return Outcome(False, failure)
        loaded = time.monotonic() - start
        sent = 0
        for number, log in enumerate(requests, start=1):
          if log.WhichOneof("log_type") != "predict_log":
            continue
          request = log.predict_log.request
          request.model_spec.name = model_name
          request.model_spec.version.value = VERSION
          try:
            client.send(request)
          except ServingError as e:
            return Outcome(False, f"warmup request {number} of {len(requests)} "
                           f"({request.model_spec.signature_name or 'serving_default'}) "
                           f"failed over gRPC: {e}")
          sent += 1
  checked = (f"{sent} warmup request{'s' if sent != 1 else ''} answered over gRPC"
             if sent else "no warmup requests in the model: loaded only")
  return Outcome(True, f"AVAILABLE in a fresh model server after {loaded:.1f}s; {checked}")


def _wait_until_loaded(client: ServingClient, deadline: float) -> str:
  """'' once the version is AVAILABLE; else why not (its load failed, or the deadline
  passed)."""
  last = "no status yet"
  while time.monotonic() < deadline:
    try:
      states = client.status(version=VERSION)
    except ServingError as e:
      last = str(e)   # NOT_FOUND: the poller has not offered it yet
    else:
      state = states[0]
      if state.state == "AVAILABLE":
        return ""
      if state.state == "END" and state.error:
        return f"failed to load in the model server: {state.error}"
      last = state.state
    time.sleep(0.25)
  return f"not AVAILABLE within the loading deadline (last status: {last})"


def _mark(blessing: types.Artifact, outcome: Outcome) -> None:
  """Marks the InfraBlessing as TFX's InfraValidator does, with the reason."""
  name = BLESSED_FILE if outcome.blessed else NOT_BLESSED_FILE
  io_utils.write_string_file(os.path.join(blessing.uri, name), outcome.reason)
  blessing.set_int_custom_property(BLESSED_KEY, int(outcome.blessed))
  blessing.set_string_custom_property(REASON_KEY, outcome.reason)


class Executor(base_executor.BaseExecutor):
  """Validates the model in a fresh local server (`validate`); records the verdict."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """Blesses the model when it loads and answers every warmup request; a model the
    Evaluator did not bless is not validated (and not blessed)."""
    self._log_startup(input_dict, output_dict, exec_properties)
    model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
    blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
    evaluator_blessing = input_dict.get(MODEL_BLESSING_KEY)
    if evaluator_blessing and not model_utils.is_model_blessed(
        artifact_utils.get_single_instance(evaluator_blessing)):
      outcome = Outcome(False, "the Evaluator did not bless the model, so it was not started")
    else:
      model_path = path_utils.serving_model_path(
          model.uri, path_utils.is_old_model_artifact(model))
      outcome = validate(model_path, exec_properties[MODEL_NAME_KEY],
                         exec_properties[MAX_LOADING_SECONDS_KEY])
    _mark(blessing, outcome)
    print(f"  [InfraValidator] {'blessed' if outcome.blessed else 'NOT blessed'}: "
          f"{outcome.reason}", flush=True)


class LocalInfraValidatorSpec(types.ComponentSpec):
  """The model (and optionally the Evaluator's blessing) in, an InfraBlessing out."""
  PARAMETERS = {
      MODEL_NAME_KEY: ExecutionParameter(type=str),
      MAX_LOADING_SECONDS_KEY: ExecutionParameter(type=int),
  }
  INPUTS = {
      MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
      MODEL_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing,
                                           optional=True),
  }
  OUTPUTS = {BLESSING_KEY: ChannelParameter(type=standard_artifacts.InfraBlessing)}


class LocalInfraValidator(base_component.BaseComponent):
  """The candidate in a fresh local model server, blessed when it answers its warmup
  requests (module docstring)."""

  SPEC_CLASS = LocalInfraValidatorSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

  def __init__(self, model: types.BaseChannel, model_name: str,
               model_blessing: types.BaseChannel = None,
               max_loading_seconds: int = DEFAULT_MAX_LOADING_SECONDS):
    """`model`: the candidate (the Trainer's); `model_name`: the name it is served
    under; `model_blessing`: the Evaluator's, whose unblessed model isn't started."""
    super().__init__(spec=LocalInfraValidatorSpec(
        model=model, model_blessing=model_blessing, model_name=model_name,
        max_loading_seconds=max_loading_seconds,
        blessing=types.Channel(type=standard_artifacts.InfraBlessing)))
