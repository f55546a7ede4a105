"""`aitm score`: a pushed SavedModel over a whole candidate set, in Beam.

  CSV files -> byte ranges (checked headers) -> Reshuffle (ranges to workers)
    -> each range read into batches (candidate_rows) -> RunInference (model_handler)
    -> each range's part file (score_files), all fused: nothing is grouped
  -> the staging directory renamed to --output once every part is written

The Beam options are the pipeline's (`--beam-args`: DirectRunner with N worker
processes, or a portable runner), so a candidate set is scored where the pipeline
runs. Everything a user can get wrong is checked before any worker starts: the
model and its signatures, every file's header against them, the key columns, the
output. A row that doesn't parse stops the run naming its file, line and column,
and the staging directory is removed: --output then holds nothing.
"""

import contextlib
import dataclasses
import glob
import logging
import os
import re
import time
from typing import Dict, List, Optional, Sequence

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from components.byte_ranges import DEFAULT_RANGE_BYTES
from components.csv_example_gen.csv_parser import BadInputError
from components.split_executor import beam_counters
from scoring import candidate_rows, score_files
from scoring.model_contract import ModelContract, read_contract, resolve_version
from scoring.model_handler import SavedModelSignatures
from serving import defaults

COUNTER_NAMESPACE = "aitm_score"
# A worker prints a range's progress every this many rows.
PROGRESS_EVERY = 100_000
SIGNATURES = (defaults.RAW_SIGNATURE, defaults.EXAMPLES_SIGNATURE)
# The line of a failure that names the bad input, however Beam wrapped it, without the
# step Beam appends ("... [while running 'ReadBatches']").
_BAD_INPUT = re.compile(r"(Bad input[^\n]*?)(?: \[while running '[^'\n]*'\])?(?:\n|$)")


@dataclasses.dataclass
class ScoringResult:
  """What a scoring run did."""
  output: str
  model_version_dir: str
  files: int                   # input CSV files
  rows: int                    # rows scored and written
  parts: int                   # part files written
  seconds: float
  key_columns: Sequence[str]
  tasks: Sequence[str]

  @property
  def rows_per_second(self) -> float:
    """Rows scored per second of the whole run (model loading included)."""
    return self.rows / self.seconds if self.seconds else 0.0


class _ReadRanges(beam.DoFn):
  """CandidateRange -> its RowBatches, in order, printing the range's progress (rows,
  rows/s: the pace of the reading, scoring and writing fused behind it)."""

  def __init__(self, examples_only: bool, batch_rows: int):
    super().__init__()
    self.examples_only, self.batch_rows = examples_only, batch_rows
    self.rows_read = beam.metrics.Metrics.counter(COUNTER_NAMESPACE, "rows_read")

  def process(self, part: candidate_rows.CandidateRange):
    """Yields the range's batches; prints a line every PROGRESS_EVERY rows and at its end."""
    where, start, count, reported = part.describe(), time.time(), 0, 0
    for batch in candidate_rows.read_batches(part, self.examples_only, self.batch_rows):
      yield batch
      count += len(batch)
      self.rows_read.inc(len(batch))
      if count - reported >= PROGRESS_EVERY:
        reported = count
        print(f"  [score] {where}: {count:,} rows ({count / (time.time() - start):,.0f} "
              "rows/s)", flush=True)
    print(f"  [score] {where}: {count:,} rows scored in {time.time() - start:,.1f}s",
          flush=True)


def score(*, model: str, data: str, output: str, fmt: str = "csv",
          key_columns: Optional[Sequence[str]] = None, labels: Sequence[str] = (),
          signature: str = defaults.RAW_SIGNATURE, beam_args: Sequence[str] = (),
          batch_rows: int = candidate_rows.BATCH_ROWS,
          range_bytes: int = DEFAULT_RANGE_BYTES) -> ScoringResult:
  """Scores every row of the CSV files in `data` with the SavedModel at `model` (a
  version directory or a base path: its newest complete version) and writes each row's
  key columns and task scores to `output` (score_files: parts in input order, `fmt`
  csv or parquet), which appears only when all is written.

  Key columns: `key_columns`, else every column of the data but `labels`. `signature`:
  serving_raw (a batch with a missing integer goes to serving_default) or
  serving_default for every batch. `beam_args`: Beam's pipeline options.
  Raises BadInputError naming file, line and column for bad data, ValueError for a
  bad model, output or setting; nothing is left at `output` then."""
  if signature not in SIGNATURES:
    raise ValueError(f"signature must be one of {SIGNATURES}, got {signature!r}")
  if fmt not in score_files.FORMATS:
    raise ValueError(f"format must be one of {score_files.FORMATS}, got {fmt!r}")
  started = time.time()
  contract = read_contract(resolve_version(model))
  score_files.check_output(output)
  paths = candidate_rows.find_files(data)
  keys, plans = candidate_rows.plan_files(paths, contract.kinds, key_columns, labels)
  ranges = [part for plan in plans for part in candidate_rows.cut_ranges(plan, range_bytes)]
  staging = score_files.staging_dir(output)
  try:
    counters = _run(ranges, contract, keys, staging, fmt, signature, batch_rows, beam_args)
    rows = counters.get("rows_written", 0)
    if not rows:
      raise BadInputError(f"Bad input: the {len(paths)} CSV file(s) in {data} have a header "
                          "but no rows: nothing to score")
    score_files.publish(staging, output)
  except BaseException as e:
    score_files.discard(staging)
    found = _BAD_INPUT.search(str(e))
    if found:  # as Beam wrapped it, in this process or a worker's
      raise BadInputError(found.group(1)) from None
    raise
  return ScoringResult(output, contract.version_dir, len(paths), rows,
                       counters.get("parts_written", 0), time.time() - started, keys,
                       contract.outputs)


def scoring_pipeline(ranges: List[candidate_rows.CandidateRange], contract: ModelContract,
                     keys: Sequence[str], staging: str, fmt: str, signature: str,
                     batch_rows: int, beam_args: Sequence[str]) -> beam.Pipeline:
  """The Beam pipeline that scores `ranges` into part files in `staging`, not run."""
  pipeline = beam.Pipeline(options=PipelineOptions(list(beam_args)))
  _ = (pipeline
       | "Ranges" >> beam.Create(ranges, reshuffle=False)
       # Fusion would keep every range on the worker that created them.
       | "SpreadRanges" >> beam.Reshuffle()
       | "ReadBatches" >> beam.ParDo(_ReadRanges(signature == defaults.EXAMPLES_SIGNATURE,
                                                 batch_rows))
       | "Score" >> RunInference(SavedModelSignatures(contract.version_dir).with_no_batching())
       | "WriteParts" >> beam.ParDo(score_files.WriteScoreParts(
           staging, fmt, keys, contract.kinds, contract.outputs, COUNTER_NAMESPACE)))
  return pipeline


def _run(ranges, contract, keys, staging, fmt, signature, batch_rows, beam_args
         ) -> Dict[str, int]:
  """Runs the scoring pipeline; returns its counters (rows_read, rows_written,
  parts_written)."""
  pipeline = scoring_pipeline(ranges, contract, keys, staging, fmt, signature, batch_rows,
                              beam_args)
  with _beam_logs_quiet():
    result = pipeline.run()
    result.wait_until_finish()
  try:
    return beam_counters(result, COUNTER_NAMESPACE)
  except NotImplementedError:  # a runner without metrics: count what was written
    return _count_written(staging, fmt)


# What Beam's SDK worker processes (DirectRunner with more than one worker) log at
# every start, which says nothing to act on: main-session pickling, which this doesn't
# use, and the runner's own flags they don't parse (as pipeline/local_runner.py hides).
_WORKER_NOTICES = ("No semi_persistent_directory found", "Discarding unparseable args")
# The loggers through which Beam reports a DoFn's failure (with its traceback) and the
# DirectRunner forwards its worker processes' records.
_BEAM_LOGGERS = ("apache_beam.runners.common",
                 "apache_beam.runners.portability.local_job_service")


class _QuietBeam(logging.Filter):
  """Drops the worker notices and Beam's report of a bad-input failure, which score()
  raises as a BadInputError of one line; keeps every other record."""

  def filter(self, record):
    message = record.getMessage()
    return not (any(notice in message for notice in _WORKER_NOTICES)
                or _BAD_INPUT.search(message))


@contextlib.contextmanager
def _beam_logs_quiet():
  """_QuietBeam on Beam's loggers while the block runs."""
  quiet = _QuietBeam()
  for name in _BEAM_LOGGERS:
    logging.getLogger(name).addFilter(quiet)
  try:
    yield
  finally:
    for name in _BEAM_LOGGERS:
      logging.getLogger(name).removeFilter(quiet)


def _count_written(staging: str, fmt: str) -> Dict[str, int]:
  """rows_written and parts_written, read back from the part files."""
  parts = sorted(glob.glob(os.path.join(staging, f"{score_files.PART_PREFIX}*.{fmt}")))
  rows = 0
  for path in parts:
    if fmt == "csv":
      with open(path, encoding="utf-8") as f:
        rows += sum(1 for _ in f) - 1
    else:
      import pyarrow.parquet as pq
      rows += pq.ParquetFile(path).metadata.num_rows
  return {"rows_written": rows, "parts_written": len(parts)}
