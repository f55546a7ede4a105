"""A candidate set's CSV files as batches of signature inputs, each row with its key
columns.

The files are those `aitm run --data` reads: every file directly in the data
directory, CSV with a header, UTF-8, a row per line (a directory of `span-N/`
directories is refused: score one span's directory). Each row is read by the CSV
ExampleGen's rules (components/csv_example_gen/csv_parser.py: strict quoting within
one line, cells stripped, an empty cell is a missing value), its model columns typed
by the SavedModel's own `serving_raw` signature (scoring/model_contract.py), so no
config is needed to read them. Columns the model doesn't take (labels, ids of your
own) are allowed and may be key columns.

Big files are cut into byte ranges (components/byte_ranges.py), each read on its own
by a worker; a range doesn't know its line numbers, so a refused row's line is
counted when it is refused (csv_parser.refusal): file, line, column, the row quoted.

A batch goes to `serving_raw` as one array per column, except when it has a row
without a value in an integer column, which `serving_raw` can't express: then the
whole batch goes to `serving_default` as tf.Examples with that value left out (the
two signatures agree to 1e-6; tests/test_serving.py).
"""

import dataclasses
import difflib
import math
import os
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from components import byte_ranges
from components.csv_example_gen.csv_parser import (BadInputError, Header, RowProblem,
                                                   line_cells, read_header, refusal)
from components.label_blind_split import SPAN_DIR
from models import raw_text
from serving import request_rows

# Rows per batch: the signature is called on this many at once (in-process calls reach
# their rows/s from about 1,000 rows on).
BATCH_ROWS = 4096


class FilePlan(NamedTuple):
  """How one CSV file is read: its header and where its key and model columns are."""
  path: str
  index: int                                 # its place among the files, from 0
  header: Header
  keys: Tuple[int, ...]                      # header positions of the key columns
  inputs: Tuple[Tuple[str, str, int], ...]   # (column, kind, header position) per model input


class CandidateRange(NamedTuple):
  """The rows one worker reads: those starting in bytes [start, stop) of a file (stop
  None: to its end), range `index` of the file's `count` (from 1)."""
  file: FilePlan
  start: int
  stop: Optional[int]
  index: int
  count: int

  @property
  def part(self) -> str:
    """The name of the range's output part: file and range, so names sort as the input."""
    return f"{self.file.index:05d}-{self.index:05d}"

  def describe(self) -> str:
    """The range for progress lines: the file, and which part of it when it has several."""
    name = os.path.basename(self.file.path)
    return name if self.count == 1 else f"{name} range {self.index}/{self.count}"


@dataclasses.dataclass
class RowBatch:
  """Rows of one range, in file order, as a signature takes them; len() is its rows."""
  part: str                                  # CandidateRange.part
  last: bool                                 # the range's last batch
  keys: List[Tuple[str, ...]]                # each row's key cells, as the file has them
  columns: Optional[Dict[str, np.ndarray]]   # serving_raw's inputs, or None
  examples: Optional[List[bytes]]            # serving_default's: serialized tf.Examples

  def __len__(self) -> int:
    return len(self.keys)


def find_files(data_dir: str) -> List[str]:
  """The files directly in data_dir, sorted; BadInputError when there are none."""
  if "://" in data_dir:
    raise BadInputError(f"Bad input: --data {data_dir}: a directory of this machine's file "
                        "system (or a volume mounted on it); remote paths are not listed")
  if not os.path.isdir(data_dir):
    raise BadInputError(f"Bad input: --data {data_dir} is not a directory")
  entries = sorted(os.listdir(data_dir))
  files = [os.path.join(data_dir, name) for name in entries
           if not name.startswith(".") and os.path.isfile(os.path.join(data_dir, name))]
  if files:
    return files
  spans = sorted((name for name in entries if SPAN_DIR.match(name)),
                 key=lambda name: int(SPAN_DIR.match(name).group(1)))
  if spans:
    newest = os.path.join(data_dir, spans[-1])
    raise BadInputError(f"Bad input: {data_dir} holds span directories ({', '.join(spans)}), "
                        f"not CSV files: score one, e.g. --data {newest}")
  raise BadInputError(f"Bad input: no CSV files in {data_dir}")


def plan_files(paths: Sequence[str], kinds: Dict[str, str], key_columns: Optional[Sequence[str]],
               labels: Sequence[str]) -> Tuple[Tuple[str, ...], List[FilePlan]]:
  """(the key columns, each file's FilePlan), every header read and checked first.

  The model's columns (`kinds`) must all be in every header, each column once. The key
  columns are `key_columns`, or None: every column of the first file's header but the
  `labels`; every file must have them. BadInputError naming the file otherwise."""
  plans, keys = [], tuple(key_columns) if key_columns else None
  for index, path in enumerate(paths):
    with byte_ranges.open_file(path) as raw:
      header = read_header(path, raw, None)
    names = header.names
    place = f"Bad input in {path}, line 1 (header)"
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
      raise BadInputError(f"{place}: the column(s) {repeated} appear more than once")
    missing = [column for column in kinds if column not in names]
    if missing:
      raise BadInputError(f"{place}: missing the model's column(s) {_with_guesses(missing, names)}"
                          f"; the model takes {', '.join(kinds)}")
    if keys is None:
      keys = tuple(n for n in names if n not in labels)
    absent = [k for k in keys if k not in names]
    if absent:
      raise BadInputError(f"{place}: missing the key column(s) {_with_guesses(absent, names)} "
                          f"(key columns: {', '.join(keys)})")
    plans.append(FilePlan(path, index, header, tuple(names.index(k) for k in keys),
                          tuple((c, kind, names.index(c)) for c, kind in kinds.items())))
  return keys, plans


def _with_guesses(wanted: Sequence[str], names: Sequence[str]) -> str:
  """The wanted column names, each with the header's name that nearly spells it."""
  words = []
  for name in wanted:
    close = difflib.get_close_matches(name, [n for n in names if n not in wanted], n=1,
                                      cutoff=0.8)
    words.append(f"'{name}'" + (f" (the header has '{close[0]}')" if close else ""))
  return ", ".join(words)


def cut_ranges(plan: FilePlan, range_bytes: int) -> List[CandidateRange]:
  """The file's rows in ranges of about range_bytes each (one, to its end, for a
  compressed file; none for a file with a header and no rows)."""
  with byte_ranges.open_file(plan.path) as raw:
    spans = ([(plan.header.end, None)] if byte_ranges.is_compressed(plan.path)
             else byte_ranges.cut(plan.header.end, byte_ranges.size(raw), range_bytes))
  return [CandidateRange(plan, start, stop, index, len(spans))
          for index, (start, stop) in enumerate(spans, 1)]


def read_batches(part: CandidateRange, examples_only: bool = False,
                 batch_rows: int = BATCH_ROWS) -> Iterator[RowBatch]:
  """The range's rows in batches of batch_rows, in file order, the last marked `last`
  (none for a range without rows). `examples_only`: every batch as tf.Examples for
  serving_default. BadInputError naming file, line and column for a row that doesn't
  parse or has the wrong number of fields."""
  plan = part.file
  width = len(plan.header.names)
  with byte_ranges.open_file(plan.path) as raw:
    pending, rows = None, []
    for offset, line in byte_ranges.lines(raw, max(part.start, plan.header.end), part.stop):
      try:
        cells = line_cells(line)
        if cells and len(cells) != width:
          raise RowProblem(f"{len(cells)} fields where the header has {width} (a malformed row)")
      except RowProblem as bad:
        raise refusal(plan.path, raw, offset, line, bad) from None
      if not cells:
        continue
      rows.append((offset, line, cells))
      if len(rows) == batch_rows:
        batch = _batch(part, raw, rows, examples_only)
        if pending is not None:
          yield pending
        pending, rows = batch, []
    if rows:
      if pending is not None:
        yield pending
      pending = _batch(part, raw, rows, examples_only)
    if pending is not None:
      pending.last = True
      yield pending


def _batch(part: CandidateRange, raw, rows, examples_only: bool) -> RowBatch:
  """One batch of (offset, line, cells) rows; a value that doesn't parse as its column's
  kind is refused with its place."""
  plan = part.file
  by_column = list(zip(*(cells for _, _, cells in rows)))
  keys = list(zip(*(by_column[position] for position in plan.keys)))
  columns, missing_int = {}, False
  for name, kind, position in plan.inputs:
    values = [cell.strip() for cell in by_column[position]]
    try:
      columns[name], missing = _typed(values, kind)
    except _BadValue as bad:
      offset, line, _ = rows[bad.row]
      raise refusal(plan.path, raw, offset, line, RowProblem(bad.message, name)) from None
    missing_int = missing_int or (kind == "int" and missing)
  if not (examples_only or missing_int):
    return RowBatch(part.part, False, keys, columns, None)
  kinds = {name: kind for name, kind, _ in plan.inputs}
  examples = [request_rows.to_example(
      {name: cells[position].strip() for name, _, position in plan.inputs}, kinds,
      f"{plan.path} byte {offset}") for offset, _, cells in rows]
  return RowBatch(part.part, False, keys, None, examples)


class _BadValue(Exception):
  def __init__(self, row: int, message: str):
    super().__init__(message)
    self.row, self.message = row, message


def _typed(values: List[str], kind: str) -> Tuple[np.ndarray, bool]:
  """(serving_raw's array of one column, whether a value is missing). Missing: '' for a
  string, NaN for a float; an int column has none in serving_raw (0 stands in, the batch
  then goes to serving_default). _BadValue at the first value that doesn't parse."""
  if kind == "string":
    return np.array(values, dtype=object), "" in values
  numbers, missing = [], False
  for row, value in enumerate(values):
    if not value:
      missing = True
      numbers.append(math.nan if kind == "float" else 0)
    elif kind == "int":
      try:
        numbers.append(raw_text.parse_int64(value))
      except ValueError as e:
        raise _BadValue(row, f"{value!r} is {e}") from None
    else:
      try:
        number = float(value)
      except ValueError:
        raise _BadValue(row, f"{value!r} is not a number") from None
      if not math.isfinite(number):
        raise _BadValue(row, f"{value!r} is not a finite number")
      numbers.append(number)
  return np.array(numbers, dtype=np.int64 if kind == "int" else np.float32), missing
