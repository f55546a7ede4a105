"""TF Serving's warmup file: the records the Trainer writes (models/warmup_requests.py),
and `aitm serve` replaying them before a version is AVAILABLE (serving/warmup.py), a
failing one failing the load. Over the tiny model (conftest.tiny_model_base) and the
session run's pushed model."""

import math
import os
import shutil
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc,
                                     prediction_log_pb2)

from models import warmup_requests
from serving.model_versions import ModelSource, VersionPolicy
from serving.server import LocalModelServer, RequestError

TINY_RAW = {"pid": tf.string, "price": tf.int64, "score": tf.float32}


def _example(**values) -> tf.train.Example:
  example = tf.train.Example()
  for name, value in values.items():
    feature = example.features.feature[name]
    if isinstance(value, bytes):
      feature.bytes_list.value.append(value)
    elif isinstance(value, int):
      feature.int64_list.value.append(value)
    else:
      feature.float_list.value.append(value)
  return example


ROWS = [_example(pid=b"p1", price=3, score=0.5, clk=1),
        _example(pid=b"p22", score=1.5, clk=0),            # no price: not for serving_raw
        _example(price=7, clk=0),                          # no pid, no score
        _example(pid=b"p333", price=-2, score=2.0, buy=1)]


def _tiny_version(tiny_model_base, base, version, logs=None):
  """A copy of the tiny model as `base/version`, with `logs` as its warmup file."""
  path = os.path.join(base, str(version))
  shutil.copytree(os.path.join(tiny_model_base, "1"), path)
  if logs is not None:
    warmup_requests.write_requests(path, logs)
  return path


def _sigmoid(x):
  return 1 / (1 + math.exp(-x))


def test_records_are_prediction_logs_for_both_signatures_from_raw_rows(tiny_model_base,
                                                                        tmp_path):
  logs = warmup_requests.build_requests(ROWS, TINY_RAW, rows=8)
  path = _tiny_version(tiny_model_base, str(tmp_path), 1, logs)
  # As TF Serving reads them: a TFRecord file of PredictionLogs, under assets.extra.
  file = os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
  records = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
             for r in tf.data.TFRecordDataset(file)]
  assert records == warmup_requests.read_requests(path) == logs
  assert [(r.WhichOneof("log_type"), r.predict_log.request.model_spec.signature_name)
          for r in records] == [("predict_log", "serving_default")] * 2 + [
              ("predict_log", "serving_raw")] * 2
  # One row, then every row (serving_raw: every row with its integer present); the
  # labels never sent.
  default_one, default_all, raw_one, raw_all = (r.predict_log.request for r in records)
  sent = [tf.train.Example.FromString(e)
          for e in tf.make_ndarray(default_all.inputs["examples"])]
  assert len(tf.make_ndarray(default_one.inputs["examples"])) == 1 and len(sent) == 4
  assert all(set(e.features.feature) <= set(TINY_RAW) for e in sent)
  assert [list(e.features.feature["price"].int64_list.value) for e in sent] == [
      [3], [], [7], [-2]]
  columns = {name: tf.make_ndarray(proto) for name, proto in raw_all.inputs.items()}
  assert list(columns["pid"]) == [b"p1", b"", b"p333"]          # missing: ''
  assert list(columns["price"]) == [3, 7, -2]
  assert columns["score"][0] == 0.5 and np.isnan(columns["score"][1])   # missing: NaN
  assert set(raw_one.inputs) == set(TINY_RAW)

  # Replayed through the SavedModel, each gives the model's outputs for its rows.
  model = tf.saved_model.load(path)
  for record in records:
    request = record.predict_log.request
    function = model.signatures[request.model_spec.signature_name]
    outputs = function(**{k: tf.constant(tf.make_ndarray(v))
                          for k, v in request.inputs.items()})
    assert set(outputs) == {"ctr"}
  by_examples = model.signatures["serving_default"](examples=tf.constant(
      tf.make_ndarray(default_all.inputs["examples"])))["ctr"].numpy()
  # The tiny model reads a missing price as 0.
  np.testing.assert_allclose(by_examples, [_sigmoid(p / 10) for p in (3, 0, 7, -2)],
                             rtol=1e-6)


def test_rows_without_every_integer_and_files_tf_serving_would_refuse(tmp_path):
  with pytest.raises(ValueError, match="serving_raw takes no inputs"):
    warmup_requests.build_requests(ROWS, {})
  with pytest.raises(ValueError, match="no rows"):
    warmup_requests.build_requests([], TINY_RAW)
  # No row with every integer: serving_default alone.
  only = warmup_requests.build_requests([ROWS[1]], TINY_RAW)
  assert [log.predict_log.request.model_spec.signature_name for log in only] == [
      "serving_default"]
  with pytest.raises(ValueError, match="1 to 1000 records"):
    warmup_requests.write_requests(str(tmp_path), [])
  directory = tmp_path / "model" / "assets.extra"
  directory.mkdir(parents=True)
  (directory / "tf_serving_warmup_requests").write_bytes(b"not a TFRecord file " * 8)
  with pytest.raises(warmup_requests.WarmupFileError, match=r"tf_serving_warmup_requests: "
                     r"not a TFRecord file after record 0 \(corrupted record at 0"):
    warmup_requests.read_requests(str(tmp_path / "model"))
  with tf.io.TFRecordWriter(str(directory / "tf_serving_warmup_requests")) as writer:
    writer.write(b"\xff\xff not a protobuf")
  with pytest.raises(warmup_requests.WarmupFileError, match="record 1 is not a PredictionLog"):
    warmup_requests.read_requests(str(tmp_path / "model"))
  log = warmup_requests.build_requests(ROWS, TINY_RAW, rows=1)[0]
  with tf.io.TFRecordWriter(str(directory / "tf_serving_warmup_requests")) as writer:
    for _ in range(1001):
      writer.write(log.SerializeToString())
  with pytest.raises(warmup_requests.WarmupFileError, match="more than 1000 warmup records"):
    warmup_requests.read_requests(str(tmp_path / "model"))
  assert warmup_requests.read_requests(str(tmp_path)) == []    # no file: nothing to run


def _status(stub, version):
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = "tiny"
  request.model_spec.version.value = version
  return stub.GetModelStatus(request, timeout=10).model_version_status[0]


def _until(condition, timeout=30):
  deadline = time.monotonic() + timeout
  while not condition():
    assert time.monotonic() < deadline, "timed out"
    time.sleep(0.1)


def test_the_server_replays_warmup_before_available_and_a_failing_one_fails_the_load(
    tiny_model_base, tmp_path):
  base = str(tmp_path / "tiny")
  good = warmup_requests.build_requests(ROWS, TINY_RAW)
  _tiny_version(tiny_model_base, base, 1, good)
  lines = []
  server = LocalModelServer([ModelSource("tiny", base, VersionPolicy(latest=2))], port=0,
                            poll_wait_seconds=0.2, log=lines.append)
  server.start()
  channel = grpc.insecure_channel(server.address)
  stub = model_service_pb2_grpc.ModelServiceStub(channel)
  try:
    assert _status(stub, 1).state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert any("version 1 AVAILABLE" in line and f"{len(good)} warmup requests" in line
               for line in lines), lines

    # Version 2's warmup sends price as a string: its load fails on that record, the
    # error is in GetModelStatus, it never serves, and version 1 keeps serving.
    bad = warmup_requests.build_requests(ROWS, TINY_RAW)
    price = bad[-1].predict_log.request.inputs["price"]
    price.CopyFrom(tf.make_tensor_proto(np.array([b"3"] * 3, dtype=object)))
    path = _tiny_version(tiny_model_base, base, 2, bad)
    _until(lambda: 2 in server.registry.get("tiny").statuses()
           and server.registry.get("tiny").statuses()[2][0]
           == get_model_status_pb2.ModelVersionStatus.END)
    status = _status(stub, 2)
    assert status.state == get_model_status_pb2.ModelVersionStatus.END
    assert status.status.error_message == (
        f"WarmupError: warmup record {len(bad)} of {len(bad)} (serving_raw) failed: "
        "INVALID_ARGUMENT: input 'price': expects int64 but got string")
    assert _status(stub, 1).state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    with pytest.raises(RequestError, match="Servable not found"):
      server.registry.get("tiny").resolve(_spec(2))

    # A warmup file that is not a TFRecord file fails it too, naming the file.
    file = warmup_requests.warmup_file(path)
    with open(file, "wb") as f:
      f.write(b"garbage " * 20)
    _until(lambda: "not a TFRecord file" in server.registry.get("tiny").statuses()[2][1])
    # Fixed (its files changed), it is loaded.
    warmup_requests.write_requests(path, good)
    _until(lambda: server.registry.get("tiny").statuses()[2][0]
           == get_model_status_pb2.ModelVersionStatus.AVAILABLE)
  finally:
    channel.close()
    server.stop()


def _spec(version):
  from tensorflow_serving.apis import model_pb2
  spec = model_pb2.ModelSpec(name="tiny")
  spec.version.value = version
  return spec


@pytest.mark.e2e
def test_the_trainer_writes_warmup_requests_that_the_model_answers(pipeline_run):
  """The session run's pushed model carries the warmup file: PredictionLogs for both
  signatures from eval rows, which the SavedModel answers, alike for both."""
  pushed = pipeline_run.first.pushed_dir.rstrip("/")
  logs = warmup_requests.read_requests(pushed)
  requests = [log.predict_log.request for log in logs]
  assert [r.model_spec.signature_name for r in requests] == [
      "serving_default", "serving_default", "serving_raw", "serving_raw"]
  model = tf.saved_model.load(pushed)
  raw_inputs = model.signatures["serving_raw"].structured_input_signature[1]
  assert set(requests[2].inputs) == set(raw_inputs)
  labels = {"clk", "buy"}
  outputs = []
  for request in requests:
    function = model.signatures[request.model_spec.signature_name]
    result = function(**{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
    (rows,) = {len(tf.make_ndarray(v)) for v in request.inputs.values()}
    for task in ("ctr", "cvr"):
      values = result[task].numpy()
      assert values.shape == (rows,) and np.all((values > 0) & (values < 1))
    outputs.append(result)
  examples = tf.make_ndarray(requests[1].inputs["examples"])
  assert len(examples) == warmup_requests.WARMUP_ROWS
  assert not labels & set(tf.train.Example.FromString(examples[0]).features.feature)
  # The generated data always has its one integer column (price), so both signatures
  # got the same rows.
  for task in ("ctr", "cvr"):
    np.testing.assert_allclose(outputs[1][task].numpy(), outputs[3][task].numpy(), atol=1e-6)
    np.testing.assert_allclose(outputs[0][task].numpy(), outputs[2][task].numpy(), atol=1e-6)
