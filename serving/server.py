"""A local stand-in for TF Serving's gRPC API (`aitm serve`), over the pushed SavedModels.

Real deployments run the `tensorflow/serving` image (kubeflow/serving/). This
server exists for development and tests on machines without that binary or a
Docker engine: it answers the same protos from tensorflow-serving-api, so a
client written against it works unchanged against TF Serving.

* PredictionService: Predict and GetModelMetadata (`signature_def`), as TF
  Serving does; Classify, Regress and MultiInference answer UNIMPLEMENTED (the
  AITM SavedModel has predict signatures only).
* ModelService: GetModelStatus; HandleReloadConfigRequest answers
  UNIMPLEMENTED (the model config file is re-read when it changes, as with
  TF Serving's `--model_config_file_poll_wait_seconds`).
* Versions: the file-system poller and version policies of
  serving.model_versions; a new version is loaded before the old one is
  unloaded, so requests never find the model missing; a version that fails to
  load is reported in GetModelStatus and retried only when its files change.
  A version's warmup requests are replayed before it is AVAILABLE, and one that
  fails fails the load (serving/warmup.py), as in TF Serving.
* Errors carry TF Serving's status codes: an unknown model or version is
  NOT_FOUND, a wrong input name, dtype or shape or an unparsable tf.Example is
  INVALID_ARGUMENT naming the input. No request can stop the server.
* Limits: a request's tensors are checked against what they carry and against
  `max_batch_size` before anything is allocated (a TensorProto may declare a
  shape of billions of elements in a few bytes); at most
  `max_concurrent_rpcs` requests are served at once, the rest get
  RESOURCE_EXHAUSTED; a request whose deadline has passed is not computed
  (DEADLINE_EXCEEDED).
* Monitoring: Prometheus metrics (serving.metrics, over HTTP with `monitoring_port`) and
  the standard gRPC health service (serving.health) on the gRPC port.
"""

import concurrent.futures
import os
import threading
import time
from typing import Dict, List, Optional

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving import defaults, warmup
from serving.health import ModelHealth
from serving.metrics import METRICS_PATH, ServingMetrics
from serving.model_versions import (ModelSource, list_versions, missing_parts,
                                    read_model_config_file, snapshot)
from serving.rest_api import RestApiServer

_State = get_model_status_pb2.ModelVersionStatus.State
DEFAULT_SIGNATURE = defaults.EXAMPLES_SIGNATURE


class RequestError(Exception):
  """A request the server refuses: a gRPC status code and TF Serving's kind of message."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code


class ServableVersion:
  """One loaded SavedModel version: its signatures as callables and as SignatureDefs."""

  def __init__(self, version: int, path: str):
    self.version, self.path = version, path
    self.model = tf.saved_model.load(path)
    self.signatures = dict(self.model.signatures)
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
      proto.ParseFromString(f.read())
    self.signature_defs = dict(proto.meta_graphs[0].signature_def)


class ServedModel:
  """The versions of one model: what is on disk, loaded, and each version's state."""

  def __init__(self, source: ModelSource, log=print):
    self.source = source
    self._log = log
    self._lock = threading.Lock()
    self._loaded: Dict[int, ServableVersion] = {}
    self._states: Dict[int, tuple] = {}   # version -> (State, error message)
    self._seen = {}                         # version -> snapshot at the previous poll
    self._failed = {}                       # version -> snapshot that failed to load

  # -- request side ---------------------------------------------------------
  def resolve(self, spec) -> ServableVersion:
    """The loaded version a ModelSpec asks for: its version, its version label, or else
    the newest loaded one. RequestError in TF Serving's words: NOT_FOUND when that
    version is not loaded, INVALID_ARGUMENT for an unknown label."""
    with self._lock:
      loaded = dict(self._loaded)
    name = self.source.name
    if spec.HasField("version"):
      version = spec.version.value
      if version not in loaded:
        raise RequestError(grpc.StatusCode.NOT_FOUND,
                           f"Servable not found for request: Specific({name}, {version})")
      return loaded[version]
    if spec.version_label:
      labels = self.source.label_map
      if spec.version_label not in labels:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Unrecognized servable version label: {spec.version_label}")
      version = labels[spec.version_label]
      if version not in loaded:
        raise RequestError(grpc.StatusCode.NOT_FOUND,
                           f"Servable not found for request: Specific({name}, {version}) "
                           f"(label {spec.version_label})")
      return loaded[version]
    if not loaded:
      raise RequestError(grpc.StatusCode.NOT_FOUND,
                         f"Servable not found for request: Latest({name})")
    return loaded[max(loaded)]

  def statuses(self) -> Dict[int, tuple]:
    """{version: (State, error message)} of every version seen so far, a copy."""
    with self._lock:
      return dict(self._states)

  # -- poller side ----------------------------------------------------------
  def _set_state(self, version, state, error=""):
    with self._lock:
      self._states[version] = (state, error)

  def _ready_versions(self) -> Dict[int, str]:
    """Versions on disk that are loaded already, or complete and unchanged since
    the previous poll (and not the same files that failed to load before)."""
    ready = {}
    on_disk = list_versions(self.source.base_path)
    for version in list(self._seen):
      if version not in on_disk:
        del self._seen[version]
    for version, path in on_disk.items():
      if version in self._loaded:
        ready[version] = path
        continue
      files = snapshot(path)
      previous, self._seen[version] = self._seen.get(version), files
      if files and files == previous and files != self._failed.get(version) \
          and not missing_parts(path, files):
        ready[version] = path
    return ready

  def poll(self):
    """One pass of the file-system poller: load the aspired versions, then unload
    the rest (availability first: the old version serves until the new is in)."""
    ready = self._ready_versions()
    if not ready:
      # An empty or unreadable base path (a mount hiccup, a half-done cleanup)
      # keeps what is loaded: unloading everything would serve nothing.
      return
    while True:
      aspired = self.source.policy.select(ready)
      to_load = [v for v in aspired if v not in self._loaded]
      if not to_load:
        break
      for version in to_load:
        if not self._load(version, ready[version]):
          del ready[version]
    for version in sorted(set(self._loaded) - set(aspired)):
      self._set_state(version, _State.UNLOADING)
      with self._lock:
        del self._loaded[version]
      self._set_state(version, _State.END)
      self._log(f"[serve] {self.source.name}: version {version} unloaded")

  def _load(self, version, path) -> bool:
    self._set_state(version, _State.LOADING)
    start = time.time()
    try:
      servable = ServableVersion(version, path)
      # As TF Serving: the warmup requests run before the version is AVAILABLE, and
      # one that fails fails the load.
      warmed = warmup.replay(path, _warmup_predict(servable))
    except Exception as e:  # noqa: BLE001 - any load failure is reported, not raised
      self._failed[version] = self._seen.get(version)
      message = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
      self._set_state(version, _State.END, message)
      self._log(f"[serve] {self.source.name}: version {version} failed to load from "
                f"{path}: {message}")
      return False
    with self._lock:
      self._loaded[version] = servable
    self._set_state(version, _State.AVAILABLE)
    self._log(f"[serve] {self.source.name}: version {version} AVAILABLE "
              f"(loaded in {time.time() - start:.1f}s from {path}"
              + (f"; {warmed.requests} warmup requests in {warmed.seconds:.1f}s)"
                 if warmed.requests else ")"))
    return True


class ModelRegistry:
  """The served models by name; re-reads the model config file when it changes."""

  def __init__(self, sources: Optional[List[ModelSource]] = None,
               config_file: Optional[str] = None, log=print):
    if (sources is None) == (config_file is None):
      raise ValueError("serve either models given as sources or a model config file")
    self._log = log
    self._config_file = config_file
    if config_file:
      self._config_mtime = os.path.getmtime(config_file)
      sources = read_model_config_file(config_file)
    self._models = {s.name: ServedModel(s, log) for s in sources}

  def models(self) -> Dict[str, ServedModel]:
    """The served models by name, a copy."""
    return dict(self._models)

  def get(self, name: str) -> ServedModel:
    """The served model `name`; RequestError NOT_FOUND when there is none."""
    model = self._models.get(name)
    if model is None:
      raise RequestError(grpc.StatusCode.NOT_FOUND,
                         f"Servable not found for request: Latest({name})")
    return model

  def poll(self):
    """Re-reads the model config file when it changed, then polls every model; a model
    whose poll fails is logged and keeps what it has loaded."""
    if self._config_file:
      self._reload_config()
    for model in list(self._models.values()):
      try:
        model.poll()
      except Exception as e:  # noqa: BLE001 - e.g. a base path on a flaky mount
        self._log(f"[serve] {model.source.name}: poll of {model.source.base_path} "
                  f"failed: {e}")

  def _reload_config(self):
    try:
      mtime = os.path.getmtime(self._config_file)
      if mtime == self._config_mtime:
        return
      sources = read_model_config_file(self._config_file)
    except Exception as e:  # noqa: BLE001 - a bad edit keeps what is served
      self._log(f"[serve] keeping the current models: {type(e).__name__}: {e}")
      return
    self._config_mtime = mtime
    models = {}
    for source in sources:
      current = self._models.get(source.name)
      if current is not None and current.source.base_path == source.base_path:
        current.source = source   # new labels or policy apply at the next poll
        models[source.name] = current
      else:
        models[source.name] = ServedModel(source, self._log)
    self._models = models
    self._log(f"[serve] re-read {self._config_file}: models {sorted(models)}")


def _abort(context, code, message):
  context.abort(code, message)


# dtype -> the TensorProto field its values are in, when not in tensor_content.
_VALUE_FIELDS = {
    tf.string: "string_val", tf.float32: "float_val", tf.float64: "double_val",
    tf.int64: "int64_val", tf.int32: "int_val", tf.int16: "int_val", tf.int8: "int_val",
    tf.uint8: "int_val", tf.uint16: "int_val", tf.bool: "bool_val", tf.float16: "half_val",
    tf.bfloat16: "half_val", tf.uint32: "uint32_val", tf.uint64: "uint64_val",
}


def _dtype_name(number: int) -> str:
  try:
    return tf.dtypes.as_dtype(number).name
  except TypeError:
    return f"unknown dtype {number}"


def _check_size(name: str, proto, dtype: tf.DType, max_batch_size: int) -> None:
  """Refuses a TensorProto whose declared shape doesn't match the values it carries, or
  whose batch is over the limit, before make_ndarray allocates the declared shape."""
  if proto.tensor_shape.unknown_rank:
    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{name}': unknown rank")
  dims = [d.size for d in proto.tensor_shape.dim]
  if any(d < 0 for d in dims):
    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"input '{name}': shape {dims} has a negative dimension")
  if dims and dims[0] > max_batch_size:
    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"input '{name}': batch of {dims[0]:,} rows is over this server's "
                       f"limit of {max_batch_size:,} (--max-batch-size)")
  declared = 1
  for d in dims:
    declared *= d
  if proto.tensor_content:
    if dtype == tf.string:
      raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"input '{name}': strings travel in string_val, not tensor_content")
    present = len(proto.tensor_content) // dtype.size
  else:
    present = len(getattr(proto, _VALUE_FIELDS.get(dtype, "string_val")))
  if present != declared:
    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"input '{name}': shape {dims} declares {declared:,} values but the "
                       f"tensor carries {present:,}")


def _tensor_inputs(request, function, signature_name,
                   max_batch_size: int = defaults.DEFAULT_MAX_BATCH_SIZE):
  """The request's TensorProtos as tensors, checked against the signature."""
  specs = function.structured_input_signature[1]
  sent, expected = set(request.inputs), set(specs)
  if sent != expected:
    raise RequestError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"input size does not match signature {signature_name!r}: {len(sent)}!="
        f"{len(expected)}. Sent extra: {sorted(sent - expected)}. Missing but required: "
        f"{sorted(expected - sent)}.")
  tensors = {}
  for name, spec in specs.items():
    proto = request.inputs[name]
    if proto.dtype != spec.dtype.as_datatype_enum:
      sent_type = _dtype_name(proto.dtype) if proto.dtype else "no dtype"
      raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"input '{name}': expects {spec.dtype.name} but got {sent_type}")
    _check_size(name, proto, spec.dtype, max_batch_size)
    try:
      value = tf.make_ndarray(proto)
    except Exception as e:  # noqa: BLE001 - malformed TensorProto content
      raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"input '{name}': not a valid tensor: {e}") from e
    if not spec.shape.is_compatible_with(value.shape):
      raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"input '{name}': shape {list(value.shape)} is not compatible with "
                         f"the signature's {spec.shape.as_list()}")
    tensors[name] = tf.constant(value, dtype=spec.dtype)
  batch_sizes = {name: t.shape[0] for name, t in tensors.items() if t.shape.rank}
  if len(set(batch_sizes.values())) > 1:
    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"inputs have different batch sizes: {batch_sizes}")
  return tensors


def _check_deadline(context):
  """DEADLINE_EXCEEDED, without computing, when the client has stopped waiting."""
  remaining = context.time_remaining()
  if (remaining is not None and remaining <= 0) or not context.is_active():
    raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED,
                       "the request's deadline passed before it was computed")


def _run_signature(function, tensors, signature_name):
  # Name the input when there is one only (an unparsable tf.Example in `examples`).
  where = f"input '{next(iter(tensors))}'" if len(tensors) == 1 else signature_name
  try:
    return function(**tensors)
  except UnicodeDecodeError as e:
    # TensorFlow quotes the offending input in its error message and fails to
    # decode it when those bytes aren't UTF-8 - e.g. random bytes as a tf.Example.
    raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                       f"{where}: could not be parsed (bytes that are not valid UTF-8 "
                       f"where text was expected: {e.reason} at {e.start})") from e
  except tf.errors.OpError as e:
    code = grpc.StatusCode.INVALID_ARGUMENT if isinstance(
        e, tf.errors.InvalidArgumentError) else _GRPC_CODES.get(e.error_code,
                                                                 grpc.StatusCode.INTERNAL)
    raise RequestError(code, f"{where}: {e.message.splitlines()[0]}") from e


_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _signature(servable: ServableVersion, model_spec):
  """(name, function) of the signature a ModelSpec names (default `serving_default`);
  FAILED_PRECONDITION, TF Serving's code, when the version has none of that name."""
  signature_name = model_spec.signature_name or DEFAULT_SIGNATURE
  function = servable.signatures.get(signature_name)
  if function is None:
    raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                       f'Serving signature name: "{signature_name}" not found in '
                       f"signature def (has {sorted(servable.signatures)})")
  return signature_name, function


def _warmup_predict(servable: ServableVersion):
  """A warmup request's run on `servable`, with Predict's checks and signature call
  (serving/warmup.py); RequestError when it fails. The ModelSpec's name and version
  are not read: as in TF Serving, warmup runs on the version being loaded."""
  def predict(request):
    signature_name, function = _signature(servable, request.model_spec)
    outputs = _run_signature(function, _tensor_inputs(request, function, signature_name),
                             signature_name)
    unknown = sorted(set(request.output_filter) - set(outputs))
    if unknown:
      raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"output_filter names outputs not in signature {signature_name!r}:"
                         f" {unknown} (has {sorted(outputs)})")
  return predict


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
  """TF Serving's PredictionService over the registry's loaded versions."""

  def __init__(self, registry: ModelRegistry,
               max_batch_size: int = defaults.DEFAULT_MAX_BATCH_SIZE,
               metrics: Optional[ServingMetrics] = None):
    self.registry = registry
    self.max_batch_size = max_batch_size
    self.metrics = metrics

  def Predict(self, request, context):
    """Runs the signature the ModelSpec names (default `serving_default`) on the
    request's inputs, checked against it and the batch limit first.

    The response holds the outputs `output_filter` names (all when empty) and the
    version that answered. A refused request aborts with TF Serving's status code
    (RequestError); any other failure aborts with INTERNAL.
    """
    try:
      _check_deadline(context)
      servable = self.registry.get(request.model_spec.name).resolve(request.model_spec)
      signature_name, function = _signature(servable, request.model_spec)
      tensors = _tensor_inputs(request, function, signature_name, self.max_batch_size)
      _check_deadline(context)
      started = time.perf_counter()
      outputs = _run_signature(function, tensors, signature_name)
      if self.metrics is not None:
        self.metrics.record_runtime(request.model_spec.name, servable.version, signature_name,
                                    time.perf_counter() - started)
      names = list(request.output_filter) or sorted(outputs)
      unknown = sorted(set(names) - set(outputs))
      if unknown:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"output_filter names outputs not in signature {signature_name!r}:"
                           f" {unknown} (has {sorted(outputs)})")
    except RequestError as e:
      return _abort(context, e.code, str(e))
    except Exception as e:  # noqa: BLE001 - a bug here must not look like a bad request
      return _abort(context, grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    response = predict_pb2.PredictResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = signature_name
    for name in names:
      response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name].numpy()))
    return response

  def GetModelMetadata(self, request, context):
    """The `signature_def` metadata (the only field served) of the version the ModelSpec
    resolves to: every SignatureDef of the SavedModel."""
    try:
      fields = list(request.metadata_field)
      if not fields:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           "GetModelMetadataRequest must specify at least one metadata_field")
      unsupported = [f for f in fields if f != "signature_def"]
      if unsupported:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Metadata field {unsupported[0]} is not supported")
      servable = self.registry.get(request.model_spec.name).resolve(request.model_spec)
    except RequestError as e:
      return _abort(context, e.code, str(e))
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = servable.version
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in servable.signature_defs.items():
      signatures.signature_def[name].CopyFrom(signature)
    response.metadata["signature_def"].Pack(signatures)
    return response

  def Classify(self, request, context):
    """UNIMPLEMENTED: the AITM SavedModel has predict signatures only."""
    _abort(context, grpc.StatusCode.UNIMPLEMENTED,
           "Classify is not served here: the model has predict signatures only")

  def Regress(self, request, context):
    """UNIMPLEMENTED: the AITM SavedModel has predict signatures only."""
    _abort(context, grpc.StatusCode.UNIMPLEMENTED,
           "Regress is not served here: the model has predict signatures only")

  def MultiInference(self, request, context):
    """UNIMPLEMENTED: the AITM SavedModel has predict signatures only."""
    _abort(context, grpc.StatusCode.UNIMPLEMENTED,
           "MultiInference is not served here: the model has predict signatures only")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
  """TF Serving's ModelService over the registry: version states, no config reload."""

  def __init__(self, registry: ModelRegistry):
    self.registry = registry

  def GetModelStatus(self, request, context):
    """The state of every version of the model seen so far (newest first), or of the one
    the ModelSpec's version or label names; NOT_FOUND for an unknown model or version."""
    spec = request.model_spec
    try:
      model = self.registry.get(spec.name)
    except RequestError:
      return _abort(context, grpc.StatusCode.NOT_FOUND,
                    f"Could not find any versions of model {spec.name}")
    states = model.statuses()
    if spec.version_label:
      labels = model.source.label_map
      if spec.version_label not in labels:
        return _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                      f"Unrecognized servable version label: {spec.version_label}")
      wanted = [labels[spec.version_label]]
    elif spec.HasField("version"):
      wanted = [spec.version.value]
    else:
      wanted = sorted(states, reverse=True)
    missing = [v for v in wanted if v not in states]
    if missing or not wanted:
      what = f"version {missing[0]} of model {spec.name}" if missing else \
          f"any versions of model {spec.name}"
      return _abort(context, grpc.StatusCode.NOT_FOUND, f"Could not find {what}")
    response = get_model_status_pb2.GetModelStatusResponse()
    for version in wanted:
      state, error = states[version]
      status = response.model_version_status.add(version=version, state=state)
      status.status.SetInParent()   # as TF Serving: error_code OK when there is no error
      if error:
        status.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
        status.status.error_message = error
    return response

  def HandleReloadConfigRequest(self, request, context):
    """UNIMPLEMENTED: the model config file is re-read when it changes."""
    _abort(context, grpc.StatusCode.UNIMPLEMENTED,
           "the model config file is re-read when it changes; edit it instead")


class LocalModelServer:
  """PredictionService, ModelService and the gRPC health service on one port, the
  file-system poller; with `rest_port`, TF Serving's REST API over the same services on
  another (serving.rest_api); with `monitoring_port`, Prometheus metrics over HTTP.

      server = LocalModelServer([ModelSource("aitm", "runs/serving/aitm")], port=0)
      # or LocalModelServer(config_file="kubeflow/serving/models.config")
      port = server.start()   # returns once the first versions are loaded
      ...
      server.stop()
  """

  def __init__(self, sources: Optional[List[ModelSource]] = None, port: int = defaults.PORT,
               host: str = defaults.HOST,
               poll_wait_seconds: float = defaults.POLL_WAIT_SECONDS,
               config_file: Optional[str] = None,
               max_workers: int = 16, max_batch_size: int = defaults.DEFAULT_MAX_BATCH_SIZE,
               max_concurrent_rpcs: int = defaults.DEFAULT_MAX_CONCURRENT_RPCS,
               monitoring_port: Optional[int] = None, log=print,
               rest_port: Optional[int] = None):
    if poll_wait_seconds <= 0:
      raise ValueError("poll_wait_seconds must be positive")
    if max_batch_size < 1 or max_concurrent_rpcs < 1 or max_workers < 1:
      raise ValueError("max_batch_size, max_concurrent_rpcs and max_workers must be at "
                       "least 1")
    self.max_batch_size, self.max_concurrent_rpcs = max_batch_size, max_concurrent_rpcs
    self.registry = ModelRegistry(sources, config_file, log)
    self.poll_wait_seconds = poll_wait_seconds
    self._host, self._port, self._max_workers = host, port, max_workers
    self._log = log
    self._stop = threading.Event()
    self._poller = threading.Thread(target=self._poll_loop, name="version-poller", daemon=True)
    self._server = None
    self.port, self.address = None, None
    self.metrics, self.health = ServingMetrics(self.registry.models), ModelHealth()
    self._monitoring_port, self.monitoring_port = monitoring_port, None
    self._rest_port, self.rest = rest_port, None   # rest: the RestApiServer, once started

  def start(self) -> int:
    """Loads the first versions, then listens (as TF Serving does: until then a
    client's connection is refused, which it sees as UNAVAILABLE and retries,
    rather than waiting on an open port for its deadline). Returns the port."""
    # Two polls a moment apart: a version is served only once its files stood still.
    self.registry.poll()
    time.sleep(min(0.5, self.poll_wait_seconds))
    self.registry.poll()
    self.health.update(self.registry.models())
    predictions = PredictionService(self.registry, self.max_batch_size, self.metrics)
    models = ModelService(self.registry)
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=self._max_workers),
                         options=[("grpc.max_receive_message_length", 64 << 20),
                                  ("grpc.max_send_message_length", 64 << 20)],
                         maximum_concurrent_rpcs=self.max_concurrent_rpcs,
                         interceptors=[self.metrics.interceptor()])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(predictions, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(models, server)
    self.health.add_to_server(server)
    # The HTTP ports first: they can be closed again if gRPC can't bind, while an
    # unstarted gRPC server holds its port until collected.
    if self._monitoring_port is not None:
      try:
        self.monitoring_port = self.metrics.serve(self._monitoring_port, self._host)
      except OSError as e:
        raise OSError(f"cannot serve metrics on {self._host}:{self._monitoring_port}: "
                      f"{e}") from e
    if self._rest_port is not None:
      try:
        self.rest = RestApiServer(predictions, models, self._host, self._rest_port,
                                  self.max_concurrent_rpcs, self._log, self.metrics)
      except OSError:
        self.metrics.stop()
        raise
    try:
      port = server.add_insecure_port(f"{self._host}:{self._port}")
    except RuntimeError:   # grpc raises when the address is taken
      port = 0
    if not port:
      self.metrics.stop()
      if self.rest is not None:
        self.rest.stop()   # nothing is left half-started
        self.rest = None
      raise OSError(f"cannot listen on {self._host}:{self._port}")
    self._server, self.port, self.address = server, port, f"{self._host}:{port}"
    server.start()
    self._poller.start()
    self._log(f"[serve] gRPC PredictionService, ModelService and grpc.health.v1 on "
              f"{self.address}")
    if self.monitoring_port is not None:
      self._log(f"[serve] Prometheus metrics on "
                f"http://{self._host}:{self.monitoring_port}{METRICS_PATH}")
    if self.rest is not None:
      self.rest.start()
      self._log(f"[serve] TF Serving's REST API on {self.rest.url}")
    return self.port

  def _poll_loop(self):
    while not self._stop.wait(self.poll_wait_seconds):
      try:
        self.registry.poll()
        self.health.update(self.registry.models())
      except Exception as e:  # noqa: BLE001 - the poller must outlive any one poll
        self._log(f"[serve] poll failed, retried in {self.poll_wait_seconds:g}s: "
                  f"{type(e).__name__}: {e}")

  def stop(self, grace: float = 1.0):
    """Stops the poller, the REST API and the gRPC server, giving gRPC requests in flight
    `grace` seconds."""
    self._stop.set()
    self.health.shut_down()
    if self.rest is not None:
      self.rest.stop()
    if self._server is not None:
      self._server.stop(grace).wait()
    self.metrics.stop()

  def wait(self):
    """Blocks until the gRPC server has stopped."""
    self._server.wait_for_termination()
