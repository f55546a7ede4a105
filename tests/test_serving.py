"""TF Serving's gRPC API over the session run's pushed model: the client against the
local server (and against tensorflow_model_server too, when one is on PATH)."""

import csv
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc

from cli.main import main as aitm
from models.config import load_config
from models.features import ColumnType
from pipeline import configs
from serving.client import ServingClient, ServingError
from serving.model_versions import ModelSource
from serving.request_rows import RowError
from serving.server import LocalModelServer

pytestmark = pytest.mark.e2e
CONFIG = load_config(configs.CONFIG_PATH)
TASKS = sorted(t.name for t in CONFIG.tasks)
MODEL = configs.MODEL_NAME
FIRST_VERSION = 1
POLL = 0.2
# Real TF Serving answers the same suite when its binary is installed.
SERVERS = ["local"] + (["tensorflow_model_server"]
                       if shutil.which("tensorflow_model_server") else [])


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class _TFServing:
  """tensorflow_model_server in a subprocess, with LocalModelServer's interface."""

  def __init__(self, base_path):
    self.port = _free_port()
    self.process = subprocess.Popen(
        ["tensorflow_model_server", f"--port={self.port}", f"--model_name={MODEL}",
         f"--model_base_path={base_path}", "--file_system_poll_wait_seconds=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

  def start(self):
    return self.port

  def stop(self):
    self.process.terminate()
    self.process.wait(30)


def _start(kind, base_path, **kwargs):
  if kind == "local":
    server = LocalModelServer([ModelSource(MODEL, base_path, **kwargs)], port=0,
                              poll_wait_seconds=POLL, log=lambda *_: None)
  else:
    server = _TFServing(base_path)
  port = server.start()
  client = ServingClient(f"127.0.0.1:{port}", MODEL, timeout=30)
  client.wait_until_available(120)
  return server, client


@pytest.fixture(scope="module")
def pushed(pipeline_run):
  assert pipeline_run.first.pushed_dir, "the session run pushed nothing"
  return pipeline_run.first.pushed_dir.rstrip("/")


@pytest.fixture(scope="module", params=SERVERS)
def served(request, pushed, tmp_path_factory):
  """A server over a base path holding the pushed model as version 1."""
  base = tmp_path_factory.mktemp("serving") / MODEL
  shutil.copytree(pushed, base / str(FIRST_VERSION))
  server, client = _start(request.param, str(base))
  yield request.param, server, client
  client.close()
  server.stop()


@pytest.fixture(scope="module")
def rows(pipeline_run):
  with open(os.path.join(pipeline_run.data_dir, "data.csv")) as f:
    return list(csv.DictReader(f))[:300]


@pytest.fixture(scope="module")
def in_process(pushed, rows):
  """The pushed SavedModel called in this process on the same rows, both signatures,
  with inputs built from the config (not by the client's code)."""
  model = tf.saved_model.load(pushed)
  examples, raw = [], {}
  for row in rows:
    example = tf.train.Example()
    for column in CONFIG.columns:
      if column.name in CONFIG.labels or row[column.name] == "":
        continue
      feature = example.features.feature[column.name]
      if column.type is ColumnType.INT:
        feature.int64_list.value.append(int(row[column.name]))
      else:
        feature.bytes_list.value.append(row[column.name].encode())
    examples.append(example.SerializeToString())
  for column in CONFIG.columns:
    if column.name not in CONFIG.labels:
      values = [r[column.name] for r in rows]
      raw[column.name] = tf.constant([int(v) for v in values], tf.int64) \
          if column.type is ColumnType.INT else tf.constant(values)
  by_examples = model.signatures["serving_default"](examples=tf.constant(examples))
  by_raw = model.signatures["serving_raw"](**raw)
  return ({t: v.numpy() for t, v in by_examples.items()},
          {t: v.numpy() for t, v in by_raw.items()})


def test_model_is_available_with_the_pushed_version(served):
  _, _, client = served
  status = client.status()
  assert [(s.version, s.state) for s in status] == [(FIRST_VERSION, "AVAILABLE")]
  assert client.status(version=FIRST_VERSION)[0].state == "AVAILABLE"


def test_metadata_lists_both_signatures_and_the_raw_contract(served):
  _, _, client = served
  version, signatures = client.metadata()
  assert version == FIRST_VERSION
  assert {"serving_default", "serving_raw"} <= set(signatures)
  raw = signatures["serving_raw"]
  expected = {c.name for c in CONFIG.columns if c.name not in CONFIG.labels}
  assert set(raw.inputs) == expected
  assert raw.inputs["price"].dtype == tf.int64.as_datatype_enum
  assert raw.inputs["pid"].dtype == tf.string.as_datatype_enum
  assert set(signatures["serving_default"].outputs) == set(TASKS)
  assert list(signatures["serving_default"].inputs) == ["examples"]


@pytest.mark.parametrize("signature", ["serving_default", "serving_raw"])
def test_predictions_equal_in_process_ones(served, rows, in_process, signature):
  _, _, client = served
  # 300 rows in batches of 128: three Predict calls, reassembled in row order.
  scores = client.predict(rows, signature=signature, batch_size=128)
  expected = in_process[0] if signature == "serving_default" else in_process[1]
  assert sorted(scores) == TASKS
  for task in TASKS:
    assert scores[task].shape == (len(rows),)
    np.testing.assert_allclose(scores[task], expected[task], rtol=0, atol=1e-6)
  assert np.all(scores["cvr"] <= scores["ctr"] + 1e-6)


def test_missing_values_and_bad_rows(served, rows):
  _, _, client = served
  row = dict(rows[0], pvalue_level="", new_user_class_level=None)
  del row["tag_brand_list"]
  both = [client.predict([row], signature=s) for s in ("serving_default", "serving_raw")]
  for task in TASKS:
    assert 0 < both[0][task][0] < 1
    np.testing.assert_allclose(both[0][task], both[1][task], atol=1e-6)
  with pytest.raises(RowError, match=r"row 2, column 'price'.*'cheap' is not a valid int"):
    client.predict([rows[0], dict(rows[1], price="cheap")])
  with pytest.raises(RowError, match=r"row 1, column 'price': missing"):
    client.predict([dict(rows[0], price="")], signature="serving_raw")


def _raw_predict(client, signature="serving_default", name=MODEL, version=None, label=None,
                 **inputs):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = name
  request.model_spec.signature_name = signature
  if version is not None:
    request.model_spec.version.value = version
  if label:
    request.model_spec.version_label = label
  for key, value in inputs.items():
    request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
  stub = prediction_service_pb2_grpc.PredictionServiceStub(client._channel)
  return stub.Predict(request, timeout=30)


def _good_example(rows):
  example = tf.train.Example()
  example.features.feature["pid"].bytes_list.value.append(rows[0]["pid"].encode())
  return np.array([example.SerializeToString()], dtype=object)


BAD_REQUESTS = {
    "unknown model": (dict(name="ctr_model"), grpc.StatusCode.NOT_FOUND, "ctr_model"),
    "unknown version": (dict(version=99), grpc.StatusCode.NOT_FOUND, "99"),
    "unknown label": (dict(label="canary"), grpc.StatusCode.INVALID_ARGUMENT, "canary"),
    "unknown signature": (dict(signature="serving_fast"), grpc.StatusCode.FAILED_PRECONDITION,
                          "serving_fast"),
    "wrong input name": (dict(inputs={"example": "good"}), grpc.StatusCode.INVALID_ARGUMENT,
                         "example"),
    "wrong dtype": (dict(inputs={"examples": np.array([1.5], np.float32)}),
                    grpc.StatusCode.INVALID_ARGUMENT, "'examples'"),
    "wrong shape": (dict(inputs={"examples": "good2d"}), grpc.StatusCode.INVALID_ARGUMENT,
                    "'examples'"),
    "unparsable tf.Example": (dict(inputs={"examples": np.array([b"\xff not a proto"],
                                                                dtype=object)}),
                              grpc.StatusCode.INVALID_ARGUMENT, "'examples'"),
    "raw input of the wrong dtype": (dict(signature="serving_raw", inputs="raw price str"),
                                     grpc.StatusCode.INVALID_ARGUMENT, "'price'"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_gets_its_code_and_the_server_keeps_serving(served, rows, case):
  kind, _, client = served
  spec, code, named = BAD_REQUESTS[case]
  spec = dict(spec)
  inputs = spec.pop("inputs", {"examples": "good"})
  good = _good_example(rows)
  if inputs == "raw price str":
    inputs = {k: np.array([v.encode()], dtype=object) if v else np.array([b""], dtype=object)
              for k, v in rows[0].items() if k not in CONFIG.labels}
  else:
    inputs = {k: good if isinstance(v, str) and v == "good" else
              np.stack([good, good], axis=1) if isinstance(v, str) else v
              for k, v in inputs.items()}
  with pytest.raises(grpc.RpcError) as error:
    _raw_predict(client, **spec, **inputs)
  assert error.value.code() == code, error.value.details()
  if kind == "local":   # TF Serving's own wording differs; its codes are the same
    assert named in error.value.details()
  response = _raw_predict(client, examples=good)
  assert set(response.outputs) == set(TASKS)
  assert response.model_spec.version.value == FIRST_VERSION


def test_classify_is_unimplemented_and_metadata_needs_a_field(served):
  kind, _, client = served
  stub = prediction_service_pb2_grpc.PredictionServiceStub(client._channel)
  request = classification_pb2.ClassificationRequest()
  request.model_spec.name = MODEL
  with pytest.raises(grpc.RpcError) as error:
    stub.Classify(request, timeout=30)
  if kind == "local":   # TF Serving refuses it too: the model has no classify signature
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
  with pytest.raises(ServingError) as error:
    client.status(version=42)
  assert error.value.code == grpc.StatusCode.NOT_FOUND


def test_concurrent_clients_complete_without_errors(served, rows):
  _, server, _ = served
  clients, seconds = 16, 10.0
  done, errors = [0] * clients, []
  deadline = time.monotonic() + seconds

  def work(i):
    with ServingClient(f"127.0.0.1:{server.port}", MODEL, timeout=30) as client:
      batch = rows[i * 8:(i + 1) * 8]
      while time.monotonic() < deadline:
        try:
          scores = client.predict(batch, signature="serving_raw" if i % 2 else
                                  "serving_default")
          assert scores["ctr"].shape == (len(batch),)
          done[i] += 1
        except Exception as e:  # noqa: BLE001 - every failure is counted
          errors.append(repr(e))

  threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(seconds + 60)
  assert errors == []
  assert all(n > 0 for n in done), done


def test_cli_predict_writes_one_line_per_row(served, rows, in_process, tmp_path, capsys):
  _, server, _ = served
  csv_path = tmp_path / "rows.csv"
  with open(csv_path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows[:20])
  aitm(["predict", "--server", f"127.0.0.1:{server.port}", "--input", str(csv_path)])
  lines = capsys.readouterr().out.strip().splitlines()
  assert lines[0] == ",".join(TASKS) and len(lines) == 21
  ctr = np.array([float(line.split(",")[TASKS.index("ctr")]) for line in lines[1:]])
  np.testing.assert_allclose(ctr, in_process[0]["ctr"][:20], rtol=1e-5)

  jsonl = tmp_path / "rows.jsonl"
  jsonl.write_text("\n".join(json.dumps(r) for r in rows[:5]) + "\n")
  out = tmp_path / "scores.jsonl"
  aitm(["predict", "--server", f"127.0.0.1:{server.port}", "--input", str(jsonl),
        "--signature", "serving_raw", "--output", str(out), "--version", str(FIRST_VERSION)])
  scored = [json.loads(line) for line in out.read_text().splitlines()]
  assert len(scored) == 5 and set(scored[0]) == set(TASKS)
  np.testing.assert_allclose([s["cvr"] for s in scored], in_process[1]["cvr"][:5], atol=1e-6)

  with pytest.raises(SystemExit, match="NOT_FOUND"):
    aitm(["predict", "--server", f"127.0.0.1:{server.port}", "--input", str(csv_path),
          "--model-name", "nope"])


def _copy_partially(source, target):
  """A push caught mid-copy: the graph and the variables index, no variable data."""
  os.makedirs(os.path.join(target, "variables"))
  shutil.copy(os.path.join(source, "saved_model.pb"), target)
  shutil.copy(os.path.join(source, "variables", "variables.index"),
              os.path.join(target, "variables"))


def _wait_for(condition, seconds=120.0):
  deadline = time.monotonic() + seconds
  while time.monotonic() < deadline:
    if condition():
      return True
    time.sleep(POLL)
  return False


def test_hot_reload_serves_a_new_push_and_never_a_half_copied_one(pushed, rows, tmp_path):
  base = tmp_path / MODEL
  shutil.copytree(pushed, base / "1")
  server, client = _start("local", str(base))
  try:
    _copy_partially(pushed, str(base / "2"))
    time.sleep(POLL * 10)
    assert [(s.version, s.state) for s in client.status()] == [(1, "AVAILABLE")]
    assert client.metadata()[0] == 1
    assert client.predict(rows[:3])["ctr"].shape == (3,)

    shutil.rmtree(base / "2")
    shutil.copytree(pushed, base / "2")
    assert _wait_for(lambda: client.metadata()[0] == 2)
    assert _wait_for(lambda: {s.version: s.state for s in client.status()} ==
                     {2: "AVAILABLE", 1: "END"})
    with pytest.raises(ServingError) as error:
      client.predict(rows[:1], version=1)
    assert error.value.code == grpc.StatusCode.NOT_FOUND

    # Complete by its files, but the variables are garbage: reported, not served.
    shutil.copytree(pushed, base / "3")
    data = [p for p in os.listdir(base / "3" / "variables") if p.startswith("variables.data")]
    (base / "3" / "variables" / data[0]).write_bytes(b"\0" * 64)
    assert _wait_for(lambda: any(s.version == 3 and s.state == "END" and s.error
                                 for s in client.status()))
    assert client.metadata()[0] == 2
    scores = client.predict(rows[:3])
    assert scores["cvr"].shape == (3,)
  finally:
    client.close()
    server.stop()


@pytest.mark.parametrize("kind", SERVERS)
def test_rollback_is_picked_up_and_a_later_push_serves_again(kind, pushed, rows, tmp_path,
                                                             capsys):
  """`aitm rollback` under the latest policy: the server unloads the rolled-back
  version and serves the one before; the next push (numbered above both) is served."""
  from serving import version_store
  base = tmp_path / MODEL
  for version in (1, 2):
    version_store.publish(pushed, str(base), version=version)
  server, client = _start(kind, str(base))
  try:
    assert _wait_for(lambda: client.metadata()[0] == 2)
    aitm(["rollback", "--serving-dir", str(tmp_path), "--model-name", MODEL])
    assert "version 1 is now the newest" in capsys.readouterr().out
    assert _wait_for(lambda: client.metadata()[0] == 1)
    assert _wait_for(lambda: [s.version for s in client.status()
                              if s.state == "AVAILABLE"] == [1])
    assert client.predict(rows[:3])["ctr"].shape == (3,)

    pushed_again = version_store.publish(pushed, str(base), keep=2)
    assert int(os.path.basename(pushed_again)) > 2   # above the rolled-back version
    assert _wait_for(lambda: client.metadata()[0] == int(os.path.basename(pushed_again)))
  finally:
    client.close()
    server.stop()


def test_two_versions_and_labels_from_a_model_config_file(pushed, rows, tmp_path):
  base = tmp_path / MODEL
  for version in (1, 2):
    shutil.copytree(pushed, base / str(version))
  config = tmp_path / "models.config"
  config.write_text(f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base}" '
                    'model_platform: "tensorflow" model_version_policy { latest { '
                    'num_versions: 2 } } version_labels { key: "stable" value: 1 } } }\n')
  server = LocalModelServer(port=0, poll_wait_seconds=POLL, config_file=str(config),
                            log=lambda *_: None)
  port = server.start()
  try:
    with ServingClient(f"127.0.0.1:{port}", MODEL) as client:
      client.wait_until_available(120)
      assert _wait_for(lambda: len(client.status()) == 2)
      assert client.metadata(label="stable")[0] == 1
      assert client.metadata()[0] == 2
      a = client.predict(rows[:4], label="stable")
      b = client.predict(rows[:4], version=2)
      np.testing.assert_allclose(a["ctr"], b["ctr"], atol=1e-6)   # the same model twice
      # Relabelling in the file is picked up without a restart.
      time.sleep(1.1)   # a new mtime on coarse file systems
      config.write_text(config.read_text().replace("value: 1", "value: 2"))
      assert _wait_for(lambda: client.metadata(label="stable")[0] == 2)
  finally:
    server.stop()


def test_client_retries_unavailable_until_the_server_is_up(pushed, rows, tmp_path):
  base = tmp_path / MODEL
  shutil.copytree(pushed, base / "1")
  port = _free_port()
  with ServingClient(f"127.0.0.1:{port}", MODEL, retries=0, timeout=5) as impatient:
    with pytest.raises(ServingError) as error:
      impatient.status()
    assert error.value.code == grpc.StatusCode.UNAVAILABLE
  server = LocalModelServer([ModelSource(MODEL, str(base))], port=port, poll_wait_seconds=POLL,
                            log=lambda *_: None)
  starter = threading.Timer(1.0, server.start)
  starter.start()
  try:
    with ServingClient(f"127.0.0.1:{port}", MODEL, retries=20, backoff=0.2,
                       max_backoff=2.0, timeout=10) as client:
      scores = client.predict(rows[:2])   # retried while the server loads the model
      assert scores["ctr"].shape == (2,)
  finally:
    starter.join()
    server.stop()
