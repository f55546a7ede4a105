"""Fuzzing `aitm serve` (hypothesis): random model names, versions, labels, signatures,
dtypes, shapes and contents for Predict, GetModelMetadata and GetModelStatus. Every
request gets one of TF Serving's status codes, never UNKNOWN or INTERNAL (a server
bug); after each burst a good request succeeds, and the process's memory stays bounded."""

import os

import grpc
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from serving.model_versions import ModelSource
from serving.server import LocalModelServer

MODEL = "tiny"
# What a well-behaved server may answer a bad request with.
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED,
           grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE}
SETTINGS = settings(max_examples=250, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _rss_bytes() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def stubs(tiny_model_base):
  server = LocalModelServer([ModelSource(MODEL, tiny_model_base)], port=0,
                            poll_wait_seconds=0.5, max_batch_size=10_000,
                            log=lambda *_: None)
  server.start()
  channel = grpc.insecure_channel(server.address)
  yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
         model_service_pb2_grpc.ModelServiceStub(channel))
  channel.close()
  server.stop()


names = st.one_of(st.just(MODEL), st.text(max_size=12))
signatures = st.one_of(st.sampled_from(["", "serving_default", "serving_raw"]),
                       st.text(max_size=12))
dtypes = st.one_of(st.sampled_from([types_pb2.DT_STRING, types_pb2.DT_INT64,
                                    types_pb2.DT_FLOAT, types_pb2.DT_INT32,
                                    types_pb2.DT_DOUBLE, types_pb2.DT_BOOL]),
                   st.integers(min_value=0, max_value=2000))
dims = st.lists(st.one_of(st.integers(-3, 5), st.integers(10 ** 7, 10 ** 8),
                          st.integers(-(2 ** 62), 2 ** 62)), max_size=3)


@st.composite
def tensors(draw):
  proto = tensor_pb2.TensorProto(dtype=draw(dtypes))
  shape = draw(dims)
  if draw(st.booleans()):
    proto.tensor_shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in shape]))
  else:
    proto.tensor_shape.unknown_rank = draw(st.booleans())
  kind = draw(st.sampled_from(["string", "int64", "float", "content", "none"]))
  if kind == "string":
    proto.string_val.extend(draw(st.lists(st.binary(max_size=40), max_size=6)))
  elif kind == "int64":
    proto.int64_val.extend(draw(st.lists(st.integers(-(2 ** 63), 2 ** 63 - 1), max_size=6)))
  elif kind == "float":
    proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=6)))
  elif kind == "content":
    proto.tensor_content = draw(st.binary(max_size=64))
  return proto


@st.composite
def specs(draw, spec):
  spec.name = draw(names)
  which = draw(st.sampled_from(["none", "version", "label"]))
  if which == "version":
    spec.version.value = draw(st.integers(-(2 ** 63), 2 ** 63 - 1))
  elif which == "label":
    spec.version_label = draw(st.text(max_size=10))
  return spec


INPUTS = {"": ["examples"], "serving_default": ["examples"],
          "serving_raw": ["pid", "price", "score"]}


@st.composite
def predict_requests(draw):
  """Mostly a valid envelope (model, version, signature and input names right) around
  random tensors, so the fuzzing reaches the tensor checks; sometimes anything."""
  request = predict_pb2.PredictRequest()
  if draw(st.integers(0, 9)) < 7:
    request.model_spec.name = MODEL
    if draw(st.booleans()):
      request.model_spec.version.value = 1
    signature = draw(st.sampled_from(sorted(INPUTS)))
    request.model_spec.signature_name = signature
    keys = list(INPUTS[signature])
    if draw(st.integers(0, 9)) == 0:
      keys = keys[1:] + [draw(st.text(max_size=8))]
  else:
    draw(specs(request.model_spec))
    request.model_spec.signature_name = draw(signatures)
    keys = draw(st.lists(st.one_of(st.sampled_from(["examples", "pid", "price", "score"]),
                                   st.text(max_size=8)), max_size=4, unique=True))
  for key in keys:
    request.inputs[key].CopyFrom(draw(tensors()))
  request.output_filter.extend(draw(st.lists(st.sampled_from(["ctr", "cvr", ""]), max_size=2)))
  return request


def _code(call, request):
  try:
    call(request, timeout=30)
    return grpc.StatusCode.OK
  except grpc.RpcError as e:
    return e.code()


def _good(prediction):
  example = tf.train.Example()
  example.features.feature["price"].int64_list.value.append(4)
  request = predict_pb2.PredictRequest()
  request.model_spec.name = MODEL
  request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example.SerializeToString()]))
  assert prediction.Predict(request, timeout=30).outputs["ctr"]


@SETTINGS
@given(burst=st.lists(predict_requests(), min_size=1, max_size=4))
def test_predict_answers_every_request_with_a_serving_status(stubs, burst):
  prediction, _ = stubs
  for request in burst:
    code = _code(prediction.Predict, request)
    assert code in ALLOWED, (code, request)
  _good(prediction)


@SETTINGS
@given(data=st.data())
def test_metadata_and_status_answer_every_request_with_a_serving_status(stubs, data):
  prediction, models = stubs
  metadata = get_model_metadata_pb2.GetModelMetadataRequest()
  data.draw(specs(metadata.model_spec))
  metadata.metadata_field.extend(data.draw(st.lists(
      st.one_of(st.just("signature_def"), st.text(max_size=10)), max_size=2)))
  assert _code(prediction.GetModelMetadata, metadata) in ALLOWED
  status = get_model_status_pb2.GetModelStatusRequest()
  data.draw(specs(status.model_spec))
  assert _code(models.GetModelStatus, status) in ALLOWED
  _good(prediction)


def test_memory_stays_bounded_over_the_fuzzing(stubs):
  """After the fuzz runs above (same module, same server), the process holds no more
  than a few hundred MB above a fresh burst of good requests: nothing grew with them."""
  prediction, _ = stubs
  for _ in range(20):
    _good(prediction)
  before = _rss_bytes()
  for _ in range(200):
    _good(prediction)
  assert _rss_bytes() - before < 50 << 20
  assert before < 4 << 30
