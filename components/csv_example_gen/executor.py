"""Executor of the typed CSV ExampleGen: FileBasedExampleGen(custom_executor_spec=...).

The columns and labels come from the config's data_config, and the split from a
`label_blind_split.Split`, both handed over as `custom_config` (see
`example_gen_custom_config`).

Each file is cut into byte ranges (csv_ranges.py), which a Reshuffle hands out
to the workers, so one big file is read by all of them, as Beam's own
ReadAllFromText does. A row's split key is its file, relative to input_base, and
the byte its row starts at (`row_key`): what any worker knows of a row, whichever
range it reads, where the row's number in its file is known only to a worker that
read everything before it.
"""

import json
import os
import time
from typing import Any, Dict, Optional

import apache_beam as beam
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from components.byte_ranges import DEFAULT_RANGE_BYTES
from components.csv_example_gen.csv_parser import BadInputError
from components.csv_example_gen.csv_ranges import CsvRange, read_range, split_file
from components.example_gen_settings import pack_text, unpack_text
from components.label_blind_split import KeyedExample, Split, read_spans, span_of
from components.split_executor import LabelBlindSplitExecutor
from models.config import PipelineConfig, parse_columns

_PROGRESS_EVERY = 50_000
# The Beam counters of the rows and files read, which Executor.Do prints.
COUNTER_NAMESPACE = "csv_example_gen"


def example_gen_custom_config(config: PipelineConfig, split: Split = Split(),
                              range_bytes: Optional[int] = None, labels_optional: bool = False
                              ) -> example_gen_pb2.CustomConfig:
  """The config's columns and the split, packed for FileBasedExampleGen(custom_config=...),
  and, when given, the size of the byte ranges files are read in (None: 64 MiB). The
  size changes which worker reads a row, not the examples, so the default stays out of
  the settings, ExampleGen's cache key; so does `labels_optional` (files may lack the
  label columns: a candidate set to score) when False. ValueError when the split names
  a column the config doesn't have, or a label, or range_bytes is not a whole number >= 1."""
  split.check_columns([c.name for c in config.columns], config.labels, config.source)
  settings = {"config": config.columns_text(), "split": split.to_json()}
  if labels_optional:
    settings["labels_optional"] = True
  if range_bytes is not None:
    if isinstance(range_bytes, bool) or not isinstance(range_bytes, int) or range_bytes < 1:
      raise ValueError(f"range_bytes must be a whole number of bytes >= 1, got {range_bytes!r}")
    settings["range_bytes"] = range_bytes
  return pack_text(json.dumps(settings))


def _settings_from(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
  return json.loads(unpack_text(exec_properties, "the CSV ExampleGen needs the config: "
                                "custom_config=example_gen_custom_config(config)"))


def row_key(relative: str, offset: int) -> bytes:
  """The split key of the row starting at byte `offset` of the file at `relative` (its
  path under input_base): `<relative path>@<byte offset>`."""
  return f"{relative}@{offset}".encode("utf-8")


def _cut_file(paths, columns, range_bytes, optional):
  path, relative = paths
  return split_file(path, relative, columns, range_bytes, optional)


class _ReadCsvRange(beam.DoFn):
  """CsvRange -> KeyedExamples of the rows it owns, in order, with progress lines;
  counts rows and files in Beam counters.

  The progress lines print where the DoFn runs: here with the DirectRunner, in an
  SDK worker's own output on a portable runner. The counters come back to the
  submitting process on every runner (Executor.Do prints them)."""

  def __init__(self, columns, labels):
    super().__init__()
    self.columns, self.labels = columns, labels
    self.rows_read = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, "rows_read")
    self.files_read = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, "files_read")

  def process(self, part: CsvRange):
    """Reads one range of a CSV file into KeyedExamples keyed by row_key, with the span
    of its directory, printing progress."""
    span, where = span_of(part.relative), part.describe()
    start, count = time.time(), 0
    for offset, example in read_range(part, self.columns, self.labels):
      count += 1
      if count % _PROGRESS_EVERY == 0:
        print(f"  [ExampleGen] {where}: {count:,} rows "
              f"({count / (time.time() - start):,.0f} rows/s)", flush=True)
      yield KeyedExample(row_key(part.relative, offset), span, example)
    print(f"  [ExampleGen] {where}: {count:,} rows read in {time.time() - start:,.1f}s",
          flush=True)
    self.rows_read.inc(count)
    if part.index == 1:   # a file counts once, however many ranges it was cut into
      self.files_read.inc()


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
def _CsvToTypedExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                       split_pattern: str) -> beam.pvalue.PCollection:
  base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
  pattern = os.path.join(base, split_pattern)
  files = sorted(fileio.glob(pattern))
  spans = read_spans(exec_properties)
  if spans is not None:
    files = [f for f in files if span_of(os.path.relpath(f, base)) in spans]
  if not files:
    raise BadInputError(f"Bad input: no CSV files match {pattern}")
  settings = _settings_from(exec_properties)
  columns, labels = parse_columns(settings["config"], source="ExampleGen custom_config")
  range_bytes = settings.get("range_bytes", DEFAULT_RANGE_BYTES)
  optional = labels if settings.get("labels_optional") else ()
  rows = (pipeline
          | "CsvFiles" >> beam.Create([(f, os.path.relpath(f, base)) for f in files])
          | "CutIntoRanges" >> beam.FlatMap(_cut_file, columns, range_bytes, optional)
          # Fusion would keep every range of a file on the worker that cut it.
          | "SpreadRanges" >> beam.Reshuffle()
          | "ParseRows" >> beam.ParDo(_ReadCsvRange(columns, labels)))
  _ = (rows
       | "CountRows" >> beam.combiners.Count.Globally()
       | "RefuseNoRows" >> beam.Map(_refuse_no_rows, pattern, len(files)))
  return rows


def _refuse_no_rows(count: int, pattern: str, files: int) -> int:
  if count == 0:
    raise BadInputError(f"Bad input: {pattern} matches {files} CSV file(s) with a header "
                        "but no data rows: nothing to train on")
  return count


class Executor(LabelBlindSplitExecutor):
  """Reads CSV with a header into typed tf.Examples (see csv_parser) and splits them
  without reading the labels (see label_blind_split)."""

  COUNTER_NAMESPACE = COUNTER_NAMESPACE

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    """Runs the ExampleGen (the base class, which keeps the run's Beam counters in
    `counters`), then prints the rows and files read, when the runner reports them."""
    super().Do(input_dict, output_dict, exec_properties)
    if self.counters:
      print(f"  [ExampleGen] {self.counters.get('rows_read', 0):,} rows read from "
            f"{self.counters.get('files_read', 0):,} CSV file(s)", flush=True)

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    """The PTransform that reads a split pattern's CSV files (for a split by span, only
    the spans it reads) into KeyedExamples."""
    return _CsvToTypedExample

  def split_of(self, exec_properties: Dict[str, Any]) -> Split:
    """The split packed into custom_config (none packed: by row)."""
    return Split.from_json(_settings_from(exec_properties).get("split"))
