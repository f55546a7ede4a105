"""serving.json_tensors against TF Serving's own expectations: the cases of
tensorflow_serving/util/json_tensor_test.cc (requests into TensorProtos, tensors into
response JSON, the errors), ported with their inputs and expected results."""

import json
import re

import pytest
from google.protobuf import text_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from serving.json_tensors import (COLUMNAR, ROW, JsonTensorError, fill_predict_inputs,
                                  parse_request_body, predict_response_json, signature_name)

INT32, STRING, FLOAT, DOUBLE, INT64, BOOL = (types_pb2.DT_INT32, types_pb2.DT_STRING,
                                             types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE,
                                             types_pb2.DT_INT64, types_pb2.DT_BOOL)


def _fill(body: str, input_dtypes):
  """(form, {name: TensorProto}) of a request body, as the REST handler reads it."""
  document = parse_request_body(body.encode())
  request = predict_pb2.PredictRequest()
  request.model_spec.signature_name = signature_name(document)
  form = fill_predict_inputs(document, input_dtypes, request.inputs)
  return form, dict(request.inputs)


def _proto(text: str) -> tensor_pb2.TensorProto:
  return text_format.Parse(text, tensor_pb2.TensorProto())


def _without_spaces(text: str) -> str:
  return re.sub(r"\s+", "", text)


def test_single_unnamed_tensors_in_the_row_form():
  form, tensors = _fill('{"signature_name": "predict_images", "instances": [[1,2]]}',
                        {"default": INT32})
  assert form == ROW
  assert tensors["default"] == _proto(
      "dtype: DT_INT32 tensor_shape { dim { size: 1 } dim { size: 2 } } int_val: 1 int_val: 2")
  _, tensors = _fill('{"instances": [[1,2],[3,4],[5,6]]}', {"default": INT32})
  assert tensors["default"].tensor_shape.dim[0].size == 3
  assert list(tensors["default"].int_val) == [1, 2, 3, 4, 5, 6]
  # Whole and decimal numbers alike for float; a double's extremes become +-inf and 0.
  _, tensors = _fill('{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}', {"default": FLOAT})
  assert list(tensors["default"].float_val) == pytest.approx([1, 2, 3, 4, 5.003, 0.007, 0])
  _, tensors = _fill('{"instances": [1.7976931348623157e308, -1.7976931348623157e308, '
                     '2.2250738585072014e-308]}', {"default": FLOAT})
  assert list(tensors["default"].float_val) == [float("inf"), float("-inf"), 0.0]
  _, tensors = _fill('{"instances": [1435774380, 1435774380.0]}', {"default": DOUBLE})
  assert list(tensors["default"].double_val) == [1435774380.0, 1435774380.0]


def test_base64_strings_as_scalars_lists_and_named_inputs():
  _, tensors = _fill('{"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}',
                     {"default": STRING})
  assert tensors["default"] == _proto(
      'dtype: DT_STRING tensor_shape { dim { size: 2 } } string_val: "hello" '
      'string_val: "world"')
  _, tensors = _fill('{"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}',
                     {"default": STRING})
  assert [d.size for d in tensors["default"].tensor_shape.dim] == [2, 1]
  _, tensors = _fill('{"instances": [{"default": [[{"b64": "aGVsbG8="}], '
                     '[{"b64": "d29ybGQ="}]]}]}', {"default": STRING})
  assert [d.size for d in tensors["default"].tensor_shape.dim] == [1, 2, 1]
  assert list(tensors["default"].string_val) == [b"hello", b"world"]
  # Unpadded base64 is read too, as absl::Base64Unescape reads it.
  _, tensors = _fill('{"instances": [{"b64": "aGVsbG8"}]}', {"default": STRING})
  assert list(tensors["default"].string_val) == [b"hello"]


def test_multiple_named_tensors_row_and_columnar():
  dtypes = {"int_tensor": INT32, "str_tensor": STRING, "float_tensor": FLOAT,
            "dbl_tensor": DOUBLE}
  form, tensors = _fill("""{"instances": [
      {"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"],
       "float_tensor": [1.0, NaN], "dbl_tensor": [NaN]},
      {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"],
       "float_tensor": [2.0, Infinity], "dbl_tensor": [2.0]}]}""", dtypes)
  assert form == ROW
  assert [d.size for d in tensors["int_tensor"].tensor_shape.dim] == [2, 3, 2]
  assert list(tensors["int_tensor"].int_val) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
  assert list(tensors["str_tensor"].string_val) == [b"foo", b"bar", b"baz", b"bat"]
  assert str(list(tensors["float_tensor"].float_val)) == "[1.0, nan, 2.0, inf]"
  assert tensors["dbl_tensor"].dtype == DOUBLE
  assert [d.size for d in tensors["dbl_tensor"].tensor_shape.dim] == [2, 1]

  form, tensors = _fill("""{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]],
      "str_tensor": ["foo", "bar"], "bin_tensor": {"b64": "aGVsbG8="}, "unused": 1}}""",
                        {"int_tensor": INT32, "str_tensor": STRING, "bin_tensor": STRING})
  assert form == COLUMNAR
  assert sorted(tensors) == ["bin_tensor", "int_tensor", "str_tensor"]   # "unused" ignored
  assert [d.size for d in tensors["int_tensor"].tensor_shape.dim] == [1, 3, 2]
  assert tensors["bin_tensor"] == _proto('dtype: DT_STRING tensor_shape {} string_val: "hello"')
  # One input: the columnar value without its name.
  _, tensors = _fill('{"inputs": [[[1,2],[3,4],[5,6]]]}', {"int_tensor": INT32})
  assert [d.size for d in tensors["int_tensor"].tensor_shape.dim] == [1, 3, 2]


@pytest.mark.parametrize("body, dtypes, message", [
    ("", {"default": INT32}, "JSON Parse error: The document is empty"),
    ('{"instances": [1,', {"default": INT32}, "JSON Parse error: Expecting value at offset: 17"),
    ("[1, 2]", {"default": INT32}, "JSON Value: [1, 2] Is not object"),
    ('{"signature_name": 5, "instances": [[1,2]]}', {"default": INT32},
     "'signature_name' key must be a string value."),
    ('{"instances": [[1,2]], "inputs": [[1,2]]}', {"default": INT32},
     "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"),
    ('{"signature_name": "x"}', {"default": INT32}, "Missing 'inputs' or 'instances' key"),
    ('{"instances": []}', {"default": INT32}, "No values in 'instances' array"),
    ('{"instances": {"a": 1}}', {"default": INT32}, "Expecting 'instances' to be an list/array"),
    ('{"instances": [[1,2],[3,4],[5,6,7]]}', {"default": INT32},
     "Failed to process element: 2 of 'instances' list. Error: INVALID_ARGUMENT: Expecting "
     "tensor size: 2 but got: 3"),
    ('{"instances": [[1,2],[3,4],[[5,6]]]}', {"default": INT32},
     "Expecting shape [2] but got: [1,2]"),
    ('{"instances": [1, [1]]}', {"default": INT32}, "Expecting shape [] but got: [1]"),
    ('{"instances": [[1,2],["a", "b"]]}', {"default": INT32},
     'JSON Value: "a" Type: String is not of expected type: int32'),
    ('{"instances": [[1,2],[3]]}', {"default": INT32}, "Expecting tensor size: 2 but got: 1"),
    ('{"inputs": [[1,2],[3]]}', {"default": INT32},
     "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
    ('{"inputs": [[1,2],3]}', {"default": INT32},
     "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2"),
    ('{"instances": [3.5]}', {"default": INT64},
     "JSON Value: 3.5 Type: Number is not of expected type: int64"),
    ('{"instances": [true]}', {"default": INT64}, "Type: True is not of expected type: int64"),
    ('{"instances": [9223372036854775808]}', {"default": INT64}, "not of expected type: int64"),
    ('{"instances": [2147483648]}', {"default": INT32}, "not of expected type: int32"),
    ('{"instances": [1]}', {"default": BOOL}, "Type: Number is not of expected type: bool"),
    ('{"instances": [null]}', {"default": FLOAT}, "Type: Null is not of expected type: float"),
    ('{"instances": [{"b64": "aGVsbG8="}]}', {"default": FLOAT},
     "Type: Object is not of expected type: float"),
    ('{"instances": [{"b64": "not base64!"}]}', {"default": STRING}, "Unable to base64 decode"),
    # {"b64": <not a string>} is no base64 object: read as an input named b64.
    ('{"instances": [{"b64": 5}]}', {"default": STRING},
     "does not have named input: b64"),
    ('{"instances": [[{"b64": 5}]]}', {"default": STRING},
     'JSON Value: {"b64": 5} not formatted correctly for base64 data'),
    ('{"instances": [{"int_tensor": [[1,2]], "str_tensor": ["a"]}, '
     '{"int_tensor": [[[7,8]]], "str_tensor": ["b"]}]}',
     {"int_tensor": INT32, "str_tensor": STRING}, "Expecting shape [1,2] but got: [1,1,2]"),
    ('{"instances": [{"int_tensor": [1], "str_tensor": "a"}, [1, 20, 30]]}',
     {"int_tensor": INT32, "str_tensor": STRING}, "Expecting object but got list at item 1"),
    ('{"instances": [["baz", "bar"], {"str_tensor": ["baz", "bat"]}]}', {"str_tensor": STRING},
     "Expecting value/list but got object at item 1"),
    ('{"instances": [1, 2]}', {"int_tensor": INT32, "str_tensor": STRING},
     "instances is a plain list, but expecting list of objects as multiple input tensors"),
    ('{"inputs": [1, 2]}', {"int_tensor": INT32, "str_tensor": STRING},
     "inputs is a plain value/list, but expecting an object as multiple input tensors"),
    ('{"instances": [{"int_tensor": 1, "str_tensr": "a"}]}',
     {"int_tensor": INT32, "str_tensor": STRING},
     "Failed to process element: 0 key: str_tensr of 'instances' list. Error: "
     "INVALID_ARGUMENT: JSON object: does not have named input: str_tensr"),
    ('{"instances": [{"int_tensor": 1}]}', {"int_tensor": INT32, "str_tensor": STRING},
     "keys must be equal to: int_tensor,str_tensor"),
    ('{"inputs": {"int_tensor": [1]}}', {"int_tensor": INT32, "str_tensor": STRING},
     "Missing named input: str_tensor in 'inputs' object."),
])
def test_requests_tf_serving_refuses_are_refused_with_its_words(body, dtypes, message):
  with pytest.raises(JsonTensorError) as refused:
    _fill(body, dtypes)
  assert message in str(refused.value)
  assert refused.value.code == "INVALID_ARGUMENT"


def test_a_dtype_json_cannot_carry_is_unimplemented_and_bytes_that_are_not_utf8_refused():
  with pytest.raises(JsonTensorError) as half:
    _fill('{"instances": [1.5]}', {"default": types_pb2.DT_HALF})
  assert half.value.code == "UNIMPLEMENTED"
  assert "Conversion of JSON Value: 1.5 to type: half" in str(half.value)
  with pytest.raises(JsonTensorError, match="bytes that are not UTF-8 at offset: 16"):
    parse_request_body(b'{"instances": ["\xff"]}')
  with pytest.raises(JsonTensorError, match="nested too deeply"):
    parse_request_body(b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def _outputs(**texts):
  return {name: _proto(text) for name, text in texts.items()}


def test_floats_are_written_in_tf_servings_digits():
  six_digits = _outputs(float_tensor="""dtype: DT_FLOAT
      tensor_shape { dim { size: 2 } dim { size: 3 } }
      float_val: 9000000 float_val: 999999 float_val: 0.5 float_val: .0003 float_val: .00003
      float_val: 555557.5""")
  assert _without_spaces(predict_response_json(six_digits, ROW)) == \
      '{"predictions":[[9e+06,999999.0,0.5],[0.0003,3e-05,555557.5]]}'
  non_finite = _outputs(float_tensor="""dtype: DT_FLOAT
      tensor_shape { dim { size: 2 } dim { size: 2 } }
      float_val: NaN float_val: Infinity float_val: 3 float_val: -Infinity""")
  assert _without_spaces(predict_response_json(non_finite, ROW)) == \
      '{"predictions":[[NaN,Infinity],[3.0,-Infinity]]}'
  # Digits enough to read back the same float32 (0.1f is 0.100000001...), or float64.
  precise = _outputs(f="dtype: DT_FLOAT tensor_shape { dim { size: 2 } } float_val: 0.1 "
                       "float_val: 0.3333333432674408",
                     d="dtype: DT_DOUBLE tensor_shape { dim { size: 2 } } double_val: 0.1 "
                       "double_val: 0.3333333333333333")
  assert _without_spaces(predict_response_json(precise, COLUMNAR)) == \
      '{"outputs":{"d":[0.1,0.33333333333333331],"f":[0.1,0.333333343]}}'


def test_named_outputs_are_objects_per_row_bytes_are_base64_and_one_output_unwraps():
  outputs = _outputs(
      str_tensor_bytes="""dtype: DT_STRING tensor_shape { dim { size: 2 } dim { size: 2 } }
          string_val: "hello" string_val: "world" string_val: "tf" string_val: "serving" """,
      int_tensor="dtype: DT_INT64 tensor_shape { dim { size: 2 } } int64_val: 7 int64_val: -8",
      flag="dtype: DT_BOOL tensor_shape { dim { size: 2 } } bool_val: true bool_val: false",
      text="""dtype: DT_STRING tensor_shape { dim { size: 2 } } string_val: "caf\\303\\251"
          string_val: "\\377" """)
  rows = json.loads(predict_response_json(outputs, ROW))["predictions"]
  assert rows == [
      {"flag": True, "int_tensor": 7, "str_tensor_bytes": [{"b64": "aGVsbG8="},
                                                           {"b64": "d29ybGQ="}],
       "text": "café"},
      {"flag": False, "int_tensor": -8, "str_tensor_bytes": [{"b64": "dGY="},
                                                             {"b64": "c2VydmluZw=="}],
       "text": {"b64": "/w=="}}]   # bytes that are not UTF-8 can only travel as base64
  columns = json.loads(predict_response_json(outputs, COLUMNAR))["outputs"]
  assert columns["int_tensor"] == [7, -8] and columns["flag"] == [True, False]
  single = _outputs(y="dtype: DT_FLOAT tensor_shape { dim { size: 3 } } float_val: 3.5 "
                      "float_val: 4 float_val: 5.5")
  assert json.loads(predict_response_json(single, ROW)) == {"predictions": [3.5, 4.0, 5.5]}
  assert json.loads(predict_response_json(single, COLUMNAR)) == {"outputs": [3.5, 4.0, 5.5]}
  scalar = _outputs(y="dtype: DT_FLOAT tensor_shape {} float_val: 2")
  assert json.loads(predict_response_json(scalar, COLUMNAR)) == {"outputs": 2.0}


def test_outputs_json_cannot_carry_are_refused():
  with pytest.raises(JsonTensorError, match="empty tensor map"):
    predict_response_json({}, ROW)
  with pytest.raises(JsonTensorError, match="tensor type: complex64"):
    predict_response_json(_outputs(t="dtype: DT_COMPLEX64 tensor_shape { dim { size: 1 } } "
                                     "scomplex_val: 1 scomplex_val: 2"), ROW)
  with pytest.raises(JsonTensorError, match="Tensor name: b has inconsistent batch size: 1 "
                                            "expecting: 2"):
    predict_response_json(_outputs(a="dtype: DT_INT64 tensor_shape { dim { size: 2 } } "
                                     "int64_val: 1 int64_val: 2",
                                   b="dtype: DT_INT64 tensor_shape { dim { size: 1 } } "
                                     "int64_val: 1"), ROW)
  with pytest.raises(JsonTensorError, match="Tensor name: s has no shape information"):
    predict_response_json(_outputs(s="dtype: DT_INT64 tensor_shape {} int64_val: 1"), ROW)
