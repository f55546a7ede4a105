"""Parses CSV rows into tf.Examples, refusing bad input with its place named.

TFX's CsvExampleGen infers each column's type from the data, so an id column
of digits becomes INT and a price column with one typo becomes STRING. Here
the types are declared (the config's `data_config.input_fields`) and a value
that doesn't fit stops the run with file, line and field. The labels
(`label_fields`, in funnel order) must be 0 or 1, and a step can't be 1 where
the step before it is 0.
"""

import csv
import math
from typing import BinaryIO, Iterable, Iterator, Sequence, Tuple

import tensorflow as tf

from models import raw_text
from models.features import Column, ColumnType


class BadInputError(ValueError):
  """Raised for input that would otherwise train a silently bad model."""


def check_header(path: str, header: Sequence[str], columns: Sequence[Column]) -> None:
  """BadInputError saying what is missing, unknown or repeated when the header is not
  the config's columns, each once (in any order)."""
  expected = [c.name for c in columns]
  missing = [c for c in expected if c not in header]
  unexpected = [c for c in header if c not in expected]
  if missing or unexpected or len(set(header)) != len(header):
    problems = []
    if missing:
      problems.append(f"missing column(s) {missing}")
    if unexpected:
      problems.append(f"unknown column(s) {unexpected}")
    if len(set(header)) != len(header):
      problems.append("duplicate column names")
    raise BadInputError(
        f"Bad input in {path}, line 1 (header): {'; '.join(problems)}. "
        f"Expected the columns {expected}")


def _bad(path, line, field, message):
  return BadInputError(f"Bad input in {path}, line {line}, field '{field}': {message}")


def row_to_example(path: str, line: int, header: Sequence[str], row: Sequence[str],
                   columns: Sequence[Column], labels: Sequence[str]) -> tf.train.Example:
  """One CSV record -> tf.Example; an empty cell is a missing feature."""
  if len(row) != len(header):
    raise BadInputError(
        f"Bad input in {path}, line {line}: {len(row)} fields where the header has "
        f"{len(header)} (a malformed row)")
  cells = dict(zip(header, row))
  example = tf.train.Example()
  feature = example.features.feature
  for column in columns:
    name, column_type = column.name, column.type
    value = cells[name].strip()
    if name in labels:
      if value not in ("0", "1"):
        raise _bad(path, line, name, f"label must be 0 or 1, got {value!r}")
      feature[name].int64_list.value.append(int(value))
    elif not value:
      continue
    elif column_type is ColumnType.STRING:
      feature[name].bytes_list.value.append(value.encode("utf-8"))
    elif column_type is ColumnType.FLOAT:
      try:
        number = float(value)
      except ValueError:
        raise _bad(path, line, name, f"{value!r} is not a number") from None
      if not math.isfinite(number) or number < 0:
        raise _bad(path, line, name, f"{value!r} is not a finite non-negative number")
      feature[name].float_list.value.append(number)
    else:
      try:
        number = raw_text.parse_int64(value)
      except ValueError as e:
        raise _bad(path, line, name, f"{value!r} is {e}") from None
      feature[name].int64_list.value.append(number)
  for prev_label, label in zip(labels, labels[1:]):
    if feature[label].int64_list.value[0] > feature[prev_label].int64_list.value[0]:
      raise _bad(path, line, label,
                 f"{label}=1 but {prev_label}=0: a funnel step can't happen without "
                 f"the one before it")
  return example


def decoded_lines(path: str, raw: BinaryIO) -> Iterator[str]:
  """The lines of a binary stream as text (models.raw_text): bytes that are not UTF-8
  are refused with their line."""
  def refuse(number, e):
    return BadInputError(f"Bad input in {path}, line {number}: not UTF-8 text ({e.reason} "
                         f"at byte {e.start} of the line)")
  return (text for _, text in raw_text.decoded_lines(iter(raw.readline, b""), refuse))


def read_examples(path: str, text: Iterable[str], columns: Sequence[Column],
                  labels: Sequence[str]) -> Iterator[tf.train.Example]:
  """All records of one CSV file with a header."""
  for _, example in read_numbered_examples(path, text, columns, labels):
    yield example


def read_numbered_examples(path: str, text: Iterable[str], columns: Sequence[Column],
                           labels: Sequence[str]) -> Iterator[Tuple[int, tf.train.Example]]:
  """(record number, tf.Example) of all records of one CSV file with a header; the
  first record after the header is number 1. `text`: the file's lines (a text
  stream, or decoded_lines over its bytes); a byte-order mark before the header is
  dropped."""
  reader = csv.reader(text, strict=True)
  try:
    header = next(reader)
  except StopIteration:
    raise BadInputError(f"Bad input in {path}: the file is empty (a header is expected)") from None
  except csv.Error as e:
    raise BadInputError(f"Bad input in {path}, line 1 (header): {e}") from None
  header = [h.strip() for h in header]
  if header and header[0].startswith("\ufeff"):
    header[0] = header[0][1:].strip()
  check_header(path, header, columns)
  number = 0
  while True:
    try:
      row = next(reader)
    except StopIteration:
      return
    except csv.Error as e:
      raise BadInputError(f"Bad input in {path}, line {reader.line_num}: {e}") from None
    if not row:
      continue
    number += 1
    yield number, row_to_example(path, reader.line_num, header, row, columns, labels)
