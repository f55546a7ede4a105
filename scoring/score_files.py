"""The scores as files: each row's key columns and its task scores, one CSV or Parquet
part per input range, in a staging directory that becomes --output only when every
part is written.

A part is named by its file and range, `part-<file>-<range>.csv` (or `.parquet`),
so the parts sorted by name hold the rows in input order: the files in name order,
each file's rows in line order. Every part is whole on its own (a CSV header each;
a Parquet footer each) and they share one schema: `pandas.read_csv` per part, or
`pyarrow.parquet.read_table(output)` / `pandas.read_parquet(output)` for all of them.

A range's batches arrive in order on the worker that read the range (the reading,
the scoring and the writing are fused; nothing is grouped), so a part is opened at
the range's first batch and closed at its last. A retried bundle writes its parts
again from the start.

CSV: the key cells as the input has them, scores with 9 significant digits (a
float32 read back exactly). Parquet: a key column the model reads has its type
(string, int64, float64), any other key column is a string, an empty cell is null;
scores are float32.
"""

import csv
import io
import os
import shutil
import tempfile
from typing import Dict, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from scoring.model_handler import ScoredBatch

FORMATS = ("csv", "parquet")
PART_PREFIX = "part-"


def part_path(directory: str, part: str, fmt: str) -> str:
  """Where the part of range `part` (CandidateRange.part) is written."""
  return os.path.join(directory, f"{PART_PREFIX}{part}.{fmt}")


class _CsvPart:
  def __init__(self, path: str, columns: Sequence[str], tasks: Sequence[str]):
    self.tasks = tasks
    self.file = io.TextIOWrapper(FileSystems.create(path), encoding="utf-8", newline="")
    self.writer = csv.writer(self.file, lineterminator="\n")
    self.writer.writerow(list(columns) + list(tasks))

  def write(self, scored: ScoredBatch):
    scores = [[f"{value:.9g}" for value in scored.scores[task].tolist()] for task in self.tasks]
    self.writer.writerows((*keys, *(column[row] for column in scores))
                          for row, keys in enumerate(scored.batch.keys))

  def close(self):
    self.file.close()


_ARROW_TYPES = {"string": "string", "int": "int64", "float": "float64"}


class _ParquetPart:
  def __init__(self, path: str, columns: Sequence[str], kinds: Dict[str, str],
               tasks: Sequence[str]):
    import pyarrow as pa
    import pyarrow.parquet as pq
    self.pa, self.tasks = pa, tasks
    self.kinds = [kinds.get(column, "string") for column in columns]
    self.schema = pa.schema(
        [(column, _ARROW_TYPES[kind]) for column, kind in zip(columns, self.kinds)]
        + [(task, pa.float32()) for task in tasks])
    self.file = FileSystems.create(path)
    self.writer = pq.ParquetWriter(self.file, self.schema)

  def write(self, scored: ScoredBatch):
    pa, keys = self.pa, scored.batch.keys
    arrays = []
    for position, kind in enumerate(self.kinds):
      cells = [row[position].strip() for row in keys]
      if kind == "int":
        values = [int(cell) if cell else None for cell in cells]
      elif kind == "float":
        values = [float(cell) if cell else None for cell in cells]
      else:
        values = [cell if cell else None for cell in cells]
      arrays.append(pa.array(values, type=self.schema.field(position).type))
    arrays += [pa.array(scored.scores[task], type=pa.float32()) for task in self.tasks]
    self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))

  def close(self):
    self.writer.close()
    self.file.close()


class WriteScoreParts(beam.DoFn):
  """ScoredBatches -> their range's part file in `directory`; yields each part's path
  once its range's last batch is written; counts rows and parts in Beam counters."""

  def __init__(self, directory: str, fmt: str, key_columns: Sequence[str],
               kinds: Dict[str, str], tasks: Sequence[str], counter_namespace: str):
    super().__init__()
    if fmt not in FORMATS:
      raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    self.directory, self.fmt = directory, fmt
    self.key_columns, self.kinds, self.tasks = tuple(key_columns), dict(kinds), tuple(tasks)
    self.rows_written = beam.metrics.Metrics.counter(counter_namespace, "rows_written")
    self.parts_written = beam.metrics.Metrics.counter(counter_namespace, "parts_written")

  def start_bundle(self):
    """No part is open when a bundle starts."""
    self.open_parts = {}

  def _open(self, part: str):
    path = part_path(self.directory, part, self.fmt)
    if self.fmt == "csv":
      return _CsvPart(path, self.key_columns, self.tasks)
    return _ParquetPart(path, self.key_columns, self.kinds, self.tasks)

  def process(self, scored: ScoredBatch):
    """Writes one batch into its part (opened at the range's first batch); closes the
    part after the range's last batch and yields its path."""
    part = scored.batch.part
    if part not in self.open_parts:
      self.open_parts[part] = self._open(part)
    self.open_parts[part].write(scored)
    self.rows_written.inc(len(scored.batch))
    if scored.batch.last:
      self.open_parts.pop(part).close()
      self.parts_written.inc()
      yield part_path(self.directory, part, self.fmt)

  def finish_bundle(self):
    """Closes any part still open (none, when every range ended in this bundle)."""
    for writer in self.open_parts.values():
      writer.close()
    self.open_parts = {}


def check_output(output: str) -> None:
  """ValueError when --output can't take the scores: it exists and is not an empty
  directory (nothing is ever written over), or is not on this machine's file system."""
  if "://" in output:
    raise ValueError(f"--output {output}: a local directory, so that the finished "
                     "scores appear at once by a rename")
  if os.path.exists(output) and not (os.path.isdir(output) and not os.listdir(output)):
    raise ValueError(f"--output {output} already exists and is not an empty directory: "
                     "choose a new one (nothing is written over)")


def staging_dir(output: str) -> str:
  """A new directory beside --output (same file system, so publish is a rename) that
  no reader looks at: `.<name>.staging-XXXX`."""
  parent = os.path.dirname(os.path.abspath(output))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(output))}.staging-",
                             dir=parent)
  # mkdtemp's 0700 would stay with --output; a new directory's usual mode instead.
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(staging, 0o777 & ~umask)
  return staging


def publish(staging: str, output: str) -> None:
  """Makes the finished staging directory --output, in one rename (an empty --output
  directory is replaced)."""
  if os.path.isdir(output) and not os.listdir(output):
    os.rmdir(output)
  os.rename(staging, output)


def discard(staging: str) -> None:
  """Removes a staging directory after a failure: nothing half-written stays."""
  shutil.rmtree(staging, ignore_errors=True)
