"""Parses CSV rows into tf.Examples, refusing bad input with its place named.

TFX's CsvExampleGen infers each column's type from the data, so an id column
of digits becomes INT and a price column with one typo becomes STRING. Here
the types are declared (the config's `data_config.input_fields`) and a value
that doesn't fit stops the run with file, line and field. The labels
(`label_fields`, in funnel order) must be 0 or 1, and a step can't be 1 where
the step before it is 0.

A row is a line. ExampleGen reads a big file in byte ranges, each on its own
(components/byte_ranges.py), so a worker dropped at any byte must find where rows
start: right after a line break. A quoted field may hold commas and quotes but no
line break; a line whose quotes are still open at its end (a stray quote, or a
field with a line break in it) is refused with its place.

A refused row is named by its file, its line and its byte offset, and quoted.
A range that starts mid-file doesn't know its line numbers, so the line of a
refused row is counted (the line breaks before it) when it is refused.
"""

import csv
import math
from typing import BinaryIO, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import tensorflow as tf

from components import byte_ranges
from models import raw_text
from models.features import Column, ColumnType

# How much of a refused row its message quotes.
_QUOTED_CHARS = 300


class BadInputError(ValueError):
  """Raised for input that would otherwise train a silently bad model."""


class Header(NamedTuple):
  """A CSV file's header: its column names, and the byte where the first row starts."""
  names: Tuple[str, ...]
  end: int


class RowProblem(Exception):
  """What is wrong with one row, before its place is known (`refusal` names it); `field`
  None: the whole row."""

  def __init__(self, message: str, field: Optional[str] = None):
    super().__init__(message)
    self.message, self.field = message, field


class _QuoteLeftOpen(Exception):
  """csv.reader asked for the next line: a quoted field was still open at a line's end."""


def check_header(path: str, header: Sequence[str], columns: Sequence[Column],
                 optional: Sequence[str] = ()) -> None:
  """BadInputError saying what is missing, unknown or repeated when the header is not
  the config's columns, each once (in any order); the `optional` ones may be absent
  (a candidate set's labels)."""
  expected = [c.name for c in columns]
  missing = [c for c in expected if c not in header and c not in optional]
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


def _one_line(text: str) -> Iterator[str]:
  # csv.reader asks for another line only to go on with a quoted field still open.
  yield text
  raise _QuoteLeftOpen()


def _split_cells(text: str) -> List[str]:
  """The cells of one line ([] for a blank one); _QuoteLeftOpen when a quoted field
  runs past the line's end, csv.Error for other broken quoting."""
  return next(csv.reader(_one_line(text), strict=True))


_QUOTE_LEFT_OPEN = ("a quoted field is still open at the end of the line: a stray quote, "
                    "or a line break inside a quoted field, which ExampleGen does not read "
                    "(a row is one line, so that big files can be read in byte ranges)")


def read_header(path: str, raw: BinaryIO, columns: Optional[Sequence[Column]],
                optional: Sequence[str] = ()) -> Header:
  """The header at the start of a CSV file's bytes, checked against the config's
  columns (check_header, `optional` ones may be absent; None: not checked); a
  byte-order mark before it is read as nothing."""
  line = raw.readline()
  if not line:
    raise BadInputError(f"Bad input in {path}: the file is empty (a header is expected)")
  place = f"Bad input in {path}, line 1 (header)"
  try:
    names = _split_cells(line.decode("utf-8-sig"))
  except UnicodeDecodeError as e:
    raise BadInputError(f"{place}: not UTF-8 text ({e.reason} at byte {e.start} of the "
                        f"line)") from None
  except _QuoteLeftOpen:
    raise BadInputError(f"{place}: {_QUOTE_LEFT_OPEN}") from None
  except csv.Error as e:
    raise BadInputError(f"{place}: {e}") from None
  names = [name.strip() for name in names]
  if columns is not None:
    check_header(path, names, columns, optional)
  return Header(tuple(names), len(line))


def _row_to_example(header: Sequence[str], row: Sequence[str], columns: Sequence[Column],
                   labels: Sequence[str]) -> tf.train.Example:
  """One CSV record -> tf.Example; an empty cell is a missing feature. RowProblem saying
  what is wrong, which read_rows turns into a BadInputError naming its place."""
  if len(row) != len(header):
    raise RowProblem(f"{len(row)} fields where the header has {len(header)} (a malformed row)")
  cells = dict(zip(header, row))
  example = tf.train.Example()
  feature = example.features.feature
  for column in columns:
    name, column_type = column.name, column.type
    if name not in cells:   # an optional column (check_header) this file doesn't have
      continue
    value = cells[name].strip()
    if name in labels:
      if value not in ("0", "1"):
        raise RowProblem(f"label must be 0 or 1, got {value!r}", name)
      feature[name].int64_list.value.append(int(value))
    elif not value:
      continue
    elif column_type is ColumnType.STRING:
      feature[name].bytes_list.value.append(value.encode("utf-8"))
    elif column_type is ColumnType.FLOAT:
      try:
        number = float(value)
      except ValueError:
        raise RowProblem(f"{value!r} is not a number", name) from None
      if not math.isfinite(number) or number < 0:
        raise RowProblem(f"{value!r} is not a finite non-negative number", name)
      feature[name].float_list.value.append(number)
    else:
      try:
        number = raw_text.parse_int64(value)
      except ValueError as e:
        raise RowProblem(f"{value!r} is {e}", name) from None
      feature[name].int64_list.value.append(number)
  present = [label for label in labels if label in cells]
  for prev_label, label in zip(present, present[1:]):
    if feature[label].int64_list.value[0] > feature[prev_label].int64_list.value[0]:
      raise RowProblem(f"{label}=1 but {prev_label}=0: a funnel step can't happen without "
                       f"the one before it", label)
  return example


def line_cells(line: bytes) -> List[str]:
  """The cells of one line of a CSV file, unstripped ([] for a blank line); RowProblem
  when it is not UTF-8 or its quoting is broken or runs past the line's end."""
  try:
    text = line.decode("utf-8")
  except UnicodeDecodeError as e:
    raise RowProblem(f"not UTF-8 text ({e.reason} at byte {e.start} of the line)") from None
  try:
    return _split_cells(text)
  except _QuoteLeftOpen:
    raise RowProblem(_QUOTE_LEFT_OPEN) from None
  except csv.Error as e:
    raise RowProblem(str(e)) from None


def _line_to_example(line: bytes, header: Sequence[str], columns: Sequence[Column],
                     labels: Sequence[str]) -> Optional[tf.train.Example]:
  """One line's tf.Example; None for a blank line; RowProblem saying what is wrong."""
  row = line_cells(line)
  return _row_to_example(header, row, columns, labels) if row else None


def refusal(path: str, raw: BinaryIO, offset: int, line: bytes, bad: RowProblem
            ) -> BadInputError:
  """The BadInputError of a refused row: its file, line (counted in `raw`, the file's
  bytes, up to `offset`, where the row starts) and field, and the row quoted."""
  text = line.decode("utf-8", errors="replace").rstrip("\r\n")
  if len(text) > _QUOTED_CHARS:
    text = text[:_QUOTED_CHARS] + "..."
  line_number = byte_ranges.line_number(raw, offset)
  field = f", field '{bad.field}'" if bad.field else ""
  return BadInputError(f"Bad input in {path}, line {line_number}{field}: {bad.message}; "
                       f"the row at byte {offset}: {text!r}")


def read_rows(path: str, raw: BinaryIO, header: Header, start: int, stop: Optional[int],
              columns: Sequence[Column], labels: Sequence[str]
              ) -> Iterator[Tuple[int, tf.train.Example]]:
  """(byte offset, tf.Example) of the rows of a CSV file that start in bytes
  [start, stop) (stop None: to the end), in order; the last is read to its end,
  past `stop` (byte_ranges.lines). `raw`: the file's bytes, seekable. Blank lines
  are skipped; a bad row raises BadInputError naming file, line and byte, quoting it."""
  for offset, line in byte_ranges.lines(raw, max(start, header.end), stop):
    try:
      example = _line_to_example(line, header.names, columns, labels)
    except RowProblem as bad:
      raise refusal(path, raw, offset, line, bad) from None
    if example is not None:
      yield offset, example


def read_examples(path: str, raw: BinaryIO, columns: Sequence[Column],
                  labels: Sequence[str]) -> Iterator[tf.train.Example]:
  """All records of one CSV file with a header, from its bytes, read whole."""
  header = read_header(path, raw, columns)
  for _, example in read_rows(path, raw, header, header.end, None, columns, labels):
    yield example
