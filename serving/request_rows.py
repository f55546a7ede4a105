"""Rows of raw features -> the inputs of the model's two predict signatures.

Rows are dicts {column: value} as read from CSV (every value a string), JSON
lines, or Python. The column types come from the model itself: the inputs of
its `serving_raw` signature (DT_STRING, DT_INT64, DT_FLOAT), read with
GetModelMetadata, so the client needs no config file. Columns the model
doesn't take (labels such as `clk`, `buy`) are ignored.

* `serving_default` takes serialized tf.Examples: a missing value (None, '',
  or an absent key) is left out of the Example, as in the training data.
* `serving_raw` takes one [batch] tensor per column: a missing string is '',
  a missing float NaN; an integer column has no missing value, so a row
  without one is refused (send it to `serving_default` instead).

A value that doesn't parse as its column's type, an integer beyond int64, a
column that nearly names one of the model's (another case, a typo), and a CSV
row with fewer or more fields than its header are refused with the file, row
or line and column named. Files are UTF-8, with or without a byte-order mark.
"""

import csv
import difflib
import json
import math
import os
import sys
from typing import Dict, Iterable, Iterator, List, Mapping

import numpy as np
import tensorflow as tf

from models import raw_text

# serving_raw input dtype enum -> the kind of value
_STRING, _INT, _FLOAT = "string", "int", "float"
_KINDS = {tf.string.as_datatype_enum: _STRING, tf.int64.as_datatype_enum: _INT,
          tf.int32.as_datatype_enum: _INT, tf.float32.as_datatype_enum: _FLOAT,
          tf.float64.as_datatype_enum: _FLOAT}


class RowError(ValueError):
  """A row the model can't take; the message names the row and column."""


def column_kinds(signature_def) -> Dict[str, str]:
  """{column: 'string' | 'int' | 'float'} from a `serving_raw` SignatureDef."""
  kinds = {}
  for name, info in signature_def.inputs.items():
    if info.dtype not in _KINDS:
      raise ValueError(f"input {name!r} has dtype {tf.dtypes.as_dtype(info.dtype).name}, "
                       "which raw rows can't fill")
    kinds[name] = _KINDS[info.dtype]
  return kinds


def _is_missing(value) -> bool:
  return value is None or (isinstance(value, str) and value == "") or (
      isinstance(value, float) and math.isnan(value))


def _parse(value, kind, where):
  try:
    if kind == _STRING:
      return value if isinstance(value, str) else str(value)
    if kind == _INT:
      if isinstance(value, float) and not value.is_integer():
        raise ValueError("not an integer")
      if isinstance(value, str):
        return raw_text.parse_int64(value.strip())
      number = int(value)
      if not raw_text.INT64_MIN <= number <= raw_text.INT64_MAX:
        raise ValueError("beyond int64")
      return number
    return float(value)
  except (TypeError, ValueError) as e:
    raise RowError(f"{where}: {value!r} is not a valid {kind} ({e})") from None


def check_columns(row: Mapping, kinds: Mapping[str, str], where: str) -> None:
  """RowError when the row names a column the model doesn't take but nearly does
  (another case, a typo), or none of the model's columns at all."""
  unknown = [name for name in row if name not in kinds]
  for name in unknown:
    close = [c for c in kinds if c.lower() == str(name).lower()] or difflib.get_close_matches(
        str(name), list(kinds), n=1, cutoff=0.8)
    if close:
      raise RowError(f"{where}: column {name!r} is not one the model takes; did you mean "
                     f"{close[0]!r}? Its columns: {', '.join(sorted(kinds))}")
  if row and len(unknown) == len(row):
    raise RowError(f"{where}: none of its columns ({', '.join(map(str, row))}) is one the "
                   f"model takes: {', '.join(sorted(kinds))}")


def to_example(row: Mapping, kinds: Mapping[str, str], where: str) -> bytes:
  """A serialized tf.Example with the row's non-missing values."""
  example = tf.train.Example()
  for name, kind in kinds.items():
    value = row.get(name)
    if _is_missing(value):
      continue
    value = _parse(value, kind, f"{where}, column {name!r}")
    feature = example.features.feature[name]
    if kind == _STRING:
      feature.bytes_list.value.append(value.encode("utf-8"))
    elif kind == _INT:
      feature.int64_list.value.append(value)
    else:
      feature.float_list.value.append(value)
  return example.SerializeToString()


def to_raw_columns(rows: List[Mapping], kinds: Mapping[str, str],
                   first_row: int = 0, source: str = "rows") -> Dict[str, np.ndarray]:
  """{column: [len(rows)] array} for `serving_raw`."""
  columns = {}
  for name, kind in kinds.items():
    values = []
    for i, row in enumerate(rows):
      value = row.get(name)
      where = f"{source} row {first_row + i + 1}, column {name!r}"
      if _is_missing(value):
        if kind == _INT:
          raise RowError(f"{where}: missing, and serving_raw has no missing value for an "
                         "integer column (use the serving_default signature)")
        values.append("" if kind == _STRING else float("nan"))
      else:
        values.append(_parse(value, kind, where))
    if kind == _STRING:
      columns[name] = np.array([v.encode("utf-8") for v in values], dtype=object)
    else:
      columns[name] = np.array(values, dtype=np.int64 if kind == _INT else np.float32)
  return columns


def read_rows(path: str, fmt: str = None) -> Iterator[Dict]:
  """Rows of a CSV file with a header or a JSON-lines file ('-': stdin), UTF-8 with
  or without a byte-order mark. The format comes from `fmt` ('csv' | 'jsonl') or the
  file's extension. A CSV row with more or fewer fields than the header, and text
  that is not UTF-8, are refused naming the line."""
  if fmt is None:
    ext = os.path.splitext(path)[1].lower()
    fmt = "jsonl" if ext in (".jsonl", ".json", ".ndjson") else "csv"
  if fmt not in ("csv", "jsonl"):
    raise ValueError(f"unknown row format {fmt!r}: use csv or jsonl")
  raw = sys.stdin.buffer if path == "-" else open(path, "rb")
  name = "stdin" if path == "-" else path
  lines = raw_text.decoded_lines(raw, lambda number, e: RowError(
      f"{name} line {number}: not UTF-8 text ({e.reason})"))
  try:
    if fmt == "csv":
      reader = csv.reader(line for _, line in lines)
      header = next(reader, None)
      if header is None:
        return
      for row in reader:
        if not row:
          continue
        if len(row) != len(header):
          raise RowError(f"{name} line {reader.line_num}: {len(row)} fields where the "
                         f"header has {len(header)} ({', '.join(header)})")
        yield dict(zip(header, row))
    else:
      for number, line in lines:
        if not line.strip():
          continue
        try:
          row = json.loads(line)
        except json.JSONDecodeError as e:
          raise RowError(f"{name} line {number}: not JSON: {e}") from None
        if not isinstance(row, dict):
          raise RowError(f"{name} line {number}: expected a JSON object, got "
                         f"{type(row).__name__}")
        yield row
  finally:
    if raw is not sys.stdin.buffer:
      raw.close()


def batches(rows: Iterable, size: int) -> Iterator[List]:
  """`rows` in lists of `size`, the last one shorter when they don't divide evenly."""
  batch = []
  for row in rows:
    batch.append(row)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch
