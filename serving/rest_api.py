"""TF Serving's REST API (`aitm serve --rest-port`) over the gRPC server's own services.

Paths, JSON and HTTP status codes are TF Serving's
(tensorflow_serving/model_servers/http_rest_api_handler.cc and g3doc/api_rest.md):

    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]             GetModelStatus
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]/metadata    GetModelMetadata
    POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict     Predict
    POST ...:classify, ...:regress                                UNIMPLEMENTED, as over gRPC

Each request becomes the gRPC request proto and goes to the same PredictionService
and ModelService objects the gRPC port serves, so every check, limit and status
code is theirs; the response proto is written back as TF Serving's JSON. An error
is `{"error": "<message>"}` with the HTTP status TF Serving maps its gRPC code to
(INVALID_ARGUMENT 400, NOT_FOUND 404, RESOURCE_EXHAUSTED 429, ...). The JSON of
tensors is serving.json_tensors'.
"""

import json
import re
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional, Tuple

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, model_pb2, predict_pb2,
                                     regression_pb2)

from serving import defaults, json_tensors
from serving.metrics import REST_ENTRYPOINT

# The largest request body read, as the gRPC port's largest message: 64 MiB.
MAX_REQUEST_BYTES = 64 << 20
# Seconds an idle keep-alive connection keeps its thread.
IDLE_CONNECTION_SECONDS = 60

# TF Serving's paths (http_rest_api_util.cc): anything under /v1/ is the API's, and a
# path under it that matches neither is a malformed request (400), not an unknown page.
_API_PATH = re.compile(r"(?i)/v1/.*")
_PREDICTION_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)")
_STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r"(?:/(metadata))?")

# TF Serving's ToHTTPStatusCode (http_server.cc).
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_INT64_MAX = 2**63 - 1


class RestError(Exception):
  """A request answered with an error: its gRPC status code and message."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code

  @property
  def http_status(self) -> int:
    """The HTTP status TF Serving answers this code with."""
    return HTTP_STATUS.get(self.code, 500)


class _Aborted(Exception):
  def __init__(self, code, details):
    super().__init__(details)
    self.code, self.details = code, details


class _RestCallContext:
  """What the gRPC services use of a grpc.ServicerContext, for a call from HTTP: an
  abort raises, and there is no client deadline (HTTP sends none)."""

  def abort(self, code, details):
    """Ends the call with `code` (grpc.StatusCode) and `details`, as gRPC's abort does."""
    raise _Aborted(code, details)

  def time_remaining(self):
    """None: an HTTP request carries no deadline."""
    return None

  def is_active(self):
    """True: the call is answered even if the client has gone (HTTP doesn't tell)."""
    return True


def _call(method, request):
  """Calls a gRPC service method in this process; its abort becomes a RestError."""
  try:
    return method(request, _RestCallContext())
  except _Aborted as e:
    raise RestError(e.code, e.details) from None


def _error_json(message: str) -> str:
  return json.dumps({"error": message}, indent=4, ensure_ascii=False) + "\n"


def _model_spec(name: str, version: Optional[str], label: Optional[str]) -> model_pb2.ModelSpec:
  """The ModelSpec a path names; the name and label are URL-decoded, as TF Serving does."""
  spec = model_pb2.ModelSpec(name=urllib.parse.unquote(name))
  if version:
    number = int(version)
    if number > _INT64_MAX:
      raise RestError(grpc.StatusCode.INVALID_ARGUMENT,
                      f"Failed to convert version: {version} to numeric.")
    spec.version.value = number
  if label:
    spec.version_label = urllib.parse.unquote(label)
  return spec


class RestApiHandler:
  """TF Serving's REST API over a PredictionService and a ModelService (the gRPC
  servicers of serving.server), without the HTTP transport: `handle` takes a method,
  a path and a body and returns the HTTP status and the JSON text."""

  def __init__(self, prediction_service, model_service, log=print, metrics=None):
    self.prediction_service = prediction_service
    self.model_service = model_service
    self._log = log
    self.metrics = metrics   # serving.metrics.ServingMetrics, or None

  def handle(self, method: str, path: str, body: bytes) -> Tuple[int, str]:
    """(HTTP status, JSON body) for one request; `path` without its query string. A
    path outside /v1/ is 404; a request the API can't read is 400 (TF Serving's
    "Malformed request"); any failure of our own is 500 with its message."""
    try:
      if not _API_PATH.fullmatch(path):
        raise RestError(grpc.StatusCode.NOT_FOUND, f"Not found: {path}")
      return 200, self._dispatch(method, path, body)
    except RestError as e:
      return e.http_status, _error_json(str(e))
    except json_tensors.JsonTensorError as e:
      return HTTP_STATUS[grpc.StatusCode[e.code]], _error_json(str(e))
    except Exception as e:  # noqa: BLE001 - a bug here must not look like a bad request
      message = f"{type(e).__name__}: {e}"
      self._log(f"[serve] REST {method} {path} failed: {message}")
      return 500, _error_json(message)

  def _dispatch(self, method: str, path: str, body: bytes) -> str:
    malformed = RestError(grpc.StatusCode.INVALID_ARGUMENT,
                          f"Malformed request: {method} {path}")
    if method == "POST":
      match = _PREDICTION_PATH.fullmatch(path)
      if not match:
        raise malformed
      name, version, label, verb = match.groups()
      spec = _model_spec(name, version, label)
      if verb == "predict":
        return self.predict(spec, body)
      if verb in ("classify", "regress"):
        request_type = (classification_pb2.ClassificationRequest if verb == "classify"
                        else regression_pb2.RegressionRequest)
        service_method = getattr(self.prediction_service, verb.capitalize())
        _call(service_method, request_type(model_spec=spec))
      raise malformed   # a verb in other letter cases, as TF Serving
    if method == "GET":
      match = _STATUS_PATH.fullmatch(path)
      if not match:
        raise malformed
      name, version, label, metadata = match.groups()
      if not name:
        raise RestError(grpc.StatusCode.INVALID_ARGUMENT, "Missing model name in request.")
      spec = _model_spec(name, version, label)
      return self.metadata(spec) if metadata else self.status(spec)
    raise malformed

  def status(self, spec: model_pb2.ModelSpec) -> str:
    """GetModelStatus as TF Serving's JSON: `{"model_version_status": [...]}`."""
    request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
    response = _call(self.model_service.GetModelStatus, request)
    return json_format.MessageToJson(response, including_default_value_fields=True,
                                     indent=1) + "\n"

  def _metadata_response(self, spec):
    request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec,
                                                             metadata_field=["signature_def"])
    response = _call(self.prediction_service.GetModelMetadata, request)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    return response, signatures

  def metadata(self, spec: model_pb2.ModelSpec) -> str:
    """GetModelMetadata as TF Serving's JSON: `model_spec`, and the SignatureDefMap
    under `metadata.signature_def` (proto field names, defaults included)."""
    def compute():
      response, signatures = self._metadata_response(spec)
      options = dict(including_default_value_fields=True, preserving_proto_field_name=True,
                     indent=1)
      return ("{\n\"model_spec\": "
              + json_format.MessageToJson(response.model_spec, **options)
              + ",\n\"metadata\": {\"signature_def\": "
              + json_format.MessageToJson(signatures, **options) + "}\n}\n"), response
    return self._counted("GetModelMetadata", spec, compute)

  def predict(self, spec: model_pb2.ModelSpec, body: bytes) -> str:
    """Predict from the row (`instances`) or columnar (`inputs`) JSON; the answer in
    the same form (`predictions` or `outputs`)."""
    def compute():
      document = json_tensors.parse_request_body(body)
      spec.signature_name = json_tensors.signature_name(document)
      # The signature's input dtypes decide how JSON values are read (TF Serving's
      # GetInfoMap): from the version the spec resolves to, through GetModelMetadata,
      # so an unknown model, version or label fails here with the services' code.
      _, signatures = self._metadata_response(spec)
      name = spec.signature_name or defaults.EXAMPLES_SIGNATURE
      if name not in signatures.signature_def:
        raise RestError(grpc.StatusCode.INVALID_ARGUMENT,
                        f'Serving signature name: "{name}" not found in signature def')
      input_dtypes = {input_name: info.dtype for input_name, info
                      in sorted(signatures.signature_def[name].inputs.items())}
      request = predict_pb2.PredictRequest(model_spec=spec)
      form = json_tensors.fill_predict_inputs(document, input_dtypes, request.inputs)
      response = _call(self.prediction_service.Predict, request)
      return json_tensors.predict_response_json(response.outputs, form), response
    return self._counted("Predict", spec, compute)

  def _counted(self, api: str, spec: model_pb2.ModelSpec, compute) -> str:
    """compute() -> (JSON text, response proto), counted in the server's metrics as a
    REST request under its status code, as the gRPC interceptor counts a gRPC one."""
    started, code, response = time.perf_counter(), grpc.StatusCode.UNKNOWN, None
    try:
      text, response = compute()
      code = grpc.StatusCode.OK
      return text
    except RestError as e:
      code = e.code
      raise
    except json_tensors.JsonTensorError as e:
      code = grpc.StatusCode[e.code]
      raise
    finally:
      if self.metrics is not None:
        answered = response.model_spec if response is not None else None
        self.metrics.record_request(
            spec.name, api, code, time.perf_counter() - started,
            version=answered.version.value
            if answered is not None and answered.HasField("version") else None,
            signature=answered.signature_name if answered is not None else "",
            entrypoint=REST_ENTRYPOINT)


class _RequestHandler(BaseHTTPRequestHandler):
  """One HTTP connection: reads each request's body and answers through the server's
  RestApiHandler, at most `max_concurrent_requests` at once across connections."""

  protocol_version = "HTTP/1.1"    # keep-alive, as curl and requests expect
  server_version = "aitm-serve"
  timeout = IDLE_CONNECTION_SECONDS
  # Headers and body leave in two writes; with Nagle's algorithm the body waited for the
  # client's delayed ACK, 40 ms on every request.
  disable_nagle_algorithm = True

  def do_GET(self):
    """GET: model status and metadata."""
    self._answer("GET")

  def do_POST(self):
    """POST: predict (classify and regress answer UNIMPLEMENTED)."""
    self._answer("POST")

  def do_PUT(self):
    """PUT: a malformed request under /v1/, as TF Serving answers."""
    self._answer("PUT")

  def do_DELETE(self):
    """DELETE: a malformed request under /v1/, as TF Serving answers."""
    self._answer("DELETE")

  def _read_body(self) -> Optional[bytes]:
    """The request body, or None after answering 413 when it is over the limit."""
    if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
      chunks, total = [], 0
      while True:
        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
          while self.rfile.readline().strip():   # trailers, up to the blank line
            pass
          return b"".join(chunks)
        total += size
        if total > MAX_REQUEST_BYTES:
          break
        chunks.append(self.rfile.read(size))
        self.rfile.readline()
    else:
      length = int(self.headers.get("Content-Length") or 0)
      if length < 0:
        raise ValueError(f"Content-Length {length}")
      if length <= MAX_REQUEST_BYTES:
        return self.rfile.read(length) if length > 0 else b""
    self.close_connection = True   # the rest of the body is not read
    self._send(413, _error_json(f"the request body is over this server's limit of "
                                f"{MAX_REQUEST_BYTES:,} bytes"))
    return None

  def _answer(self, method: str):
    try:
      body = self._read_body()
    except ValueError:
      self.close_connection = True
      self._send(400, _error_json("unreadable Content-Length or chunk size"))
      return
    if body is None:
      return
    if self.server.stopping:   # a keep-alive connection outliving stop()
      self.close_connection = True
      self._send(503, _error_json("the server is stopping"))
      return
    path = urllib.parse.urlsplit(self.path).path
    slots = self.server.request_slots
    if not slots.acquire(blocking=False):
      self._send(429, _error_json(
          f"Concurrent request limit of {self.server.max_concurrent_requests} exceeded "
          "(--max-concurrent-rpcs)"))
      return
    try:
      status, text = self.server.api.handle(method, path, body)
    finally:
      slots.release()
    self._send(status, text)

  def _send(self, status: int, text: str):
    data = text.encode("utf-8")
    try:
      self.send_response(status)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      self.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
      self.close_connection = True   # the client left; nothing to tell it

  def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
    """No access log (TF Serving logs none at its default verbosity)."""


class _HTTPServer(ThreadingHTTPServer):
  daemon_threads = True

  def __init__(self, address, api, max_concurrent_requests):
    self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    super().__init__(address, _RequestHandler)
    self.api = api
    self.max_concurrent_requests = max_concurrent_requests
    self.request_slots = threading.BoundedSemaphore(max_concurrent_requests)
    self.stopping = False


class RestApiServer:
  """TF Serving's REST API on one port, over the given gRPC servicers.

      rest = RestApiServer(prediction_service, model_service, "127.0.0.1", 8501)
      rest.start()      # serves in a background thread
      ...
      rest.stop()

  The port is bound when it is constructed (OSError when it can't be), and requests
  are answered from `start()` on.
  """

  def __init__(self, prediction_service, model_service, host: str = defaults.HOST,
               port: int = 0,
               max_concurrent_requests: int = defaults.DEFAULT_MAX_CONCURRENT_RPCS,
               log=print, metrics=None):
    if max_concurrent_requests < 1:
      raise ValueError("max_concurrent_requests must be at least 1")
    if not 0 <= port <= 65535:
      raise ValueError(f"the REST API's port must be from 0 to 65535, got {port}")
    self.handler = RestApiHandler(prediction_service, model_service, log, metrics)
    try:
      self._server = _HTTPServer((host, port), self.handler, max_concurrent_requests)
    except OSError as e:
      raise OSError(f"cannot listen on {host}:{port} for the REST API: {e}") from e
    self.port = self._server.server_address[1]
    self.url = f"http://{host if ':' not in host else f'[{host}]'}:{self.port}"
    self._thread = threading.Thread(target=self._server.serve_forever, name="rest-api",
                                    daemon=True)

  def start(self) -> int:
    """Starts answering requests; returns the port."""
    self._thread.start()
    return self.port

  def stop(self):
    """Stops answering and closes the port (requests in flight finish on their threads;
    a keep-alive connection's next request gets 503)."""
    self._server.stopping = True
    if self._thread.is_alive():
      self._server.shutdown()
    self._server.server_close()
