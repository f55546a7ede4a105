"""TF Serving's REST API on `aitm serve --rest-port`, called with plain HTTP clients
(urllib, http.client, the bytes curl sends) and compared with the gRPC port's answers
to the same requests: predictions to 1e-6 for both signatures in both forms (b64
tf.Examples among them), status and metadata JSON, and TF Serving's error JSON and
HTTP status codes. Over conftest.tiny_model_base (versions 1 and 2, labels) and a
small model with four outputs of four dtypes."""

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from pipeline import configs
from serving import rest_api
from serving import server as server_module
from serving.model_versions import ModelSource
from serving.rest_api import HTTP_STATUS
from serving.server import LocalModelServer

MODEL, MULTI = "tiny", "multi"
MAX_BATCH = 50
# serving_raw's rows; the same as tf.Examples for serving_default (prices only).
ROWS = [{"pid": "430548_1007", "price": 3, "score": 0.25},
        {"pid": "café", "price": -2, "score": 1.5},
        {"pid": "", "price": 120, "score": -0.125}]


def _example(price=None) -> bytes:
  example = tf.train.Example()
  if price is not None:
    example.features.feature["price"].int64_list.value.append(price)
  return example.SerializeToString()


EXAMPLES = [_example(3), _example(-2), _example(120), _example()]   # the last: no price
B64 = [{"b64": base64.b64encode(e).decode()} for e in EXAMPLES]


def _quiet(*_):
  pass


@pytest.fixture(scope="module")
def multi_model_base(tmp_path_factory):
  """Version 1 of a model with two inputs and four outputs of four dtypes, one of them
  a string whose name ends in `_bytes` (TF Serving writes those as b64)."""

  class Multi(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x"),
                                  tf.TensorSpec([None], tf.string, name="tag")])
    def serve(self, x, tag):
      return {"total": tf.reduce_sum(tf.cast(x, tf.float64), axis=1) / 3,
              "scaled": x * 0.5,
              "tag_bytes": tag,
              "length": tf.cast(tf.strings.length(tag), tf.int64)}

  base = tmp_path_factory.mktemp("multi") / MULTI
  module = Multi()
  tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": module.serve})
  return str(base)


class _Served:
  """A LocalModelServer with both ports, a gRPC stub for each service, and an HTTP
  client for the REST port."""

  def __init__(self, server):
    self.server = server
    self.url = server.rest.url
    self.channel = grpc.insecure_channel(server.address)
    self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
    self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

  def http(self, method, path, body=None, headers=None):
    """(HTTP status, parsed JSON, Content-Type) of one request."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=headers or {})
    try:
      with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, json.loads(response.read()), response.headers["Content-Type"]
    except urllib.error.HTTPError as e:
      return e.code, json.loads(e.read()), e.headers["Content-Type"]

  def grpc_predict(self, inputs, signature="", version=None, label=None, model=MODEL):
    """{output: ndarray}, or (code, details) when refused."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
      request.model_spec.version.value = version
    if label is not None:
      request.model_spec.version_label = label
    for name, value in inputs.items():
      request.inputs[name].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto)
                                    else tf.make_tensor_proto(value))
    try:
      reply = self.predictions.Predict(request, timeout=60)
    except grpc.RpcError as e:
      return e.code(), e.details()
    return {name: tf.make_ndarray(proto) for name, proto in reply.outputs.items()}

  def close(self):
    self.channel.close()
    self.server.stop()


def _serve(tmp_path, sources=None, config_file=None, **kwargs):
  server = LocalModelServer(sources, port=0, rest_port=0, poll_wait_seconds=0.2,
                            config_file=config_file, log=kwargs.pop("log", _quiet), **kwargs)
  server.start()
  return _Served(server)


@pytest.fixture(scope="module")
def served(tiny_model_base, multi_model_base, tmp_path_factory):
  """`tiny` at versions 1 (scale 10) and 2 (scale 5), labelled stable and canary, and
  `multi`, from a model config file; batches over MAX_BATCH rows are refused."""
  root = tmp_path_factory.mktemp("rest")
  shutil.copytree(os.path.join(tiny_model_base, "1"), root / MODEL / "1")
  shutil.copytree(os.path.join(tiny_model_base + "-v2", "1"), root / MODEL / "2")
  config = root / "models.config"
  config.write_text(
      f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{root / MODEL}" '
      'model_platform: "tensorflow" model_version_policy { latest { num_versions: 2 } } '
      'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } }'
      f' config {{ name: "{MULTI}" base_path: "{multi_model_base}" '
      'model_platform: "tensorflow" } }\n')
  served = _serve(root, config_file=str(config), max_batch_size=MAX_BATCH)
  yield served
  served.close()


# -- status and metadata ------------------------------------------------------

def _grpc_status(served, version=None, label=None):
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = MODEL
  if version is not None:
    request.model_spec.version.value = version
  if label:
    request.model_spec.version_label = label
  return json_format.MessageToDict(served.models.GetModelStatus(request, timeout=30),
                                   including_default_value_fields=True)


def test_status_json_is_tf_servings_and_the_grpc_answer(served):
  available = {"state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
  status, body, content_type = served.http("GET", f"/v1/models/{MODEL}")
  assert (status, content_type) == (200, "application/json")
  assert body == {"model_version_status": [{"version": "2", **available},
                                           {"version": "1", **available}]}
  assert body == _grpc_status(served)
  for path, version, label in (("/versions/1", 1, None), ("/labels/canary", None, "canary"),
                               ("/labels/stable", None, "stable")):
    status, body, _ = served.http("GET", f"/v1/models/{MODEL}{path}")
    assert status == 200 and body == _grpc_status(served, version, label)
    expected = str(version or {"canary": 2, "stable": 1}[label])
    assert body == {"model_version_status": [{"version": expected, **available}]}
  # TF Serving's paths are case-insensitive and its names URL-decoded.
  assert served.http("GET", "/V1/Models/%74iny/versions/1")[:2] == \
      (200, {"model_version_status": [{"version": "1", **available}]})


def test_metadata_json_has_the_model_spec_and_every_signature_def(served):
  status, body, _ = served.http("GET", f"/v1/models/{MODEL}/metadata")
  assert status == 200 and set(body) == {"model_spec", "metadata"}
  assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": "2"}
  request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
  request.model_spec.name = MODEL
  signatures = get_model_metadata_pb2.SignatureDefMap()
  served.predictions.GetModelMetadata(request, timeout=30).metadata["signature_def"].Unpack(
      signatures)
  assert body["metadata"] == {"signature_def": json_format.MessageToDict(
      signatures, including_default_value_fields=True, preserving_proto_field_name=True)}
  defs = body["metadata"]["signature_def"]["signature_def"]
  assert defs["serving_default"]["inputs"]["examples"]["dtype"] == "DT_STRING"
  assert defs["serving_default"]["inputs"]["examples"]["tensor_shape"] == \
      {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}
  assert defs["serving_default"]["method_name"] == "tensorflow/serving/predict"
  assert {n: i["dtype"] for n, i in defs["serving_raw"]["inputs"].items()} == \
      {"pid": "DT_STRING", "price": "DT_INT64", "score": "DT_FLOAT"}
  assert defs["serving_raw"]["outputs"]["ctr"]["dtype"] == "DT_FLOAT"
  for path, version in (("/versions/1", "1"), ("/labels/stable", "1"), ("/labels/canary", "2")):
    status, body, _ = served.http("GET", f"/v1/models/{MODEL}{path}/metadata")
    assert status == 200 and body["model_spec"]["version"] == version


# -- predict ------------------------------------------------------------------

def _columns(rows):
  return {"pid": [r["pid"] for r in rows], "price": [r["price"] for r in rows],
          "score": [r["score"] for r in rows]}


# (signature, the JSON body, the same inputs as numpy for gRPC, the response's key)
PREDICT_BODIES = {
    "default, rows of bare b64": (
        "serving_default", {"instances": B64}, "predictions"),
    "default, rows naming the input": (
        "serving_default", {"signature_name": "serving_default",
                            "instances": [{"examples": b} for b in B64]}, "predictions"),
    "default, columns": ("serving_default", {"inputs": {"examples": B64}}, "outputs"),
    "default, a bare column": ("serving_default", {"inputs": B64}, "outputs"),
    "raw, rows": ("serving_raw", {"signature_name": "serving_raw", "instances": ROWS},
                  "predictions"),
    "raw, columns": ("serving_raw", {"signature_name": "serving_raw",
                                     "inputs": _columns(ROWS)}, "outputs"),
}


def _grpc_inputs(signature):
  if signature == "serving_default":
    return {"examples": np.array(EXAMPLES, dtype=object)}
  columns = _columns(ROWS)
  return {"pid": np.array([p.encode() for p in columns["pid"]], dtype=object),
          "price": np.array(columns["price"], dtype=np.int64),
          "score": np.array(columns["score"], dtype=np.float32)}


@pytest.mark.parametrize("target, version, label", [
    ("", None, None), ("/versions/1", 1, None), ("/labels/canary", None, "canary")])
@pytest.mark.parametrize("case", sorted(PREDICT_BODIES))
def test_predictions_equal_the_grpc_answers(served, case, target, version, label):
  signature, body, key = PREDICT_BODIES[case]
  status, answer, _ = served.http("POST", f"/v1/models/{MODEL}{target}:predict", body)
  assert status == 200, answer
  assert list(answer) == [key]   # one output: its values, without its name
  over_grpc = served.grpc_predict(_grpc_inputs(signature), signature, version, label)["ctr"]
  rest = np.array(answer[key], dtype=np.float64)
  assert rest.shape == over_grpc.shape == \
      ((len(EXAMPLES) if signature == "serving_default" else len(ROWS)),)
  np.testing.assert_allclose(rest, over_grpc, rtol=0, atol=1e-6)
  # TF Serving's digits read back to the very float32 the model computed.
  np.testing.assert_array_equal(rest.astype(np.float32), over_grpc)


def test_versions_and_labels_pick_the_model_that_answers(served):
  body = {"instances": B64[:1]}
  latest = served.http("POST", f"/v1/models/{MODEL}:predict", body)[1]["predictions"]
  first = served.http("POST", f"/v1/models/{MODEL}/versions/1:predict", body)[1]
  stable = served.http("POST", f"/v1/models/{MODEL}/labels/stable:predict", body)[1]
  # sigmoid(3 / 5) for version 2, the latest; sigmoid(3 / 10) for version 1 (stable).
  assert latest == pytest.approx([1 / (1 + np.exp(-0.6))], abs=1e-6)
  assert first == stable == {"predictions": pytest.approx([1 / (1 + np.exp(-0.3))], abs=1e-6)}


def test_several_outputs_are_objects_per_row_or_by_name(served):
  x = [[1.0, 2.0], [0.5, -4.25], [1e-3, 7.0]]
  tags = ["a", "héllo", ""]
  over_grpc = served.grpc_predict({"x": np.array(x, dtype=np.float32),
                                   "tag": np.array([t.encode() for t in tags], dtype=object)},
                                  model=MULTI)
  status, rows, _ = served.http("POST", f"/v1/models/{MULTI}:predict", {
      "instances": [{"x": xi, "tag": ti} for xi, ti in zip(x, tags)]})
  assert status == 200 and len(rows["predictions"]) == 3
  status, columns, _ = served.http("POST", f"/v1/models/{MULTI}:predict",
                                   {"inputs": {"x": x, "tag": tags}})
  assert status == 200 and set(columns["outputs"]) == {"total", "scaled", "tag_bytes", "length"}
  for i, row in enumerate(rows["predictions"]):
    assert set(row) == {"total", "scaled", "tag_bytes", "length"}
    assert row["total"] == pytest.approx(over_grpc["total"][i], abs=1e-12)      # float64
    np.testing.assert_allclose(row["scaled"], over_grpc["scaled"][i], atol=1e-6)
    assert row["length"] == over_grpc["length"][i] == len(tags[i].encode())
    assert base64.b64decode(row["tag_bytes"]["b64"]) == over_grpc["tag_bytes"][i]
    for name in row:
      assert columns["outputs"][name][i] == row[name]


# -- errors -------------------------------------------------------------------

def _raw_tensors(rows, **overrides):
  tensors = {"pid": tf.make_tensor_proto([r["pid"].encode() for r in rows]),
             "price": tf.make_tensor_proto(np.array([r["price"] for r in rows], np.int64)),
             "score": tf.make_tensor_proto(np.array([r["score"] for r in rows], np.float32))}
  tensors.update(overrides)
  return tensors


# (path, body, the gRPC request's (inputs, signature, version, label, model)): refused by
# the gRPC services; the REST answer must carry the same code and message.
SHARED_REFUSALS = {
    "unknown model": ("/v1/models/nope:predict", {"instances": B64},
                      ({"examples": EXAMPLES}, "", None, None, "nope"), 404),
    "unknown version": (f"/v1/models/{MODEL}/versions/9:predict", {"instances": B64},
                        ({"examples": EXAMPLES}, "", 9, None, MODEL), 404),
    "unknown label": (f"/v1/models/{MODEL}/labels/nope:predict", {"instances": B64},
                      ({"examples": EXAMPLES}, "", None, "nope", MODEL), 400),
    "unparsable tf.Example": (
        f"/v1/models/{MODEL}:predict", {"instances": [{"b64": "AQIDBA=="}]},
        ({"examples": [b"\x01\x02\x03\x04"]}, "", None, None, MODEL), 400),
    "batch over the limit": (
        f"/v1/models/{MODEL}:predict", {"instances": B64[:1] * (MAX_BATCH + 1)},
        ({"examples": EXAMPLES[:1] * (MAX_BATCH + 1)}, "", None, None, MODEL), 400),
    "a list where the signature takes a scalar per row": (
        f"/v1/models/{MODEL}:predict",
        {"signature_name": "serving_raw", "instances": [dict(ROWS[0], price=[1, 2])]},
        (_raw_tensors(ROWS[:1], price=tf.make_tensor_proto(np.array([[1, 2]], np.int64))),
         "serving_raw", None, None, MODEL), 400),
}


@pytest.mark.parametrize("case", sorted(SHARED_REFUSALS))
def test_refusals_carry_the_grpc_services_code_and_message(served, case):
  path, body, (inputs, signature, version, label, model), http_status = SHARED_REFUSALS[case]
  code, details = served.grpc_predict(inputs, signature, version, label, model)
  status, answer, content_type = served.http("POST", path, body)
  assert (status, content_type) == (http_status, "application/json")
  assert status == HTTP_STATUS[code]
  assert answer == {"error": details}


# (method, path, body, HTTP status, the error message or a part of it)
REST_REFUSALS = {
    "status of an unknown model": (
        "GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    "status of an unknown version": (
        "GET", f"/v1/models/{MODEL}/versions/9", None, 404,
        f"Could not find version 9 of model {MODEL}"),
    "status of an unknown label": (
        "GET", f"/v1/models/{MODEL}/labels/nope", None, 400,
        "Unrecognized servable version label: nope"),
    "metadata of an unknown model": (
        "GET", "/v1/models/nope/metadata", None, 404,
        "Servable not found for request: Latest(nope)"),
    "metadata of an unknown version": (
        "GET", f"/v1/models/{MODEL}/versions/9/metadata", None, 404,
        f"Servable not found for request: Specific({MODEL}, 9)"),
    "bad JSON": ("POST", f"/v1/models/{MODEL}:predict", b'{"instances": [1,', 400,
                 "JSON Parse error: Expecting value at offset: 17"),
    "an empty body": ("POST", f"/v1/models/{MODEL}:predict", b"", 400,
                      "JSON Parse error: The document is empty"),
    "JSON that is not an object": ("POST", f"/v1/models/{MODEL}:predict", b"[1]", 400,
                                   "JSON Value: [1] Is not object"),
    "a wrong input name, rows": (
        "POST", f"/v1/models/{MODEL}:predict",
        {"signature_name": "serving_raw", "instances": [{**ROWS[0], "pidd": "x"}]}, 400,
        "Failed to process element: 0 key: pidd of 'instances' list. Error: "
        "INVALID_ARGUMENT: JSON object: does not have named input: pidd"),
    "a missing input, rows": (
        "POST", f"/v1/models/{MODEL}:predict",
        {"signature_name": "serving_raw", "instances": [{"pid": "a", "price": 1}]}, 400,
        "keys must be equal to: pid,price,score"),
    "a missing input, columns": (
        "POST", f"/v1/models/{MODEL}:predict",
        {"signature_name": "serving_raw", "inputs": {"pid": ["a"], "prices": [1],
                                                     "score": [1.0]}}, 400,
        "Missing named input: price in 'inputs' object."),
    "a wrong dtype": (
        "POST", f"/v1/models/{MODEL}:predict",
        {"signature_name": "serving_raw", "instances": [{**ROWS[0], "price": "3"}]}, 400,
        'JSON Value: "3" Type: String is not of expected type: int64'),
    "a ragged list": (
        "POST", f"/v1/models/{MULTI}:predict", {"inputs": {"x": [[1, 2], [3]], "tag": ["a"]}},
        400, "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    "rows of different shapes": (
        "POST", f"/v1/models/{MULTI}:predict",
        {"instances": [{"x": [1, 2], "tag": "a"}, {"x": [1, 2, 3], "tag": "b"}]}, 400,
        "Expecting tensor size: 2 but got: 3"),
    "bad base64": ("POST", f"/v1/models/{MODEL}:predict", {"instances": [{"b64": "@@"}]}, 400,
                   "Unable to base64 decode"),
    "both instances and inputs": (
        "POST", f"/v1/models/{MODEL}:predict", {"instances": B64, "inputs": B64}, 400,
        "expecting only one of 'inputs' or 'instances' keys to exist"),
    "an unknown signature": (
        "POST", f"/v1/models/{MODEL}:predict", {"signature_name": "nope", "instances": B64},
        400, 'Serving signature name: "nope" not found in signature def'),
    "classify": ("POST", f"/v1/models/{MODEL}:classify", {"examples": [{}]}, 501,
                 "Classify is not served here"),
    "regress": ("POST", f"/v1/models/{MODEL}/versions/1:regress", {"examples": [{}]}, 501,
                "Regress is not served here"),
    "no model name": ("GET", "/v1/models", None, 400, "Missing model name in request."),
    "POST without a verb": ("POST", f"/v1/models/{MODEL}", {"instances": B64}, 400,
                            f"Malformed request: POST /v1/models/{MODEL}"),
    "GET of a verb": ("GET", f"/v1/models/{MODEL}:predict", None, 400,
                      f"Malformed request: GET /v1/models/{MODEL}:predict"),
    "PUT": ("PUT", f"/v1/models/{MODEL}", b"{}", 400, f"Malformed request: PUT /v1/models/{MODEL}"),
    "a path outside the API": ("GET", "/metrics", None, 404, "Not found: /metrics"),
}


@pytest.mark.parametrize("case", sorted(REST_REFUSALS))
def test_bad_requests_get_tf_servings_error_json_and_status(served, case):
  method, path, body, http_status, message = REST_REFUSALS[case]
  status, answer, content_type = served.http(method, path, body)
  assert (status, content_type) == (http_status, "application/json")
  assert list(answer) == ["error"] and message in answer["error"]
  # The server goes on answering.
  assert served.http("POST", f"/v1/models/{MODEL}:predict", {"instances": B64[:1]})[0] == 200


# JSON as a client may send it: rows and columns keyed by the inputs' names or others,
# leaves of every JSON type (b64 objects good and bad), nested lists and objects, and
# bodies that aren't JSON; half of them POSTed to the predict paths of both models.
_b64 = st.builds(lambda b: {"b64": base64.b64encode(b).decode()},
                 st.sampled_from(EXAMPLES) | st.binary(max_size=30))
_fuzz_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
                       st.integers(-5, 200), st.floats(allow_nan=True, allow_infinity=True),
                       st.text(max_size=8), _b64,
                       st.builds(lambda t: {"b64": t}, st.text(max_size=8)))
_fuzz_key = st.sampled_from(["examples", "pid", "price", "score", "x", "tag", "b64"]) | \
    st.text(max_size=6)
_fuzz_json = st.recursive(_fuzz_leaf, lambda inner: st.lists(inner, max_size=4) |
                          st.dictionaries(_fuzz_key, inner, max_size=4), max_leaves=12)
_fuzz_value = _fuzz_leaf | st.lists(_fuzz_leaf, max_size=4) | _fuzz_json
_fuzz_rows = st.lists(st.dictionaries(_fuzz_key, _fuzz_value, max_size=4) | _fuzz_value,
                      max_size=5)
_fuzz_columns = st.dictionaries(_fuzz_key, st.lists(_fuzz_value, max_size=5) | _fuzz_value,
                                max_size=4) | _fuzz_json
_fuzz_raw_rows = st.lists(st.fixed_dictionaries({
    "pid": st.text(max_size=8) | _fuzz_value, "price": st.integers(-5, 200) | _fuzz_value,
    "score": st.floats(width=32) | _fuzz_value}), min_size=1, max_size=4)
_fuzz_bodies = st.one_of(
    st.fixed_dictionaries({}, optional={
        "signature_name": st.sampled_from(["serving_default", "serving_raw", ""]) | _fuzz_json,
        "instances": _fuzz_rows, "inputs": _fuzz_columns}).map(lambda d: json.dumps(d)),
    _fuzz_raw_rows.map(lambda rows: json.dumps({"signature_name": "serving_raw",
                                                "instances": rows})),
    _fuzz_raw_rows.map(lambda rows: json.dumps({"signature_name": "serving_raw", "inputs": {
        name: [row[name] for row in rows] for name in rows[0]}})),
    st.lists(_b64, min_size=1, max_size=4).map(lambda rows: json.dumps({"instances": rows})),
).map(str.encode) | st.binary(max_size=40)
_fuzz_predict = st.tuples(st.just("POST"), st.sampled_from([
    f"/v1/models/{MODEL}:predict", f"/v1/models/{MULTI}:predict",
    f"/v1/models/{MODEL}/versions/1:predict", f"/v1/models/{MODEL}/labels/canary:predict"]))
_fuzz_anywhere = st.tuples(st.sampled_from(["GET", "POST"]), st.builds(
    lambda name, tail: "/v1/models/" + urllib.parse.quote(name, safe="/:") + tail,
    st.text(max_size=12), st.sampled_from(["", ":predict", "/metadata", "/versions/1",
                                           "/labels/canary:predict", ":classify"])))


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=st.one_of(_fuzz_predict, _fuzz_anywhere), body=_fuzz_bodies)
def test_random_requests_get_tf_servings_answers_never_a_server_error(served, request, body):
  method, path = request
  status, text = served.server.rest.handler.handle(method, path, body)
  answer = json.loads(text)
  assert status in {200, 400, 404, 501}, (status, answer)
  assert (status == 200) == ("error" not in answer)


def test_the_bytes_curl_sends_and_chunked_bodies_on_one_connection(served):
  host, port = served.url.split("//")[1].rsplit(":", 1)
  body = json.dumps({"instances": B64[:2]}).encode()
  # What `curl -d '<body>' -X POST <url>` sends.
  request = (f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: {host}:{port}\r\n"
             "User-Agent: curl/7.88.1\r\nAccept: */*\r\nContent-Length: "
             f"{len(body)}\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n"
             ).encode() + body
  with socket.create_connection((host, int(port)), timeout=60) as connection:
    connection.sendall(request)
    reply = http.client.HTTPResponse(connection)
    reply.begin()
    assert reply.status == 200 and reply.getheader("Content-Type") == "application/json"
    predictions = json.loads(reply.read())["predictions"]
  over_grpc = served.grpc_predict({"examples": EXAMPLES[:2]})["ctr"]
  np.testing.assert_allclose(predictions, over_grpc, atol=1e-6)
  # Keep-alive: a chunked POST and a GET on one connection.
  connection = http.client.HTTPConnection(host, int(port), timeout=60)
  try:
    connection.request("POST", f"/v1/models/{MODEL}:predict",
                       body=iter([body[:10], body[10:]]), encode_chunked=True,
                       headers={"Transfer-Encoding": "chunked"})
    chunked = connection.getresponse()
    assert chunked.status == 200
    assert json.loads(chunked.read())["predictions"] == predictions
    connection.request("GET", f"/v1/models/{MODEL}/versions/1")
    assert json.loads(connection.getresponse().read())["model_version_status"][0]["version"] \
        == "1"
  finally:
    connection.close()


def test_a_body_over_the_limit_is_refused_unread(served, monkeypatch):
  monkeypatch.setattr(rest_api, "MAX_REQUEST_BYTES", 1000)
  big = json.dumps({"instances": B64 * 20}).encode()
  assert len(big) > 1000
  status, answer, _ = served.http("POST", f"/v1/models/{MODEL}:predict", big)
  assert status == 413 and "over this server's limit of 1,000 bytes" in answer["error"]
  host, port = served.url.split("//")[1].rsplit(":", 1)
  connection = http.client.HTTPConnection(host, int(port), timeout=60)
  try:
    connection.request("POST", f"/v1/models/{MODEL}:predict", body=iter([big[:600], big[600:]]),
                       encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    assert connection.getresponse().status == 413
  finally:
    connection.close()
  assert served.http("POST", f"/v1/models/{MODEL}:predict", {"instances": B64})[0] == 200


# -- the server ---------------------------------------------------------------

def test_requests_beyond_the_concurrency_cap_get_429(tiny_model_base, tmp_path, monkeypatch):
  real = server_module._run_signature

  def slow(function, tensors, name):
    time.sleep(0.6)
    return real(function, tensors, name)
  monkeypatch.setattr(server_module, "_run_signature", slow)
  served = _serve(tmp_path, [ModelSource(MODEL, tiny_model_base)], max_concurrent_rpcs=2)
  answers = []

  def call():
    answers.append(served.http("POST", f"/v1/models/{MODEL}:predict", {"instances": B64}))
  try:
    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
  finally:
    served.close()
  codes = [status for status, _, _ in answers]
  assert codes.count(200) >= 2 and 429 in codes and set(codes) <= {200, 429}
  assert all("Concurrent request limit of 2 exceeded" in answer["error"]
             for status, answer, _ in answers if status == 429)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _refused(port) -> bool:
  try:
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    return False
  except ConnectionRefusedError:
    return True


def test_the_rest_port_opens_once_the_first_versions_are_loaded_and_closes_on_stop(
    tiny_model_base):
  rest_port = _free_port()
  server = LocalModelServer([ModelSource(MODEL, tiny_model_base)], port=0, rest_port=rest_port,
                            poll_wait_seconds=0.2, log=_quiet)
  loading, real_poll = threading.Event(), server.registry.poll

  def slow_poll():
    loading.set()
    time.sleep(1.0)
    real_poll()
  server.registry.poll = slow_poll
  starter = threading.Thread(target=server.start)
  starter.start()
  try:
    assert loading.wait(30)
    assert _refused(rest_port)    # loading: nothing listens yet
    starter.join(60)
    kept_alive = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=30)
    kept_alive.request("GET", f"/v1/models/{MODEL}")
    answer = kept_alive.getresponse()
    assert json.loads(answer.read())["model_version_status"][0]["state"] == "AVAILABLE"
  finally:
    starter.join(60)
    server.stop()
  assert _refused(rest_port)      # stopped: the port is closed,
  kept_alive.request("GET", f"/v1/models/{MODEL}")   # and an open connection is told so
  answer = kept_alive.getresponse()
  assert (answer.status, json.loads(answer.read())) == \
      (503, {"error": "the server is stopping"})
  kept_alive.close()


@pytest.mark.parametrize("taken", ["rest", "grpc"])
def test_a_port_in_use_is_refused_and_leaves_the_other_port_free(tiny_model_base, taken):
  free = _free_port()
  with socket.socket() as in_use:
    in_use.bind(("127.0.0.1", 0))
    in_use.listen()
    ports = {"rest": in_use.getsockname()[1], "grpc": free} if taken == "rest" else \
        {"rest": free, "grpc": in_use.getsockname()[1]}
    server = LocalModelServer([ModelSource(MODEL, tiny_model_base)], port=ports["grpc"],
                              rest_port=ports["rest"], poll_wait_seconds=0.2, log=_quiet)
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{ports[taken]}"):
      server.start()
  assert server.rest is None and server.port is None
  with socket.socket() as again:   # nothing holds the other port
    again.bind(("127.0.0.1", free))


def test_aitm_serve_rest_port_starts_both_apis(tiny_model_base):
  process = subprocess.Popen(
      [sys.executable, "-m", "cli.main", "serve", "--model-base-path", tiny_model_base,
       "--model-name", MODEL, "--port", "0", "--rest-port", "0"],
      cwd=configs.PROJECT_DIR, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
      env={**os.environ, "PYTHONPATH": configs.PROJECT_DIR})
  lines = []
  reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
  reader.start()
  try:
    deadline = time.monotonic() + 180
    while not any("REST API on" in line for line in lines) and time.monotonic() < deadline:
      assert process.poll() is None, "".join(lines)
      time.sleep(0.2)
    grpc_address = next(line.split(" on ")[1].strip() for line in lines
                        if "gRPC PredictionService" in line)
    url = next(line.split(" on ")[1].strip() for line in lines if "REST API on" in line)
    with urllib.request.urlopen(f"{url}/v1/models/{MODEL}", timeout=30) as response:
      rest_status = json.loads(response.read())
    request = urllib.request.Request(f"{url}/v1/models/{MODEL}:predict",
                                     data=json.dumps({"instances": B64}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
      predictions = json.loads(response.read())["predictions"]
    with grpc.insecure_channel(grpc_address) as channel:
      status_request = get_model_status_pb2.GetModelStatusRequest()
      status_request.model_spec.name = MODEL
      grpc_status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
          status_request, timeout=30)
    assert rest_status == json_format.MessageToDict(grpc_status,
                                                    including_default_value_fields=True)
    assert rest_status["model_version_status"][0]["state"] == "AVAILABLE"
    # version 1 of tiny: sigmoid(price / 10), price 0 when the example has none
    assert predictions == pytest.approx([1 / (1 + np.exp(-p / 10)) for p in (3, -2, 120, 0)],
                                        abs=1e-6)
  finally:
    process.send_signal(signal.SIGINT)
    try:
      code = process.wait(60)
    except subprocess.TimeoutExpired:
      process.kill()
      code = f"still running 60 s after SIGINT; it printed:\n{''.join(lines)}"
    assert code == 0, code


def test_a_rest_port_that_is_no_port_is_refused_before_any_work():
  from cli.main import build_parser
  for value in ("-1", "65536", "http"):
    with pytest.raises(SystemExit):
      build_parser().parse_args(["serve", "--model-base-path", "x", "--rest-port", value])
  assert build_parser().parse_args(["serve", "--model-base-path", "x", "--rest-port",
                                    "8501"]).rest_port == 8501
  with pytest.raises(ValueError, match="port must be from 0 to 65535, got 70000"):
    rest_api.RestApiServer(None, None, port=70000)
