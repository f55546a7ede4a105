"""Prometheus metrics of `aitm serve`, named after TF Serving's, on a registry of the server's own.

TF Serving 2.16 exports its metrics (with `--monitoring_config_file`) under its monitoring
paths with `/` turned into `:` (tensorflow_serving/util/prometheus_exporter.cc), such as
`:tensorflow:serving:request_count`. Prometheus keeps names that start with `:` for
recording rules, and prometheus_client adds `_total` to counters; so the local server keeps
TF Serving's stems under an `aitm_serving_` prefix, in seconds rather than microseconds
(labels and the full mapping: docs/serving.md, "Metrics and health"):

    aitm_serving_request_count_total        :tensorflow:serving:request_count
    aitm_serving_request_latency_seconds    :tensorflow:serving:request_latency
    aitm_serving_runtime_latency_seconds    :tensorflow:serving:runtime_latency
    aitm_serving_model_versions             (none: GetModelStatus's states, counted)
    aitm_serving_model_versions_failed      (none: versions whose last load failed)

As in TF Serving, `status` is the canonical code's name (`OK`, `NOT_FOUND`, ...) and the
latency histograms count successful requests only. Labels stay bounded whatever clients
send: a model name that is not served is counted as `model_name="_unknown"`, and versions
and signatures are labels only on answered requests, where they exist.

A registry per server (not prometheus_client's global one) lets two servers run in one
process, as the tests do, without registering the same names twice.
"""

import time
from typing import Callable, Dict, Mapping, Optional, Protocol, Tuple

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import start_wsgi_server
from tensorflow_serving.apis import get_model_status_pb2

# The gRPC service whose calls are counted, as TF Serving counts them (not ModelService
# or health checks, which probes would dominate).
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
# TF Serving's path for the metrics (its PrometheusExporter::kPrometheusPath); the local
# server answers on any path, this one included.
METRICS_PATH = "/monitoring/prometheus/metrics"
# model_name of requests for a model that is not served.
UNKNOWN_MODEL = "_unknown"
GRPC_ENTRYPOINT = "GRPC"
REST_ENTRYPOINT = "REST"   # serving.rest_api's requests, as TF Serving labels them
# Seconds, 1 ms to 1 min: the local server's Python request path costs milliseconds.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
                   10.0, 30.0, 60.0, float("inf"))

_State = get_model_status_pb2.ModelVersionStatus.State
# The states a version goes through (TF Serving's ModelVersionStatus), each one
# reported for every model, 0 included, so "no version AVAILABLE" is a value to alert on.
VERSION_STATES = tuple(name for name in _State.keys() if name != "UNKNOWN")


class VersionStates(Protocol):
  """What the metrics read of a served model (serving.server.ServedModel)."""

  def statuses(self) -> Dict[int, Tuple[int, str]]:
    """{version: (State, error message)} of every version seen so far."""


# () -> {model name: its versions}, the server's models as they are now.
ServedModels = Callable[[], Mapping[str, VersionStates]]


class ServingMetrics:
  """The server's metrics: requests by status, latencies, versions by state.

      metrics = ServingMetrics(registry.models)  # () -> {model name: ServedModel}
      server = grpc.server(pool, interceptors=[metrics.interceptor()])
      port = metrics.serve(0)                   # HTTP, for Prometheus to scrape
  """

  def __init__(self, served_models: ServedModels):
    self._served_models = served_models
    self.registry = CollectorRegistry(auto_describe=True)
    self.request_count = Counter(
        "aitm_serving_request_count", "PredictionService requests by model and status code.",
        ["model_name", "api", "entrypoint", "status"], registry=self.registry)
    self.request_latency = Histogram(
        "aitm_serving_request_latency_seconds",
        "Wall time of answered PredictionService requests, as the server saw them.",
        ["model_name", "api", "entrypoint", "version", "signature"],
        buckets=LATENCY_BUCKETS, registry=self.registry)
    self.runtime_latency = Histogram(
        "aitm_serving_runtime_latency_seconds",
        "Wall time in the SavedModel's signature function, of answered Predict requests.",
        ["model_name", "version", "signature"], buckets=LATENCY_BUCKETS,
        registry=self.registry)
    self.registry.register(_VersionStateCollector(served_models))
    ProcessCollector(registry=self.registry)
    self._http = None

  def model_label(self, model_name: str) -> str:
    """`model_name` when it is served, else UNKNOWN_MODEL: what a client names can't
    grow the label set without bound."""
    return model_name if model_name in self._served_models() else UNKNOWN_MODEL

  def record_request(self, model_name: str, api: str, code: grpc.StatusCode, seconds: float,
                     version: Optional[int] = None, signature: str = "",
                     entrypoint: str = GRPC_ENTRYPOINT) -> None:
    """Counts one request under its status code; an answered one (OK) also goes into the
    latency histogram under the version and signature that answered it."""
    model = self.model_label(model_name)
    self.request_count.labels(model, api, entrypoint, code.name).inc()
    if code == grpc.StatusCode.OK:
      self.request_latency.labels(model, api, entrypoint,
                                  "" if version is None else str(version),
                                  signature).observe(seconds)

  def record_runtime(self, model_name: str, version: int, signature: str,
                     seconds: float) -> None:
    """The time one signature call took, for a version that is loaded."""
    self.runtime_latency.labels(self.model_label(model_name), str(version),
                                signature).observe(seconds)

  def interceptor(self) -> grpc.ServerInterceptor:
    """A gRPC server interceptor that records every PredictionService call."""
    return _PredictionServiceInterceptor(self)

  def serve(self, port: int, host: str = "127.0.0.1") -> int:
    """Serves the registry in Prometheus' text format over HTTP on `port` (0: any free
    port), on any path (TF Serving's METRICS_PATH included); returns the port. OSError
    when the address is taken."""
    if self._http is not None:
      raise RuntimeError("the metrics are served already")
    self._http, _ = start_wsgi_server(port, addr=host, registry=self.registry)
    return self._http.server_port

  def stop(self) -> None:
    """Stops the HTTP endpoint, if serving."""
    if self._http is not None:
      self._http.shutdown()
      self._http.server_close()
      self._http = None


class _PredictionServiceInterceptor(grpc.ServerInterceptor):
  """Times each PredictionService call and reads its status code off the context, which
  holds the code the servicer aborted with (None: it answered)."""

  def __init__(self, metrics: ServingMetrics):
    self._metrics = metrics

  def intercept_service(self, continuation, handler_call_details):
    """The handler of a PredictionService call, wrapped to record it; others as they are."""
    handler = continuation(handler_call_details)
    service, _, api = handler_call_details.method.lstrip("/").partition("/")
    if handler is None or service != PREDICTION_SERVICE or handler.unary_unary is None:
      return handler
    call = handler.unary_unary
    metrics = self._metrics

    def observed(request, context):
      start = time.perf_counter()
      response = None
      try:
        response = call(request, context)
        return response
      finally:
        seconds = time.perf_counter() - start
        code = context.code() or (grpc.StatusCode.OK if response is not None
                                  else grpc.StatusCode.UNKNOWN)
        spec = response.model_spec if response is not None else None
        # MultiInference names its models per task, not in a model_spec of its own.
        asked = getattr(request, "model_spec", None)
        metrics.record_request(
            asked.name if asked is not None else "", api, code, seconds,
            version=spec.version.value if spec is not None and spec.HasField("version")
            else None,
            signature=spec.signature_name if spec is not None else "")

    return grpc.unary_unary_rpc_method_handler(
        observed, request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer)


class _VersionStateCollector:
  """Versions per model and state, read from the server's models at each scrape (so the
  numbers are never out of step with GetModelStatus)."""

  def __init__(self, served_models: ServedModels):
    self._served_models = served_models

  def describe(self):
    """Nothing ahead of a scrape: the models can change between scrapes."""
    return []

  def collect(self):
    """The two gauge families, from the models' states now."""
    by_state = GaugeMetricFamily(
        "aitm_serving_model_versions",
        "Versions of each model by state (TF Serving's ModelVersionStatus states; END "
        "holds unloaded versions and those that failed to load).",
        labels=["model_name", "state"])
    failed = GaugeMetricFamily(
        "aitm_serving_model_versions_failed",
        "Versions of each model whose last load failed (retried when their files change).",
        labels=["model_name"])
    for model, served in sorted(self._served_models().items()):
      states = served.statuses()
      counts = dict.fromkeys(VERSION_STATES, 0)
      for state, _ in states.values():
        counts[_State.Name(state)] += 1
      for state, count in counts.items():
        by_state.add_metric([model, state], count)
      failed.add_metric([model], sum(1 for state, error in states.values()
                                     if state == _State.END and error))
    yield by_state
    yield failed
