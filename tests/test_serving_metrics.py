"""`aitm serve`'s monitoring, over a tiny model (conftest.tiny_model_base): the Prometheus
endpoint, scraped over HTTP and read with prometheus_client's own parser, after good and
bad requests (counts by status code, latency histograms by version and signature,
versions by state), and the standard gRPC health service through grpc_health's stub,
NOT_SERVING until a version is AVAILABLE and again when none is."""

import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import (get_model_metadata_pb2, predict_pb2,
                                     prediction_service_pb2_grpc)

from pipeline import configs
from serving import metrics as serving_metrics
from serving.model_versions import ModelSource
from serving.server import LocalModelServer

MODEL = "tiny"
POLL = 0.2
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _serve(base=None, config_file=None, **kwargs):
  sources = None if config_file else [ModelSource(MODEL, str(base))]
  server = LocalModelServer(sources, config_file=config_file, port=0, poll_wait_seconds=POLL,
                            log=lambda *_: None, **kwargs)
  server.start()
  return server


def _scrape(server, path=serving_metrics.METRICS_PATH):
  """{(sample name, frozenset of labels): value} of one scrape of the server's endpoint."""
  url = f"http://127.0.0.1:{server.monitoring_port}{path}"
  with urllib.request.urlopen(url, timeout=30) as response:
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.read().decode()
  return {(sample.name, frozenset(sample.labels.items())): sample.value
          for family in text_string_to_metric_families(text) for sample in family.samples}


def _value(samples, name, **labels):
  """The sample `name` with exactly these labels; 0 when absent (a counter not yet
  incremented has no series)."""
  return samples.get((name, frozenset(labels.items())), 0.0)


def _buckets(samples, name, **labels):
  """[(upper bound, cumulative count)] of a histogram's series with these labels."""
  return sorted((float(dict(key)["le"]), value) for (sample, key), value in samples.items()
                if sample == name + "_bucket"
                and {k: v for k, v in key if k != "le"} == labels)


def _wait_for(condition, timeout=60):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if condition():
      return True
    time.sleep(0.05)
  return False


def _examples_request(model=MODEL, rows=2, version=None):
  example = tf.train.Example()
  example.features.feature["price"].int64_list.value.append(3)
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model
  if version is not None:
    request.model_spec.version.value = version
  request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example.SerializeToString()] * rows))
  return request


def _raw_request():
  request = predict_pb2.PredictRequest()
  request.model_spec.name = MODEL
  request.model_spec.signature_name = "serving_raw"
  for name, values, dtype in (("pid", [b"a", b"bc"], tf.string), ("price", [1, 2], tf.int64),
                              ("score", [0.5, 0.25], tf.float32)):
    request.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=dtype))
  return request


def _code(call):
  try:
    call()
  except grpc.RpcError as e:
    return e.code()
  return grpc.StatusCode.OK


def _health_status(stub, service):
  return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def _copy_in(source, base, version):
  """A complete version appears at once, as the Pusher publishes it (copy, then rename)."""
  staging = os.path.join(base, f".staging-{version}")
  shutil.copytree(source, staging)
  os.rename(staging, os.path.join(base, str(version)))


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_scrape_counts_requests_by_status_and_latencies_by_version_and_signature(
    tiny_model_base):
  server = _serve(tiny_model_base, monitoring_port=0)
  # A second server in the same process: its own registry, its own numbers.
  other = _serve(tiny_model_base, monitoring_port=0)
  channel = grpc.insecure_channel(server.address)
  stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  try:
    for _ in range(3):
      stub.Predict(_examples_request(), timeout=30)
    for _ in range(2):
      stub.Predict(_raw_request(), timeout=30)
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = MODEL
    stub.GetModelMetadata(metadata, timeout=30)
    bad_input = _examples_request()
    bad_input.inputs["nope"].CopyFrom(bad_input.inputs.pop("examples"))
    bad = [(_examples_request(version=9), grpc.StatusCode.NOT_FOUND),
           (bad_input, grpc.StatusCode.INVALID_ARGUMENT),
           (bad_input, grpc.StatusCode.INVALID_ARGUMENT),
           (_examples_request(model="no-such-model"), grpc.StatusCode.NOT_FOUND),
           (_examples_request(model="another-one"), grpc.StatusCode.NOT_FOUND)]
    for request, code in bad:
      assert _code(lambda: stub.Predict(request, timeout=30)) == code

    samples = _scrape(server)
    count = "aitm_serving_request_count_total"
    grpc_predict = dict(model_name=MODEL, api="Predict", entrypoint="GRPC")
    assert _value(samples, count, **grpc_predict, status="OK") == 5
    assert _value(samples, count, **grpc_predict, status="NOT_FOUND") == 1
    assert _value(samples, count, **grpc_predict, status="INVALID_ARGUMENT") == 2
    # Models that are not served share one label value, whatever names clients send.
    assert _value(samples, count, model_name="_unknown", api="Predict", entrypoint="GRPC",
                  status="NOT_FOUND") == 2
    assert not any(dict(labels).get("model_name") in ("no-such-model", "another-one")
                   for _, labels in samples)
    assert _value(samples, count, model_name=MODEL, api="GetModelMetadata", entrypoint="GRPC",
                  status="OK") == 1

    # Latency: answered requests only, by the version and signature that answered.
    latency = "aitm_serving_request_latency_seconds"
    runtime = "aitm_serving_runtime_latency_seconds"
    for signature, answered in (("serving_default", 3), ("serving_raw", 2)):
      labels = dict(grpc_predict, version="1", signature=signature)
      assert _value(samples, latency + "_count", **labels) == answered
      buckets = _buckets(samples, latency, **labels)
      assert len(buckets) == len(serving_metrics.LATENCY_BUCKETS)
      assert [value for _, value in buckets] == sorted(value for _, value in buckets)
      assert buckets[-1] == (float("inf"), answered)
      request_seconds = _value(samples, latency + "_sum", **labels)
      runtime_labels = dict(model_name=MODEL, version="1", signature=signature)
      assert _value(samples, runtime + "_count", **runtime_labels) == answered
      # The signature's time is part of the request's.
      assert 0 < _value(samples, runtime + "_sum", **runtime_labels) <= request_seconds
    assert not any(name.startswith(latency) and dict(labels).get("version") == "9"
                   for name, labels in samples)

    # Versions by state; the process's own metrics come with the server's registry.
    versions = "aitm_serving_model_versions"
    assert _value(samples, versions, model_name=MODEL, state="AVAILABLE") == 1
    for state in ("START", "LOADING", "UNLOADING", "END"):
      assert _value(samples, versions, model_name=MODEL, state=state) == 0
    assert _value(samples, "aitm_serving_model_versions_failed", model_name=MODEL) == 0
    assert _value(samples, "process_resident_memory_bytes") > 0

    # Any path answers (TF Serving's is the documented one), with the same counts.
    assert _value(_scrape(server, "/metrics"), count, **grpc_predict, status="OK") == 5
    # The other server saw none of these requests.
    assert _value(_scrape(other), count, **grpc_predict, status="OK") == 0
  finally:
    channel.close()
    server.stop()
    other.stop()


def test_rest_requests_are_counted_under_the_rest_entrypoint(tiny_model_base):
  """The REST API calls the gRPC servicers directly, past the interceptor: it counts its
  own requests, under TF Serving's REST entrypoint label."""
  import json
  server = _serve(tiny_model_base, monitoring_port=0, rest_port=0)

  def post(path, body):
    request = urllib.request.Request(server.rest.url + path, data=json.dumps(body).encode(),
                                     method="POST")
    try:
      with urllib.request.urlopen(request, timeout=30) as response:
        return response.status
    except urllib.error.HTTPError as e:
      return e.code

  try:
    instances = {"signature_name": "serving_raw",
                 "instances": [{"pid": "a", "price": 1, "score": 0.5}]}
    assert post(f"/v1/models/{MODEL}:predict", instances) == 200
    assert post(f"/v1/models/{MODEL}:predict", instances) == 200
    assert post(f"/v1/models/{MODEL}/versions/9:predict", instances) == 404
    assert post(f"/v1/models/{MODEL}:predict", {"instances": [{"nope": 1}]}) == 400
    with urllib.request.urlopen(f"{server.rest.url}/v1/models/{MODEL}/metadata",
                                timeout=30) as response:
      assert response.status == 200
    samples = _scrape(server)
    count = "aitm_serving_request_count_total"
    rest_predict = dict(model_name=MODEL, api="Predict", entrypoint="REST")
    assert _value(samples, count, **rest_predict, status="OK") == 2
    assert _value(samples, count, **rest_predict, status="NOT_FOUND") == 1
    assert _value(samples, count, **rest_predict, status="INVALID_ARGUMENT") == 1
    assert _value(samples, count, model_name=MODEL, api="GetModelMetadata", entrypoint="REST",
                  status="OK") == 1
    assert _value(samples, "aitm_serving_request_latency_seconds_count", **rest_predict,
                  version="1", signature="serving_raw") == 2
    # Nothing was counted twice as a gRPC request.
    assert not any(dict(labels).get("entrypoint") == "GRPC" for _, labels in samples)
  finally:
    server.stop()


def test_versions_by_state_follow_loads_unloads_and_failures(tiny_model_base, tmp_path):
  base = tmp_path / MODEL
  base.mkdir()
  _copy_in(os.path.join(tiny_model_base, "1"), base, 1)
  server = _serve(base, monitoring_port=0)
  versions = "aitm_serving_model_versions"
  try:
    # Version 2 is complete but its variables are damaged: it fails to load.
    damaged = tmp_path / "damaged"
    shutil.copytree(os.path.join(tiny_model_base, "1"), damaged)
    (damaged / "variables" / "variables.index").write_bytes(b"damaged")
    _copy_in(damaged, base, 2)
    assert _wait_for(lambda: _value(_scrape(server), "aitm_serving_model_versions_failed",
                                    model_name=MODEL) == 1)
    samples = _scrape(server)
    assert _value(samples, versions, model_name=MODEL, state="AVAILABLE") == 1
    assert _value(samples, versions, model_name=MODEL, state="END") == 1
    # A good version 3 replaces version 1, which is unloaded.
    _copy_in(os.path.join(tiny_model_base, "1"), base, 3)
    assert _wait_for(lambda: _value(_scrape(server), versions, model_name=MODEL,
                                    state="END") == 2)
    samples = _scrape(server)
    assert _value(samples, versions, model_name=MODEL, state="AVAILABLE") == 1
    assert _value(samples, "aitm_serving_model_versions_failed", model_name=MODEL) == 1
    with grpc.insecure_channel(server.address) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      assert stub.Predict(_examples_request(), timeout=30).model_spec.version.value == 3
    assert _value(_scrape(server), "aitm_serving_request_latency_seconds_count",
                  model_name=MODEL, api="Predict", entrypoint="GRPC", version="3",
                  signature="serving_default") == 1
  finally:
    server.stop()


def _write_config(path, base, generation):
  path.write_text(f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base}" '
                  'model_platform: "tensorflow" } }\n')
  # The server re-reads the file when its mtime changes: one of its own per generation,
  # even on file systems with coarse timestamps.
  stamp = 1_700_000_000 + 10 * generation
  os.utime(path, (stamp, stamp))


def test_health_is_not_serving_until_a_version_is_available_and_again_when_none_is(
    tiny_model_base, tmp_path):
  base, elsewhere = tmp_path / MODEL, tmp_path / "empty"
  base.mkdir()
  elsewhere.mkdir()
  config = tmp_path / "models.config"
  _write_config(config, base, 0)
  server = _serve(config_file=str(config), monitoring_port=0)
  channel = grpc.insecure_channel(server.address)
  health = health_pb2_grpc.HealthStub(channel)
  watched = queue.Queue()
  watch = health.Watch(health_pb2.HealthCheckRequest(service=MODEL))

  def follow():
    try:
      for response in watch:
        watched.put(response.status)
    except grpc.RpcError:   # cancelled at the end
      pass
  threading.Thread(target=follow, daemon=True).start()
  try:
    # Listening, nothing loaded: the server, the model and TF Serving's names say so.
    for service in ("", MODEL, "ModelService", "PredictionService"):
      assert _health_status(health, service) == NOT_SERVING, service
    with pytest.raises(grpc.RpcError) as unknown:
      _health_status(health, "no-such-model")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert _value(_scrape(server), "aitm_serving_model_versions", model_name=MODEL,
                  state="AVAILABLE") == 0
    assert watched.get(timeout=10) == NOT_SERVING

    # A version is published: SERVING once it is AVAILABLE, and Watch is told.
    _copy_in(os.path.join(tiny_model_base, "1"), base, 1)
    assert watched.get(timeout=60) == SERVING
    for service in ("", MODEL, "ModelService", "PredictionService"):
      assert _health_status(health, service) == SERVING, service
    assert _value(_scrape(server), "aitm_serving_model_versions", model_name=MODEL,
                  state="AVAILABLE") == 1

    # The config now points the model at a base path without versions: none is available.
    _write_config(config, elsewhere, 1)
    assert watched.get(timeout=60) == NOT_SERVING
    assert _health_status(health, "") == NOT_SERVING
    # Back to the published versions: SERVING again, without a restart.
    _write_config(config, base, 2)
    assert watched.get(timeout=60) == SERVING
    assert _health_status(health, "") == SERVING

    # A stopping server answers NOT_SERVING, and a later poll doesn't undo it.
    server.health.shut_down()
    time.sleep(3 * POLL)
    for service in ("", MODEL):
      assert _health_status(health, service) == NOT_SERVING, service
  finally:
    watch.cancel()
    channel.close()
    server.stop()


def test_a_taken_port_is_refused_by_name_and_leaves_nothing_listening(tiny_model_base):
  for taken_one in ("monitoring", "grpc"):
    with socket.socket() as taken:
      taken.bind(("127.0.0.1", 0))
      taken.listen()
      ports = {"monitoring": _free_port(), "grpc": _free_port(),
               taken_one: taken.getsockname()[1]}
      server = LocalModelServer([ModelSource(MODEL, tiny_model_base)], port=ports["grpc"],
                                poll_wait_seconds=POLL, monitoring_port=ports["monitoring"],
                                log=lambda *_: None)
      message = ("cannot serve metrics on" if taken_one == "monitoring" else
                 "cannot listen on") + f" 127.0.0.1:{ports[taken_one]}"
      with pytest.raises(OSError, match=message):
        server.start()
    # The other port was let go: it can be bound again.
    free_one, = set(ports) - {taken_one}
    with socket.socket() as again:
      again.bind(("127.0.0.1", ports[free_one]))


def test_aitm_serve_monitoring_port_serves_the_metrics(tiny_model_base):
  """The command as users run it: its log names the metrics' URL, which answers."""
  process = subprocess.Popen(
      [sys.executable, "-m", "cli.main", "serve", "--model-base-path", tiny_model_base,
       "--model-name", MODEL, "--port", "0", "--monitoring-port", "0"],
      cwd=configs.PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
      env={**os.environ, "PYTHONUNBUFFERED": "1"})
  # A server that never prints the line would hold the test forever: end it after 2 min.
  watchdog = threading.Timer(120, process.kill)
  watchdog.start()
  try:
    url = None
    for line in process.stdout:   # ends if the process exits
      match = re.search(r"Prometheus metrics on (http://\S+)", line)
      if match:
        url = match.group(1)
        break
    assert url and url.endswith(serving_metrics.METRICS_PATH), url
    with urllib.request.urlopen(url, timeout=30) as response:
      text = response.read().decode()
    versions = {tuple(sorted(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(text)
                if family.name == "aitm_serving_model_versions" for sample in family.samples}
    assert versions[(("model_name", MODEL), ("state", "AVAILABLE"))] == 1
  finally:
    watchdog.cancel()
    process.terminate()
    process.wait(30)
