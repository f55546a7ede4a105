"""Executor of the Ali-CCP ExampleGen: FileBasedExampleGen(custom_executor_spec=...).

Each input split's pattern (relative to input_base) names the raw files of
that split, both kinds: every `sample_skeleton_<suffix>` it matches is joined
with the `common_features_<suffix>` beside it, which the pattern must match
too. So `*.csv` reads Ali-CCP as Tianchi ships it (the train and test pairs),
`*_train.csv` only the train pair. Matching both kinds also makes the TFX
driver fingerprint the common files, so the cache notices when they change.
Any other file the pattern matches is refused.

How it scales (the full 40 GB on Dataflow): every file is read as byte ranges
of `chunk_bytes` (64 MiB), spread over the workers; a range reads the lines
that start in it (components/byte_ranges.py). Lines are parsed, buy=1-without-click samples dropped and
unkept fields discarded right there, so the shuffle carries only the kept ids.
Samples and common lines meet in a CoGroupByKey on (common file,
common_feature_index): no side input, and the index is scoped to its file
pair. A compressed file (.gz, ...) can't be split and is read whole.

Bad input stops the run with `Bad input in <file>, line N[, field 'f']: ...`:
a malformed line, a common_feature_index missing from the common file or
present twice. Ranges don't know their line numbers, so a line carries its
byte offset and the number is counted only when an error is raised.

Beam counters (namespace `aliccp_example_gen`, printed after the run):
samples_read, dropped_buy_without_click, common_lines_read,
common_lines_unused, examples_written, and multi_valued_<column> (examples
whose column holds more than one id).
"""

import json
import os
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from components import byte_ranges
from components.aliccp_example_gen import raw_format
from components.csv_example_gen.csv_parser import BadInputError
from components.example_gen_settings import pack_text, unpack_text
from components.label_blind_split import KeyedExample, Split
from components.split_executor import LabelBlindSplitExecutor

COUNTER_NAMESPACE = "aliccp_example_gen"
DEFAULT_CHUNK_BYTES = byte_ranges.DEFAULT_RANGE_BYTES


class Settings(NamedTuple):
  """What the executor reads from custom_config."""
  fields: Tuple[Tuple[str, str], ...]   # (field id, column name), in column order
  chunk_bytes: int
  split: Split = Split()


def custom_config(fields: Sequence[Tuple[str, str]] = raw_format.PAPER_FIELDS,
                  chunk_bytes: int = DEFAULT_CHUNK_BYTES, split: Split = Split()
                  ) -> example_gen_pb2.CustomConfig:
  """The settings, packed for FileBasedExampleGen(custom_config=...). A split by row
  hashes a sample's skeleton file name and sample_id; by span is for CSV spans only."""
  fields = tuple((str(f), str(c)) for f, c in fields)
  ids, columns = [f for f, _ in fields], [c for _, c in fields]
  if len(set(ids)) != len(ids) or len(set(columns)) != len(columns):
    raise ValueError(f"Ali-CCP fields: a field id or column name appears twice in {fields}")
  if {raw_format.CLICK_LABEL, raw_format.BUY_LABEL} & set(columns):
    raise ValueError(f"Ali-CCP fields: a column can't be named like a label "
                     f"({raw_format.CLICK_LABEL}, {raw_format.BUY_LABEL})")
  if chunk_bytes < 1:
    raise ValueError("chunk_bytes must be positive")
  if split.kind == "span":
    raise ValueError("Ali-CCP has no spans: split it by row or by columns, or keep its "
                     "own train and test files (input_splits)")
  split.check_columns(columns, (raw_format.CLICK_LABEL, raw_format.BUY_LABEL),
                      "the Ali-CCP ExampleGen")
  return pack_text(json.dumps({"fields": [list(f) for f in fields],
                               "chunk_bytes": chunk_bytes, "split": split.to_json()}))


def settings_from(exec_properties: Dict[str, Any]) -> Settings:
  """The Settings `custom_config` packed into exec_properties; ValueError when the
  component was built without them."""
  values = json.loads(unpack_text(exec_properties, "the Ali-CCP ExampleGen needs its "
                                  "settings: custom_config=executor.custom_config(...)"))
  return Settings(tuple((f, c) for f, c in values["fields"]), int(values["chunk_bytes"]),
                  Split.from_json(values.get("split")))


# --- files -------------------------------------------------------------------

class RawFile(NamedTuple):
  """An input file, and whether it is compressed (then read whole, not by ranges)."""
  path: str
  compressed: bool


def pair_files(paths: Sequence[str], pattern: str) -> Tuple[List[str], List[str]]:
  """The files a split pattern matched -> (skeleton files, their common files),
  index-aligned; refuses what breaks the naming convention (module docstring)."""
  skeletons, commons, others = [], set(), []
  for path in paths:
    name = os.path.basename(path)
    if name.startswith(raw_format.SKELETON_PREFIX):
      skeletons.append(path)
    elif name.startswith(raw_format.COMMON_PREFIX):
      commons.add(path)
    else:
      others.append(path)
  if others:
    raise BadInputError(f"Bad input: {pattern} matches {others}, which are neither "
                        f"{raw_format.SKELETON_PREFIX}* nor {raw_format.COMMON_PREFIX}* files")
  if not skeletons:
    raise BadInputError(f"Bad input: no {raw_format.SKELETON_PREFIX}* files match {pattern}")
  paired = []
  for skeleton in skeletons:
    common = os.path.join(os.path.dirname(skeleton),
                          raw_format.common_file_name(os.path.basename(skeleton)))
    if common not in commons:
      state = "is not matched by" if fileio.exists(common) else "doesn't exist, nor is it in"
      raise BadInputError(f"Bad input: {skeleton} is joined with {common}, which {state} "
                          f"the split pattern {pattern}")
    paired.append(common)
  unpaired = sorted(commons - set(paired))
  if unpaired:
    raise BadInputError(f"Bad input: {unpaired} match {pattern} but no "
                        f"{raw_format.SKELETON_PREFIX}* file of the same suffix does")
  return skeletons, paired


def file_chunks(raw: RawFile, chunk_bytes: int) -> List[Tuple[int, Optional[int]]]:
  """[start, end) byte ranges covering the file (byte_ranges.cut); (0, None), the whole,
  for a compressed one."""
  if raw.compressed:
    return [(0, None)]
  return byte_ranges.cut(0, fileio.stat(raw.path).length, chunk_bytes)


def read_chunk(raw: RawFile, start: int, end: Optional[int]) -> Iterator[Tuple[int, bytes]]:
  """(byte offset, line) of every line that starts in [start, end); end None: to EOF."""
  with byte_ranges.open_file(raw.path) as stream:
    yield from byte_ranges.lines(stream, start, end)


def line_number(raw: RawFile, offset: int) -> int:
  """The 1-based number of the line starting at byte `offset` (read only on errors)."""
  with byte_ranges.open_file(raw.path) as stream:
    return byte_ranges.line_number(stream, offset)


def bad_line(raw: RawFile, offset: int, message: str, field: str = "") -> BadInputError:
  """A BadInputError naming the file, the number of the line at byte `offset` and,
  when given, the field."""
  where = f", field '{field}'" if field else ""
  return BadInputError(f"Bad input in {raw.path}, line {line_number(raw, offset)}{where}: "
                       f"{message}")


# --- Beam ----------------------------------------------------------------------

def _counter(name: str):
  return beam.metrics.Metrics.counter(COUNTER_NAMESPACE, name)


def _lines(raw: RawFile, start: int, end: Optional[int]) -> Iterator[Tuple[int, str]]:
  for offset, line in read_chunk(raw, start, end):
    try:
      text = line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
      raise bad_line(raw, offset, "is not UTF-8 text") from None
    if text.strip():
      yield offset, text


class _ReadSkeletonChunk(beam.DoFn):
  """(skeleton file number, start, end) -> ((common file number, index), sample),
  a sample being (skeleton file number, offset, sample_id, click, buy, own features)."""

  def __init__(self, skeletons: Sequence[RawFile], keep: Dict[str, str]):
    super().__init__()
    self.skeletons, self.keep = tuple(skeletons), keep
    self.samples_read = _counter("samples_read")
    self.dropped = _counter("dropped_buy_without_click")

  def process(self, chunk):
    """Parses the skeleton lines that start in one byte range and yields their samples
    keyed by (common file number, common_feature_index); buys without a click dropped."""
    file_number, start, end = chunk
    raw = self.skeletons[file_number]
    for offset, text in _lines(raw, start, end):
      try:
        sample_id, click, buy, index, features = raw_format.parse_skeleton_line(text,
                                                                                self.keep)
      except raw_format.MalformedLine as problem:
        raise bad_line(raw, offset, str(problem), problem.field) from None
      self.samples_read.inc()
      if buy and not click:
        # As the AITM authors do: a purchase without a click is noise in the funnel.
        self.dropped.inc()
        continue
      # The common file is the skeleton's pair: they share file numbers.
      yield (file_number, index), (file_number, offset, sample_id, click, buy, features)


class _ReadCommonChunk(beam.DoFn):
  """(common file number, start, end) -> ((common file number, index), (offset, features))."""

  def __init__(self, commons: Sequence[RawFile], keep: Dict[str, str]):
    super().__init__()
    self.commons, self.keep = tuple(commons), keep
    self.lines_read = _counter("common_lines_read")

  def process(self, chunk):
    """Parses the common_features lines that start in one byte range and yields their
    features, keyed by (common file number, common_feature_index)."""
    file_number, start, end = chunk
    raw = self.commons[file_number]
    for offset, text in _lines(raw, start, end):
      try:
        index, features = raw_format.parse_common_line(text, self.keep)
      except raw_format.MalformedLine as problem:
        raise bad_line(raw, offset, str(problem), problem.field) from None
      self.lines_read.inc()
      yield (file_number, index), (offset, features)


class _JoinSamples(beam.DoFn):
  """One common_feature_index's samples and common line -> the samples' KeyedExamples
  (the row key: the skeleton file's name and the sample_id)."""

  def __init__(self, skeletons: Sequence[RawFile], commons: Sequence[RawFile],
               columns: Sequence[str]):
    super().__init__()
    self.skeletons, self.commons, self.columns = tuple(skeletons), tuple(commons), tuple(columns)
    self.written = _counter("examples_written")
    self.unused = _counter("common_lines_unused")
    self.multi_valued = {c: _counter(f"multi_valued_{c}") for c in self.columns}

  def process(self, keyed):
    """Joins one common_feature_index's samples with its common line into KeyedExamples;
    BadInputError when the common file has that line twice, or not at all for a sample."""
    (file_number, index), grouped = keyed
    commons = sorted(grouped["common"], key=lambda common: common[0])
    common_file = self.commons[file_number]
    if len(commons) > 1:
      first = line_number(common_file, commons[0][0])
      raise bad_line(common_file, commons[1][0], f"{index!r} appears again (first on line "
                     f"{first})", "common_feature_index")
    common = commons[0][1] if commons else None
    used = False
    for skeleton_number, offset, sample_id, click, buy, own in grouped["samples"]:
      if common is None:
        raise bad_line(self.skeletons[skeleton_number], offset,
                       f"{index!r} is not in {common_file.path}", "common_feature_index")
      used = True
      features = raw_format.merge_features(own, common)
      for column, ids in features.items():
        if len(ids) > 1:
          self.multi_valued[column].inc()
      self.written.inc()
      key = f"{os.path.basename(self.skeletons[skeleton_number].path)}:{sample_id}"
      yield KeyedExample(key.encode("utf-8"), None,
                         raw_format.to_example(click, buy, features, self.columns))
    if not used:
      self.unused.inc()


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
def _AliccpToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                     split_pattern: str) -> beam.pvalue.PCollection:
  settings = settings_from(exec_properties)
  pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                         split_pattern)
  skeleton_paths, common_paths = pair_files(sorted(fileio.glob(pattern)), pattern)
  skeletons = [RawFile(p, byte_ranges.is_compressed(p)) for p in skeleton_paths]
  commons = [RawFile(p, byte_ranges.is_compressed(p)) for p in common_paths]
  keep = {field: column for field, column in settings.fields}

  def chunks(files):
    return [(number, start, end) for number, raw in enumerate(files)
            for start, end in file_chunks(raw, settings.chunk_bytes)]

  skeleton_chunks = chunks(skeletons)
  if not skeleton_chunks:
    raise BadInputError(f"Bad input: the {raw_format.SKELETON_PREFIX}* files matching "
                        f"{pattern} are empty")
  # Reshuffle: Create is one bundle, and the ranges must spread over the workers.
  samples = (pipeline
             | "SkeletonRanges" >> beam.Create(skeleton_chunks)
             | "SpreadSkeletonRanges" >> beam.Reshuffle()
             | "ReadSamples" >> beam.ParDo(_ReadSkeletonChunk(skeletons, keep)))
  common = (pipeline
            | "CommonRanges" >> beam.Create(chunks(commons))
            | "SpreadCommonRanges" >> beam.Reshuffle()
            | "ReadCommonFeatures" >> beam.ParDo(_ReadCommonChunk(commons, keep)))
  return ({"samples": samples, "common": common}
          | "JoinOnCommonIndex" >> beam.CoGroupByKey()
          | "ToExamples" >> beam.ParDo(
              _JoinSamples(skeletons, commons, [c for _, c in settings.fields])))


class Executor(LabelBlindSplitExecutor):
  """Joins Ali-CCP's raw files into tf.Examples; see the module docstring. Splits
  them without reading the labels (components/label_blind_split.py).

  After Do(), `counters` holds the run's Beam counters (split_executor.beam_counters)."""

  COUNTER_NAMESPACE = COUNTER_NAMESPACE

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    """The PTransform that reads one split pattern's file pairs into KeyedExamples."""
    return _AliccpToExample

  def split_of(self, exec_properties: Dict[str, Any]) -> Split:
    """The split packed into custom_config."""
    return settings_from(exec_properties).split

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    """Runs the ExampleGen (the base class, which keeps the run's Beam counters in
    `counters`), then prints them, when the runner reports metrics."""
    super().Do(input_dict, output_dict, exec_properties)
    if not self.counters:
      return
    c = self.counters
    print(f"  [ExampleGen] Ali-CCP: {c.get('samples_read', 0):,} samples read, "
          f"{c.get('dropped_buy_without_click', 0):,} dropped (buy without click), "
          f"{c.get('examples_written', 0):,} examples written; "
          f"{c.get('common_lines_read', 0):,} common feature lines "
          f"({c.get('common_lines_unused', 0):,} unused)", flush=True)
    multi = {name[len("multi_valued_"):]: n for name, n in sorted(c.items())
             if name.startswith("multi_valued_") and n}
    if multi:
      print("  [ExampleGen] examples with several ids in a column: " +
            ", ".join(f"{column} {n:,}" for column, n in multi.items()), flush=True)
