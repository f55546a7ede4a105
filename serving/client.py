"""A client for TF Serving's gRPC API (tensorflow-serving-api's stubs), for AITM models.

    from serving.client import ServingClient
    with ServingClient("localhost:8500", model_name="aitm") as client:
      client.wait_until_available(timeout=60)
      scores = client.predict([{"pid": "430548_1007", "cate_id": "1042", ...}])
      scores["ctr"], scores["cvr"]        # float32 arrays, one value per row

The same calls work against TF Serving and against `aitm serve`. Rows are raw
features (serving.request_rows); the column types are read from the model's
own `serving_raw` signature with GetModelMetadata, cached per served version,
and the version that answers first scores every batch of a call. Each call
has a deadline; UNAVAILABLE (server starting, restarting, or a dropped
connection) is retried with exponential backoff, every other error is raised
as ServingError with the server's status code and message.
"""

import dataclasses
import random
import time
from typing import Dict, Iterable, List, Mapping, Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving.defaults import (EXAMPLES_SIGNATURE, PREDICT_BATCH_SIZE, RAW_SIGNATURE,
                              TIMEOUT_SECONDS)
from serving.request_rows import (batches, check_columns, column_kinds, to_example,
                                  to_raw_columns)

_RETRIED = (grpc.StatusCode.UNAVAILABLE,)
_STATE_NAMES = {v: k for k, v in get_model_status_pb2.ModelVersionStatus.State.items()}


def tensor_proto(value) -> tensor_pb2.TensorProto:
  """tf.make_tensor_proto, with a fast path for strings: it spends about 0.5 ms
  on 256 strings, a column of serving_raw; filling string_val takes a sixth of that."""
  array = np.asarray(value)
  if array.dtype.kind not in ("O", "S", "U"):
    return tf.make_tensor_proto(array)
  proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[
      v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.reshape(-1)])
  for size in array.shape:
    proto.tensor_shape.dim.add(size=size)
  return proto


class ServingError(Exception):
  """A failed call: the gRPC status code and the server's message."""

  def __init__(self, code: grpc.StatusCode, message: str, method: str):
    super().__init__(f"{method}: {code.name}: {message}")
    self.code, self.message, self.method = code, message, method


@dataclasses.dataclass(frozen=True)
class VersionStatus:
  """One version in a GetModelStatus answer: its state and, when loading failed, the
  server's error message."""
  version: int
  state: str            # AVAILABLE, LOADING, UNLOADING, END, ...
  error: str = ""


class ServingClient:
  """Predict / metadata / status calls to one model on one TF Serving endpoint.

  Args:
    target: host:port of the gRPC API (TF Serving's --port, 8500 by default).
    model_name: the served model (TF Serving's --model_name / config name).
    timeout: deadline of each gRPC call, seconds.
    retries: how many times an UNAVAILABLE call is retried.
    backoff: first retry delay, seconds; doubles per retry, with jitter, up
      to max_backoff.
  """

  def __init__(self, target: str, model_name: str = "aitm", timeout: float = TIMEOUT_SECONDS,
               retries: int = 5, backoff: float = 0.1, max_backoff: float = 2.0,
               channel: Optional[grpc.Channel] = None):
    if timeout <= 0 or retries < 0 or backoff < 0:
      raise ValueError("timeout must be positive, retries and backoff not negative")
    self.target, self.model_name = target, model_name
    self.timeout, self.retries = timeout, retries
    self.backoff, self.max_backoff = backoff, max_backoff
    self._channel = channel or grpc.insecure_channel(
        target, options=[("grpc.max_receive_message_length", 64 << 20),
                         ("grpc.max_send_message_length", 64 << 20)])
    self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
    self._kinds = {}   # served version -> column kinds
    self.last_version: Optional[int] = None   # the version that scored the last predict()

  def close(self):
    """Closes the gRPC channel."""
    self._channel.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  # -- calls ----------------------------------------------------------------
  def _call(self, method: str, function, request):
    delay = self.backoff
    for attempt in range(self.retries + 1):
      try:
        return function(request, timeout=self.timeout)
      except grpc.RpcError as e:
        code = e.code()
        if code in _RETRIED and attempt < self.retries:
          time.sleep(delay * (0.5 + random.random() / 2))
          delay = min(delay * 2, self.max_backoff)
          continue
        raise ServingError(code, e.details() or "", method) from None

  def _spec(self, spec, version: Optional[int], label: Optional[str],
            signature: Optional[str] = None):
    if version is not None and label:
      raise ValueError("ask for a version or a version label, not both")
    spec.name = self.model_name
    if version is not None:
      spec.version.value = int(version)
    elif label:
      spec.version_label = label
    if signature:
      spec.signature_name = signature

  def status(self, version: Optional[int] = None,
             label: Optional[str] = None) -> List[VersionStatus]:
    """GetModelStatus: every version the server knows (newest first), or one."""
    request = get_model_status_pb2.GetModelStatusRequest()
    self._spec(request.model_spec, version, label)
    response = self._call("GetModelStatus", self._models.GetModelStatus, request)
    return [VersionStatus(s.version, _STATE_NAMES.get(s.state, str(s.state)),
                          s.status.error_message)
            for s in response.model_version_status]

  def wait_until_available(self, timeout: float = 60.0, version: Optional[int] = None,
                           label: Optional[str] = None, poll: float = 0.25) -> int:
    """Blocks until a version (the newest, or the one asked for) is AVAILABLE and
    returns it. Raises TimeoutError naming the last state seen."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
      try:
        available = [s.version for s in self.status(version, label) if s.state == "AVAILABLE"]
        if available:
          return max(available)
        last = "no version AVAILABLE"
      except ServingError as e:
        if e.code not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
          raise
        last = str(e)
      if time.monotonic() >= deadline:
        raise TimeoutError(f"{self.model_name} at {self.target} not AVAILABLE after "
                           f"{timeout:.0f}s: {last}")
      time.sleep(poll)

  def metadata(self, version: Optional[int] = None, label: Optional[str] = None):
    """GetModelMetadata: (version, {signature name: SignatureDef})."""
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    self._spec(request.model_spec, version, label)
    response = self._call("GetModelMetadata", self._predict.GetModelMetadata, request)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    return response.model_spec.version.value, dict(signatures.signature_def)

  def predict_tensors(self, inputs: Mapping[str, np.ndarray], signature: str = EXAMPLES_SIGNATURE,
                      version: Optional[int] = None, label: Optional[str] = None,
                      output_filter: Iterable[str] = ()) -> Dict[str, np.ndarray]:
    """One Predict call with the inputs as given: {output name: array}."""
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    self._spec(request.model_spec, version, label, signature)
    for name, value in inputs.items():
      request.inputs[name].CopyFrom(tensor_proto(value))
    response = self._call("Predict", self._predict.Predict, request)
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

  def send(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """One Predict call with a request built elsewhere (a SavedModel's warmup
    requests), to this client's model unless the request names one."""
    if not request.model_spec.name:
      request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
      request.model_spec.name = self.model_name
    return self._call("Predict", self._predict.Predict, request)

  def column_kinds(self, version: Optional[int] = None,
                   label: Optional[str] = None) -> Dict[str, str]:
    """The raw columns the model takes and their kinds, from its serving_raw signature."""
    return self._served_kinds(version, label)[1]

  def _served_kinds(self, version: Optional[int], label: Optional[str]):
    """(the version that answered, its column kinds): one GetModelMetadata call, the
    kinds cached per served version (a reload may change them)."""
    served, signatures = self.metadata(version, label)
    if served not in self._kinds:
      if RAW_SIGNATURE not in signatures:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"the model has no {RAW_SIGNATURE} signature to read column "
                           f"types from (has {sorted(signatures)})", "GetModelMetadata")
      self._kinds[served] = column_kinds(signatures[RAW_SIGNATURE])
    return served, self._kinds[served]

  def predict(self, rows: Iterable[Mapping], signature: str = EXAMPLES_SIGNATURE,
              version: Optional[int] = None, label: Optional[str] = None,
              batch_size: int = PREDICT_BATCH_SIZE,
              source: str = "rows") -> Dict[str, np.ndarray]:
    """Per-task probabilities for rows of raw features, in row order.

    `signature`: serving_default (tf.Examples) or serving_raw (a tensor per
    column); `batch_size` rows go in one Predict call. Returns {task: float32
    [rows]}, e.g. {'ctr': ..., 'cvr': ...}.

    Every batch is scored by one version: the one serving when the call starts
    (or the one asked for), pinned for the rest of the call, so a reload in the
    middle can't mix two models' scores; if that version is unloaded before the
    call ends, it fails with NOT_FOUND naming it. `last_version` holds it after
    the call. A row with a column the model doesn't take but nearly does
    (another case, a typo) is refused, naming the model's columns; other
    columns (labels, ids) are ignored."""
    if signature not in (EXAMPLES_SIGNATURE, RAW_SIGNATURE):
      raise ValueError(f"signature must be {EXAMPLES_SIGNATURE} or {RAW_SIGNATURE}, "
                       f"got {signature!r}")
    if batch_size <= 0:
      raise ValueError("batch_size must be positive")
    pinned, kinds = self._served_kinds(version, label)
    parts: Dict[str, List[np.ndarray]] = {}
    first = 0
    checked = set()  # column sets already checked: a file's rows share one
    for batch in batches(rows, batch_size):
      for i, row in enumerate(batch):
        names = tuple(row)
        if names not in checked:
          check_columns(row, kinds, f"{source} row {first + i + 1}")
          checked.add(names)
      if signature == EXAMPLES_SIGNATURE:
        inputs = {"examples": np.array(
            [to_example(row, kinds, f"{source} row {first + i + 1}")
             for i, row in enumerate(batch)], dtype=object)}
      else:
        inputs = to_raw_columns(batch, kinds, first, source)
      try:
        outputs = self.predict_tensors(inputs, signature, pinned)
      except ServingError as e:
        if e.code == grpc.StatusCode.NOT_FOUND and first:
          raise ServingError(e.code, f"version {pinned}, which scored rows 1-{first}, was "
                             f"unloaded before row {first + 1}; nothing mixed, retry the "
                             f"call ({e.message})", e.method) from None
        raise
      for name, value in outputs.items():
        parts.setdefault(name, []).append(np.asarray(value, np.float32).reshape(-1))
      first += len(batch)
    self.last_version = pinned
    return {name: np.concatenate(values) for name, values in parts.items()}
