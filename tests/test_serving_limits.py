"""`aitm serve` against requests that would crash, hang or exhaust it, over a tiny model
(conftest.tiny_model_base): declared shapes larger than the values sent, batches over
the limit, unknown dtypes, more concurrent requests than allowed, expired deadlines,
and a poller whose poll fails."""

import os
import shutil
import threading
import time

import grpc
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from cli.main import build_parser
from serving import server as server_module
from serving.model_versions import ModelSource, VersionPolicy
from serving.server import LocalModelServer

MODEL = "tiny"


def _rss_bytes() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _serve(base, **kwargs):
  server = LocalModelServer([ModelSource(MODEL, base)], port=0, poll_wait_seconds=0.2,
                            log=kwargs.pop("log", lambda *_: None), **kwargs)
  server.start()
  channel = grpc.insecure_channel(server.address)
  return server, channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _examples_request(rows=2, price=3):
  example = tf.train.Example()
  example.features.feature["price"].int64_list.value.append(price)
  request = predict_pb2.PredictRequest()
  request.model_spec.name = MODEL
  request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example.SerializeToString()] * rows))
  return request


def _declaring(dims, values=(b"",), dtype=types_pb2.DT_STRING):
  """A PredictRequest whose `examples` tensor declares `dims` and carries `values`."""
  proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
      dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]))
  proto.string_val.extend(values)
  request = predict_pb2.PredictRequest()
  request.model_spec.name = MODEL
  request.inputs["examples"].CopyFrom(proto)
  return request


@pytest.fixture(scope="module")
def tiny(tiny_model_base):
  server, channel, stub = _serve(tiny_model_base, max_batch_size=1000)
  yield stub
  channel.close()
  server.stop()


def test_a_tiny_request_declaring_a_huge_shape_is_refused_before_allocating(tiny):
  before = _rss_bytes()
  for dims in ([20_000_000], [2_000_000_000], [1, 3_000_000_000]):
    request = _declaring(dims)
    assert len(request.SerializeToString()) < 60
    with pytest.raises(grpc.RpcError) as refused:
      tiny.Predict(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "but the tensor carries 1" in refused.value.details() or \
        "over this server's limit" in refused.value.details()
  # Fewer values than the shape declares are refused too, not padded.
  with pytest.raises(grpc.RpcError) as short:
    tiny.Predict(_declaring([3], [b"", b""]), timeout=30)
  assert "declares 3 values but the tensor carries 2" in short.value.details()
  reply = tiny.Predict(_examples_request(), timeout=30)
  assert tf.make_ndarray(reply.outputs["ctr"])[0] == pytest.approx(1 / (1 + 2.718281828 ** -0.3),
                                                                   1e-4)
  assert _rss_bytes() - before < 20 << 20


def test_a_batch_over_the_limit_and_an_unknown_dtype_are_invalid_arguments(tiny):
  with pytest.raises(grpc.RpcError) as big:
    tiny.Predict(_examples_request(rows=1001), timeout=30)
  assert big.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "batch of 1,001 rows is over this server's limit of 1,000" in big.value.details()
  assert tiny.Predict(_examples_request(rows=1000), timeout=30).outputs["ctr"].tensor_shape
  with pytest.raises(grpc.RpcError) as unknown:
    tiny.Predict(_declaring([1], dtype=999), timeout=30)
  assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "unknown dtype 999" in unknown.value.details()
  with pytest.raises(grpc.RpcError) as negative:
    tiny.Predict(_declaring([-1]), timeout=30)
  assert negative.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture()
def slow_signature(monkeypatch):
  """Every Predict spends 0.6 s in the model; counts the calls."""
  calls = []
  real = server_module._run_signature

  def slow(function, tensors, name):
    calls.append(time.monotonic())
    time.sleep(0.6)
    return real(function, tensors, name)
  monkeypatch.setattr(server_module, "_run_signature", slow)
  return calls


def test_requests_beyond_the_concurrency_cap_get_resource_exhausted(tiny_model_base,
                                                                    slow_signature):
  server, channel, stub = _serve(tiny_model_base, max_concurrent_rpcs=2)
  codes = []

  def call():
    try:
      stub.Predict(_examples_request(), timeout=30)
      codes.append(grpc.StatusCode.OK)
    except grpc.RpcError as e:
      codes.append(e.code())
  try:
    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
  finally:
    channel.close()
    server.stop()
  assert codes.count(grpc.StatusCode.OK) >= 2
  assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
  assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}


def test_a_request_whose_deadline_passed_is_not_computed(tiny_model_base, monkeypatch):
  """Reading the request takes longer than the client waits: the model is not run for
  it, and the client sees DEADLINE_EXCEEDED."""
  real_inputs, real_run = server_module._tensor_inputs, server_module._run_signature
  runs = []

  def slow_inputs(*args):
    time.sleep(0.6)
    return real_inputs(*args)

  def counted_run(*args):
    runs.append(1)
    return real_run(*args)
  monkeypatch.setattr(server_module, "_tensor_inputs", slow_inputs)
  monkeypatch.setattr(server_module, "_run_signature", counted_run)
  server, channel, stub = _serve(tiny_model_base)
  try:
    with pytest.raises(grpc.RpcError) as late:
      stub.Predict(_examples_request(), timeout=0.3)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(0.8)
    assert runs == []
    stub.Predict(_examples_request(), timeout=30)
    assert runs == [1]
  finally:
    channel.close()
    server.stop()


def test_the_poller_outlives_a_failing_poll_and_reports_a_version_that_failed(
    tiny_model_base, tmp_path, monkeypatch):
  base = tmp_path / MODEL
  shutil.copytree(os.path.join(tiny_model_base, "1"), base / "1")
  logged = []
  server, channel, stub = _serve(str(base), log=logged.append)
  status = model_service_pb2_grpc.ModelServiceStub(channel)
  real = server.registry.poll
  failures = []

  def flaky():
    if not failures:
      failures.append(1)
      raise tf.errors.UnknownError(None, None, "the mount went away")
    real()
  monkeypatch.setattr(server.registry, "poll", flaky)
  try:
    # A complete version whose variables are damaged: it fails to load, and says so.
    shutil.copytree(base / "1", base / "2")
    for shard in (base / "2" / "variables").glob("variables.data-*"):
      shard.write_bytes(b"\xff" * shard.stat().st_size)
    (base / "2" / "variables" / "variables.index").write_bytes(b"damaged")
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    request.model_spec.version.value = 2
    deadline, version_2 = time.monotonic() + 30, None
    while time.monotonic() < deadline:
      try:
        version_2, = status.GetModelStatus(request, timeout=30).model_version_status
        if version_2.status.error_message:
          break
      except grpc.RpcError:
        pass
      time.sleep(0.1)
    assert version_2.state == get_model_status_pb2.ModelVersionStatus.END
    assert "version 2 failed to load" in " ".join(logged)
    # The poller goes on: a good version 3 is served.
    shutil.copytree(base / "1", base / "3")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
      reply = stub.Predict(_examples_request(), timeout=30)
      if reply.model_spec.version.value == 3:
        break
      time.sleep(0.1)
    assert reply.model_spec.version.value == 3
    assert failures and any("poll failed" in line and "the mount went away" in line
                            for line in logged)
  finally:
    channel.close()
    server.stop()


def test_a_policy_of_no_versions_is_refused():
  for value in ("0", "-1"):
    with pytest.raises(SystemExit):
      build_parser().parse_args(["serve", "--model-base-path", "x", "--num-versions", value])
  with pytest.raises(ValueError, match="at least 1 version"):
    VersionPolicy(latest=0)
