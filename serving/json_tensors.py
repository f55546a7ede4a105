"""TF Serving's REST JSON for tensors: a predict request's JSON into PredictRequest
inputs, and PredictResponse outputs into the response's JSON.

Follows tensorflow_serving/util/json_tensor.cc, so a request TF Serving accepts is
accepted here and read the same way:

* The body is one JSON object; `NaN`, `Infinity` and `-Infinity` are numbers.
* Row form, `"instances": [...]`: each instance is an object naming every input, or
  a bare value (a scalar, a nested list or a `{"b64": ...}`) when the signature has
  one input; the instances are stacked along a new first dimension, and every
  instance of an input must have the same shape.
* Columnar form, `"inputs": ...`: an object of named inputs (keys the signature
  doesn't have are ignored, as TF Serving does), or a bare value when the signature
  has one input; each value is the whole tensor.
* A nested list's shape is read from its first elements and every list must match it.
* Values must be of the signature's dtype: numbers for float/double (integers too),
  whole numbers within the dtype's range for integer dtypes, true/false for bool,
  strings or `{"b64": "<base64>"}` for string (binary data, e.g. serialized
  tf.Examples).
* Row-form requests get `{"predictions": [...]}`, one entry per row: the output's
  value when there is one output, else an object by output name; columnar ones get
  `{"outputs": ...}`, the tensor itself or an object of tensors. Floats are written
  with the fewest digits that read back to the same float32/float64, as TF Serving
  writes them; string outputs whose name ends in `_bytes` are written as b64.

Everything refused raises JsonTensorError with TF Serving's words and its status
(INVALID_ARGUMENT, or UNIMPLEMENTED for a dtype JSON can't carry).
"""

import base64
import binascii
import json
import math
from typing import Any, Callable, Dict, Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

ROW, COLUMNAR = "row", "columnar"
_BASE64_KEY = "b64"
_BYTES_SUFFIX = "_bytes"
_DEBUG_CHARS = 256   # how much of a JSON value an error message quotes, as TF Serving

# dtype -> (TensorProto field, smallest, largest) for the integer dtypes.
_INTEGER_FIELDS = {
    types_pb2.DT_INT8: ("int_val", -2**7, 2**7 - 1),
    types_pb2.DT_UINT8: ("int_val", 0, 2**8 - 1),
    types_pb2.DT_INT16: ("int_val", -2**15, 2**15 - 1),
    types_pb2.DT_INT32: ("int_val", -2**31, 2**31 - 1),
    types_pb2.DT_INT64: ("int64_val", -2**63, 2**63 - 1),
    types_pb2.DT_UINT32: ("uint32_val", 0, 2**32 - 1),
    types_pb2.DT_UINT64: ("uint64_val", 0, 2**64 - 1),
}


class JsonTensorError(ValueError):
  """A request's JSON that TF Serving refuses: `code` is its gRPC status code name."""

  def __init__(self, message: str, code: str = "INVALID_ARGUMENT"):
    super().__init__(message)
    self.code = code


def _dtype_name(dtype: int) -> str:
  """TensorFlow's DataTypeString: DT_FLOAT -> float, DT_INT64 -> int64."""
  try:
    return types_pb2.DataType.Name(dtype)[3:].lower()
  except ValueError:
    return f"unknown dtype {dtype}"


def _debug(value) -> str:
  """A JSON value quoted in an error message, cut to TF Serving's 256 characters."""
  return json.dumps(value, ensure_ascii=False)[:_DEBUG_CHARS]


def _json_type(value) -> str:
  if value is None:
    return "Null"
  if isinstance(value, bool):
    return "True" if value else "False"
  if isinstance(value, (int, float)):
    return "Number"
  return {str: "String", list: "Array", dict: "Object"}[type(value)]


def _type_error(value, dtype: int) -> JsonTensorError:
  return JsonTensorError(f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not of "
                         f"expected type: {_dtype_name(dtype)}")


def parse_request_body(body: bytes) -> Dict[str, Any]:
  """The request body as a JSON object; JsonTensorError when it is empty, not UTF-8, not
  JSON (with the offset) or not an object."""
  if not body.strip():
    raise JsonTensorError("JSON Parse error: The document is empty")
  try:
    text = body.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise JsonTensorError(f"JSON Parse error: bytes that are not UTF-8 at offset: "
                          f"{e.start}") from e
  try:
    document = json.loads(text)
  except json.JSONDecodeError as e:
    raise JsonTensorError(f"JSON Parse error: {e.msg} at offset: {e.pos}") from e
  except RecursionError as e:
    raise JsonTensorError("JSON Parse error: lists or objects nested too deeply") from e
  if not isinstance(document, dict):
    raise JsonTensorError(f"JSON Value: {_debug(document)} Is not object")
  return document


def signature_name(document: Mapping[str, Any]) -> str:
  """The request's optional `signature_name` ("" when absent: the default signature)."""
  name = document.get("signature_name", "")
  if not isinstance(name, str):
    raise JsonTensorError(f"JSON Value: {_debug(dict(document))} not formatted correctly. "
                          "'signature_name' key must be a string value.")
  return name


def _is_base64_object(value) -> bool:
  return isinstance(value, dict) and len(value) == 1 and \
      isinstance(value.get(_BASE64_KEY), str)


def _decode_base64(value) -> bytes:
  if not _is_base64_object(value):
    raise JsonTensorError(f"JSON Value: {_debug(value)} not formatted correctly for base64 "
                          "data")
  text = value[_BASE64_KEY]
  try:
    # Padding is optional, as in absl::Base64Unescape.
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
  except (binascii.Error, ValueError) as e:
    raise JsonTensorError("Unable to base64 decode") from e


def _dense_shape(value) -> list:
  """The shape a nested list declares, read along its first elements."""
  shape = []
  while isinstance(value, list):
    shape.append(len(value))
    if not value:
      break
    value = value[0]
  return shape


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _value_writer(dtype: int, tensor: tensor_pb2.TensorProto) -> Callable[[Any], None]:
  """A function that checks one JSON leaf against `dtype` and appends it to the
  TensorProto's field for that dtype (chosen once per tensor: this runs per value)."""
  if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
    append = (tensor.float_val if dtype == types_pb2.DT_FLOAT else tensor.double_val).append

    def write(value):
      if type(value) is not float and not _is_number(value):
        raise _type_error(value, dtype)
      try:
        append(float(value))
      except OverflowError as e:   # an integer literal beyond any double
        raise _type_error(value, dtype) from e
  elif dtype in _INTEGER_FIELDS:
    field, smallest, largest = _INTEGER_FIELDS[dtype]
    append = getattr(tensor, field).append

    def write(value):
      if type(value) is not int or not smallest <= value <= largest:
        raise _type_error(value, dtype)
      append(value)
  elif dtype == types_pb2.DT_STRING:
    append = tensor.string_val.append

    def write(value):
      if type(value) is str:
        append(value.encode("utf-8"))
      elif isinstance(value, dict):
        append(_decode_base64(value))
      else:
        raise _type_error(value, dtype)
  elif dtype == types_pb2.DT_BOOL:
    append = tensor.bool_val.append

    def write(value):
      if type(value) is not bool:
        raise _type_error(value, dtype)
      append(value)
  else:
    def write(value):
      raise JsonTensorError(f"Conversion of JSON Value: {_debug(value)} to type: "
                            f"{_dtype_name(dtype)}", code="UNIMPLEMENTED")
  return write


def _fill_values(value, level: int, shape: list, write: Callable[[Any], None]) -> int:
  """Writes the leaves of a nested list of `shape`; returns how many."""
  if not isinstance(value, list):
    if level != len(shape):
      raise JsonTensorError(f"JSON Value: {_debug(value)} found at incorrect level: "
                            f"{level + 1} in the JSON DOM. Expected at level: {len(shape)}")
    write(value)
    return 1
  if level >= len(shape):
    raise JsonTensorError(f"Encountered list at unexpected level: {level} expected < "
                          f"{len(shape)}")
  if len(value) != shape[level]:
    raise JsonTensorError(f"Encountered list at unexpected size: {len(value)} at level: "
                          f"{level} expected size: {shape[level]}")
  return sum(_fill_values(item, level + 1, shape, write) for item in value)


def _tensor(value, dtype: int) -> tensor_pb2.TensorProto:
  """One JSON value (a leaf or a nested list) as a TensorProto of `dtype`."""
  tensor = tensor_pb2.TensorProto(dtype=dtype)
  tensor.tensor_shape.SetInParent()   # a scalar's shape is there, and empty
  shape = _dense_shape(value)
  for size in shape:
    tensor.tensor_shape.dim.add(size=size)
  _fill_values(value, 0, shape, _value_writer(dtype, tensor))
  return tensor


def _is_named_inputs(value) -> bool:
  return isinstance(value, dict) and not _is_base64_object(value)


class _StackedInput:
  """One input of a row-form request: every instance's values in one TensorProto, and
  the shape the first instance set for the others."""

  def __init__(self, dtype: int):
    self.tensor = tensor_pb2.TensorProto(dtype=dtype)
    self.write = _value_writer(dtype, self.tensor)
    self.rows = 0
    self.row_shape = None
    self.row_size = None

  def add(self, value) -> None:
    """Appends one instance's value, refused unless it has the first instance's shape."""
    if isinstance(value, list):
      shape = _dense_shape(value)
      size = _fill_values(value, 0, shape, self.write)
    else:   # the common case, a scalar per instance, without the walk
      self.write(value)
      shape, size = [], 1
    if self.rows:
      if size != self.row_size:
        raise JsonTensorError(f"Expecting tensor size: {self.row_size} but got: {size}")
      if shape != self.row_shape:
        raise JsonTensorError(f"Expecting shape {_shape_text(self.row_shape)} but got: "
                              f"{_shape_text(shape)}")
    else:
      self.row_shape, self.row_size = shape, size
    self.rows += 1

  def stacked(self) -> tensor_pb2.TensorProto:
    """The TensorProto of every instance: [instances] + the shape of one."""
    for size in [self.rows] + self.row_shape:
      self.tensor.tensor_shape.dim.add(size=size)
    return self.tensor


def _shape_text(shape) -> str:
  return "[" + ",".join(str(size) for size in shape) + "]"


def _inputs_from_instances(instances: list, input_dtypes: Mapping[str, int]):
  """The row form: one tensor per input, the instances stacked along a first dimension."""
  if not isinstance(instances[0], dict) and len(input_dtypes) > 1:
    raise JsonTensorError("instances is a plain list, but expecting list of objects as "
                          "multiple input tensors required as per tensorinfo_map")
  named = _is_named_inputs(instances[0])
  stacks: Dict[str, _StackedInput] = {}

  def add(name, value):
    stack = stacks.get(name)
    if stack is None:
      if name not in input_dtypes:
        raise JsonTensorError(f"JSON object: does not have named input: {name}")
      stack = stacks[name] = _StackedInput(input_dtypes[name])
    stack.add(value)

  for index, instance in enumerate(instances):
    if named:
      if not _is_named_inputs(instance):
        raise JsonTensorError(f"Expecting object but got list at item {index} of input list")
      for name, value in instance.items():
        try:
          add(name, value)
        except JsonTensorError as e:
          raise JsonTensorError(f"Failed to process element: {index} key: {name} of "
                                f"'instances' list. Error: {e.code}: {e}", e.code) from e
      if set(instance) != set(input_dtypes):
        raise JsonTensorError(f"Failed to process element: {index} of 'instances' list. "
                              f"JSON object: {_debug(instance)} keys must be equal to: "
                              f"{','.join(sorted(input_dtypes))}")
    else:
      if _is_named_inputs(instance):
        raise JsonTensorError(f"Expecting value/list but got object at item {index} of "
                              "input list")
      try:
        add(next(iter(input_dtypes)), instance)
      except JsonTensorError as e:
        raise JsonTensorError(f"Failed to process element: {index} of 'instances' list. "
                              f"Error: {e.code}: {e}", e.code) from e
  return {name: stack.stacked() for name, stack in stacks.items()}


def _inputs_from_columns(inputs, input_dtypes: Mapping[str, int]):
  """The columnar form: each input's whole tensor, or the one input's as a bare value."""
  if not _is_named_inputs(inputs):
    if len(input_dtypes) > 1:
      raise JsonTensorError("inputs is a plain value/list, but expecting an object as "
                            "multiple input tensors required as per tensorinfo_map")
    name, dtype = next(iter(input_dtypes.items()))
    return {name: _tensor(inputs, dtype)}
  tensors = {}
  for name, dtype in input_dtypes.items():
    if name not in inputs:
      raise JsonTensorError(f"Missing named input: {name} in 'inputs' object.")
    tensors[name] = _tensor(inputs[name], dtype)
  return tensors


def fill_predict_inputs(document: Mapping[str, Any], input_dtypes: Mapping[str, int],
                        inputs) -> str:
  """Fills `inputs` (a PredictRequest's inputs map) from the request's `instances` or
  `inputs`, given the signature's inputs {name: DataType}; returns the form, ROW or
  COLUMNAR, which decides the response's shape."""
  if not input_dtypes:
    raise JsonTensorError("Failed to get input map for signature")
  has_instances, has_inputs = "instances" in document, "inputs" in document
  if has_instances and has_inputs:
    raise JsonTensorError(f"JSON Value: {_debug(dict(document))} Not formatted correctly "
                          "expecting only one of 'inputs' or 'instances' keys to exist ")
  if has_instances:
    instances = document["instances"]
    if not isinstance(instances, list):
      raise JsonTensorError(f"JSON Value: {_debug(dict(document))} Expecting 'instances' "
                            "to be an list/array")
    if not instances:
      raise JsonTensorError(f"JSON Value: {_debug(dict(document))} No values in "
                            "'instances' array")
    tensors, form = _inputs_from_instances(instances, input_dtypes), ROW
  elif has_inputs:
    tensors, form = _inputs_from_columns(document["inputs"], input_dtypes), COLUMNAR
  else:
    raise JsonTensorError("Missing 'inputs' or 'instances' key")
  for name, tensor in tensors.items():
    inputs[name].CopyFrom(tensor)
  return form


class _Raw(str):
  """JSON text written as it is (a float in TF Serving's digits)."""


def _decimal(value, digits: int, is_float32: bool) -> _Raw:
  """A float as TF Serving writes it: six significant digits when they read back to the
  same value, else all that are needed; ".0" on whole numbers; NaN and +-Infinity."""
  value = float(value)
  if math.isnan(value):
    return _Raw("NaN")
  if math.isinf(value):
    return _Raw("-Infinity" if value < 0 else "Infinity")
  text = f"{value:g}"
  back = float(np.float32(text)) if is_float32 else float(text)
  if back != value:
    text = f"{value:.{digits}g}"
  if "." not in text and "e" not in text:
    text += ".0"
  return _Raw(text)


def _json_values(array: np.ndarray, dtype: tf.DType, as_bytes: bool):
  """A numpy array as nested lists of JSON leaves of TF Serving's kinds."""
  if dtype in (tf.float32, tf.float64):
    digits, is_float32 = (9, True) if dtype == tf.float32 else (17, False)
    leaf = lambda v: _decimal(v, digits, is_float32)  # noqa: E731
  elif dtype.is_integer:
    leaf = int
  elif dtype == tf.bool:
    leaf = bool
  elif dtype == tf.string:
    leaf = lambda v: _string_leaf(v, as_bytes)  # noqa: E731
  else:
    raise JsonTensorError(f"Failed to write JSON value for tensor type: "
                          f"{_dtype_name(dtype.as_datatype_enum)}")

  def nest(value):
    if isinstance(value, np.ndarray):
      return leaf(value[()]) if value.ndim == 0 else [nest(item) for item in value]
    return leaf(value)
  return nest(array)


def _string_leaf(value: bytes, as_bytes: bool):
  if not as_bytes:
    try:
      return value.decode("utf-8")
    except UnicodeDecodeError:
      # TF Serving would write the raw bytes, which no JSON parser reads: base64 instead.
      pass
  return {_BASE64_KEY: base64.b64encode(value).decode("ascii")}


def _dumps(value) -> str:
  """Compact JSON with TF Serving's floats (_Raw written as they are)."""
  if isinstance(value, _Raw):
    return str(value)
  if isinstance(value, dict):
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {_dumps(v)}"
                           for k, v in value.items()) + "}"
  if isinstance(value, list):
    return "[" + ", ".join(_dumps(v) for v in value) + "]"
  return json.dumps(value, ensure_ascii=False)


def predict_response_json(outputs: Mapping[str, tensor_pb2.TensorProto], form: str) -> str:
  """A PredictResponse's outputs as TF Serving's JSON for a request of `form`:
  `{"predictions": [one per row]}` (ROW) or `{"outputs": ...}` (COLUMNAR); a single
  output is written without its name."""
  if not outputs:
    raise JsonTensorError("Cannot convert empty tensor map to JSON")
  values = {}
  for name in sorted(outputs):
    proto = outputs[name]
    dtype = tf.dtypes.as_dtype(proto.dtype)
    as_bytes = dtype == tf.string and name.endswith(_BYTES_SUFFIX)
    values[name] = _json_values(tf.make_ndarray(proto), dtype, as_bytes)
  if form == COLUMNAR:
    body = next(iter(values.values())) if len(values) == 1 else values
    return "{\n    \"outputs\": " + _dumps(body) + "\n}\n"
  batch = None
  for name, proto in sorted(outputs.items()):
    if not proto.tensor_shape.dim:
      raise JsonTensorError(f"Tensor name: {name} has no shape information ")
    size = proto.tensor_shape.dim[0].size
    if batch is not None and size != batch:
      raise JsonTensorError(f"Tensor name: {name} has inconsistent batch size: {size} "
                            f"expecting: {batch}")
    batch = size
  if len(values) == 1:
    rows = next(iter(values.values()))
  else:
    rows = [{name: values[name][row] for name in values} for row in range(batch)]
  lines = ",\n".join("        " + _dumps(row) for row in rows)
  return "{\n    \"predictions\": [\n" + lines + ("\n" if rows else "") + "    ]\n}\n"
