"""TF Serving's warmup file in the SavedModels the Trainer exports, and the requests in it.

TF Serving runs the first requests to a freshly loaded model through lazily
initialised parts of TensorFlow (graph optimisation, kernel creation), which
makes them far slower than the rest. A SavedModel can carry sample requests
that the server replays when it loads the model, before it serves it
(TF Serving's "SavedModel warmup"):

* where: `assets.extra/tf_serving_warmup_requests` in the SavedModel directory
  (WARMUP_FILE);
* what: a TFRecord file, each record a serialized
  `tensorflow_serving.apis.prediction_log_pb2.PredictionLog`, here each a
  `predict_log.request` (a PredictRequest naming its signature);
* how many: TF Serving reads at most MAX_RECORDS and refuses the model beyond.

The Trainer builds them from the first rows of ExampleGen's eval split (raw
tf.Examples, the labels left out): for `serving_default` the serialized
tf.Examples, for `serving_raw` one [batch] tensor per raw column (from the
first rows with every integer column present), a request of one row and one
of WARMUP_ROWS rows each, so both signatures and both a single row and a
batch are warm. The requests name no model (TF Serving's
warmup ignores the name); a client that sends them sets it.
"""

import os
import re
from typing import Dict, Iterable, List, Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

# TF Serving's names: tensorflow_serving/servables/tensorflow/saved_model_warmup_util.h.
WARMUP_DIR = "assets.extra"
WARMUP_FILE = os.path.join(WARMUP_DIR, "tf_serving_warmup_requests")
MAX_RECORDS = 1000
# The two signatures warmed (models.signatures).
EXAMPLES_SIGNATURE, RAW_SIGNATURE = "serving_default", "serving_raw"
# Rows in the larger request of each signature; the smaller has one.
WARMUP_ROWS = 8
# How many eval records are read at most to find rows whose integer columns are all
# present (serving_raw has no missing integer).
SCAN_RECORDS = 1000
# Trainer custom_config key: the file patterns of the raw eval split, set by the
# Trainer's executor (components/trainer.py) from ExampleGen's examples.
RAW_EVAL_FILES_KEY = "raw_eval_files"


class WarmupFileError(ValueError):
  """A warmup file TF Serving would refuse; the message names the file and record."""


def warmup_file(saved_model_dir: str) -> str:
  """The warmup file's path in a SavedModel directory (whether or not it exists)."""
  return os.path.join(saved_model_dir, WARMUP_FILE)


def read_examples(file_patterns: Sequence[str], count: int = SCAN_RECORDS,
                  compression: str = "GZIP") -> List[tf.train.Example]:
  """The first `count` tf.Examples of ExampleGen's TFRecord files matching
  `file_patterns` (GZIP, as ExampleGen writes them), in file order."""
  paths = sorted(path for pattern in file_patterns for path in tf.io.gfile.glob(pattern))
  if not paths:
    raise FileNotFoundError(f"no files match {list(file_patterns)}")
  examples = []
  for record in tf.data.TFRecordDataset(paths, compression_type=compression).take(count):
    examples.append(tf.train.Example.FromString(record.numpy()))
  return examples


def _value(example: tf.train.Example, name: str, dtype: tf.DType):
  """The column's value in the tf.Example, or None when it is missing."""
  feature = example.features.feature.get(name)
  if feature is None:
    return None
  kind = feature.WhichOneof("kind")
  values = getattr(feature, kind).value if kind else []
  if not values:
    return None
  expected = {tf.string: "bytes_list", tf.int64: "int64_list", tf.float32: "float_list"}
  if kind != expected.get(dtype):
    raise ValueError(f"column {name!r} holds a {kind} where serving_raw takes "
                     f"{dtype.name}")
  return values[0]


def build_requests(examples: Iterable[tf.train.Example],
                   raw_inputs: Mapping[str, tf.DType],
                   rows: int = WARMUP_ROWS) -> List[prediction_log_pb2.PredictionLog]:
  """The warmup records for `examples` (raw rows, labels and other columns allowed):
  for each signature a request of its first row and one of its first `rows` rows.

  `raw_inputs`: serving_raw's inputs, column -> dtype (string, int64, float32);
  only these columns are sent, so labels never are. serving_default takes the
  first rows; serving_raw the first with every integer column present (it has
  no missing integer), and no request when no row has them all. ValueError
  without rows or inputs."""
  if not raw_inputs:
    raise ValueError("serving_raw takes no inputs to build requests for")
  ints = [name for name, dtype in raw_inputs.items() if dtype == tf.int64]
  served, complete = [], []
  for example in examples:
    kept = tf.train.Example()
    for name in raw_inputs:
      if name in example.features.feature:
        kept.features.feature[name].CopyFrom(example.features.feature[name])
    if len(served) < rows:
      served.append(kept)
    if all(_value(kept, name, tf.int64) is not None for name in ints):
      complete.append(kept)
    if len(served) == rows and len(complete) == rows:
      break
  if not served:
    raise ValueError("no rows to build warmup requests from")
  logs = []
  for size in sorted({1, len(served)}):
    logs.append(_predict_log(EXAMPLES_SIGNATURE, {"examples": np.array(
        [e.SerializeToString() for e in served[:size]], dtype=object)}))
  for size in sorted({1, len(complete)}) if complete else ():
    logs.append(_predict_log(RAW_SIGNATURE, raw_columns(complete[:size], raw_inputs)))
  return logs


def raw_columns(examples: Sequence[tf.train.Example],
                raw_inputs: Mapping[str, tf.DType]) -> Dict[str, np.ndarray]:
  """serving_raw's inputs for the rows: a [rows] array per column, a missing string
  '' and a missing float NaN (as models.signatures reads them)."""
  columns = {}
  for name, dtype in raw_inputs.items():
    values = [_value(e, name, dtype) for e in examples]
    if dtype == tf.string:
      columns[name] = np.array([b"" if v is None else v for v in values], dtype=object)
    elif dtype == tf.float32:
      columns[name] = np.array([np.nan if v is None else v for v in values], np.float32)
    elif dtype == tf.int64:
      if any(v is None for v in values):
        raise ValueError(f"integer column {name!r} is missing in a row")
      columns[name] = np.array(values, np.int64)
    else:
      raise ValueError(f"serving_raw input {name!r} has dtype {dtype.name}, which raw "
                       "rows can't fill")
  return columns


def _predict_log(signature: str, inputs: Mapping[str, np.ndarray]
                 ) -> prediction_log_pb2.PredictionLog:
  request = predict_pb2.PredictRequest()
  request.model_spec.signature_name = signature
  for name, value in inputs.items():
    request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
  return prediction_log_pb2.PredictionLog(
      predict_log=prediction_log_pb2.PredictLog(request=request))


def write_requests(saved_model_dir: str,
                   logs: Sequence[prediction_log_pb2.PredictionLog]) -> str:
  """Writes the records as the SavedModel's warmup file, whole or not at all (a
  temporary file renamed into place); returns its path. ValueError beyond MAX_RECORDS."""
  if not 0 < len(logs) <= MAX_RECORDS:
    raise ValueError(f"a warmup file holds 1 to {MAX_RECORDS} records (TF Serving's "
                     f"limit), got {len(logs)}")
  path = warmup_file(saved_model_dir)
  tf.io.gfile.makedirs(os.path.dirname(path))
  partial = path + ".partial"
  with tf.io.TFRecordWriter(partial) as writer:
    for log in logs:
      writer.write(log.SerializeToString())
  tf.io.gfile.rename(partial, path, overwrite=True)
  return path


def read_requests(saved_model_dir: str) -> List[prediction_log_pb2.PredictionLog]:
  """The SavedModel's warmup records, as TF Serving reads them; [] without a warmup
  file. WarmupFileError (naming the file and record) for a file that is not a
  TFRecord file, a record that is not a PredictionLog, or more than MAX_RECORDS."""
  path = warmup_file(saved_model_dir)
  if not tf.io.gfile.exists(path):
    return []
  logs = []
  try:
    for number, record in enumerate(tf.data.TFRecordDataset(path), start=1):
      if number > MAX_RECORDS:
        raise WarmupFileError(f"{path}: more than {MAX_RECORDS} warmup records, TF "
                              "Serving's maximum")
      log = prediction_log_pb2.PredictionLog()
      try:
        log.ParseFromString(record.numpy())
      except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and kin
        raise WarmupFileError(f"{path}: record {number} is not a PredictionLog "
                              f"({type(e).__name__})") from None
      logs.append(log)
  except tf.errors.DataLossError as e:
    # tf.data's message, without its "{{function_node ...}}" and "[Op:...]" wrapping.
    message = re.sub(r"^\{\{.*?\}\}\s*|\s*\[Op:.*$", "", e.message.splitlines()[0])
    raise WarmupFileError(f"{path}: not a TFRecord file after record {len(logs)} "
                          f"({message})") from None
  return logs
