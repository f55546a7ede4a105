"""The CSV ExampleGen's executor (components/csv_example_gen/executor.py) hands a file's
byte ranges to the workers: two DirectRunner worker processes write the examples one
worker writes, each row in the split its byte offset decides, with a progress line per
range; a bad row in a later range stops the run naming its place. What it reports
after its Beam job comes back as Beam counters."""

import collections
import glob
import hashlib
import os
import re
import shutil

import pytest
import tensorflow as tf
from apache_beam.portability import common_urns

from components.csv_example_gen import csv_example_gen
from components.csv_example_gen.csv_parser import read_examples
from components.split_executor import LabelBlindSplitExecutor
from datagen import taobao
from models.config import load_config
from pipeline import beam_options, configs
from pipeline.local_runner import run_example_gen_executor

CONFIG = load_config(configs.CONFIG_PATH)
ROWS, RANGE_BYTES = 400, 2_000


def run_executor(data_root, output_dir, beam_args, range_bytes=RANGE_BYTES):
  """The CSV ExampleGen's Do() on `data_root`; {split: sorted serialized examples}."""
  component = csv_example_gen(str(data_root), CONFIG, range_bytes=range_bytes)
  _, examples = run_example_gen_executor(component, str(output_dir),
                                         beam_pipeline_args=beam_args)
  return {split: sorted(_serialized(record) for path in glob.glob(
              os.path.join(examples.uri, f"Split-{split}", "*.gz"))
                        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"))
          for split in ("train", "eval")}


def _serialized(record):
  """A record as deterministic bytes: map fields serialize in no fixed order."""
  return tf.train.Example.FromString(record.numpy()).SerializeToString(deterministic=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  data_root = tmp_path_factory.mktemp("data")
  taobao.write_csv(str(data_root), ROWS, seed=8)
  return data_root


@pytest.fixture(scope="module")
def one_worker(data, tmp_path_factory):
  return run_executor(data, tmp_path_factory.mktemp("one"), beam_options.direct(1))


def _rows_by_split(path, relative):
  """{split: sorted serialized examples} of a file read whole, each row put where the
  documented key, `<relative path>@<byte offset>`, hashes (sha256 modulo 4 + 1: eval
  is the last of the five buckets)."""
  with open(path, "rb") as raw:
    examples = [e.SerializeToString(deterministic=True)
                for e in read_examples(path, raw, CONFIG.columns, CONFIG.labels)]
  with open(path, "rb") as raw:
    offsets, offset = [], len(raw.readline())
    for line in raw:
      offsets.append(offset)
      offset += len(line)
  split = collections.defaultdict(list)
  for example, offset in zip(examples, offsets):
    key = f"{relative}@{offset}".encode()
    split["eval" if int(hashlib.sha256(key).hexdigest(), 16) % 5 == 4 else "train"].append(
        example)
  return {name: sorted(rows) for name, rows in split.items()}


def test_each_row_lands_in_the_split_its_byte_offset_decides(data, one_worker):
  expected = _rows_by_split(str(data / taobao.DATA_FILE), taobao.DATA_FILE)
  assert one_worker == expected
  assert len(one_worker["train"]) + len(one_worker["eval"]) == ROWS
  assert 0.1 < len(one_worker["eval"]) / ROWS < 0.3


def test_two_worker_processes_write_what_one_writes(data, one_worker, tmp_path, monkeypatch):
  # The worker processes import the parser by name, as Dataflow's workers do from the image.
  project = configs.PROJECT_DIR
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      [project] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  two = run_executor(data, tmp_path / "two", beam_options.direct(2))
  assert two == one_worker


def test_each_range_prints_its_progress(data, tmp_path, capsys):
  run_executor(data, tmp_path / "progress", beam_options.direct(1))
  done = re.findall(r"\[ExampleGen\] data\.csv range (\d+)/(\d+) \(bytes (\d+)-(\d+)\): "
                    r"(\d+) rows read", capsys.readouterr().out)
  text = (data / taobao.DATA_FILE).read_bytes()
  first_row = text.index(b"\n") + 1
  count = int(done[0][1])
  assert count == -(-(len(text) - first_row) // RANGE_BYTES) and count > 10
  assert sorted(int(d[0]) for d in done) == list(range(1, count + 1))
  assert sum(int(d[4]) for d in done) == ROWS
  assert sorted((int(d[2]), int(d[3])) for d in done) == [
      (int(d[2]), int(d[3])) for d in sorted(done, key=lambda d: int(d[0]))]
  assert min(int(d[2]) for d in done) == first_row and max(int(d[3]) for d in done) == len(text)


def test_a_bad_row_in_a_later_range_stops_the_run_naming_its_place(data, tmp_path):
  bad_root = tmp_path / "bad"
  bad_root.mkdir()
  text = (data / taobao.DATA_FILE).read_bytes()
  lines = text.split(b"\n")
  lines[300] = lines[300].rsplit(b",", 1)[0] + b",12EUR"
  (bad_root / "data.csv").write_bytes(b"\n".join(lines))
  offset = sum(len(line) + 1 for line in lines[:300])
  assert offset > 10 * RANGE_BYTES
  with pytest.raises(Exception) as failure:
    run_executor(bad_root, tmp_path / "out", beam_options.direct(1))
  assert re.search(rf"Bad input in .*bad/data\.csv, line 301, field 'price': '12EUR' is not "
                   rf"an integer \(ASCII digits\); the row at byte {offset}: "
                   rf"'{re.escape(lines[300].decode())}'", str(failure.value))


def test_rows_and_files_read_come_back_as_counters_and_print_in_this_process(tmp_path,
                                                                            capsys):
  """The DoFn counts rows and files in Beam counters; Do() reads them from the finished
  pipeline and prints them here, as it does on a portable runner, whose DoFns print
  into the SDK workers' own output (tests/test_portable_runner.py)."""
  data = tmp_path / "data"
  taobao.write_csv(str(data), 120, 3)
  shutil.copy(data / "data.csv", data / "more.csv")
  component = csv_example_gen(str(data), CONFIG, range_bytes=RANGE_BYTES)
  executor, examples = run_example_gen_executor(component, str(tmp_path / "examples"))
  # Each file is cut into several ranges here; a file still counts once.
  assert executor.counters == {"rows_read": 240, "files_read": 2}
  assert "  [ExampleGen] 240 rows read from 2 CSV file(s)\n" in capsys.readouterr().out
  files = glob.glob(os.path.join(examples.uri, "Split-*", "*.gz"))
  written = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
  assert written == 240


def test_examples_stream_into_their_files_with_no_grouping_of_all_examples(data, tmp_path,
                                                                           monkeypatch):
  """TFX's WriteSplit reshuffles every example before writing it, a GroupByKey of the whole
  dataset that Beam's DirectRunner holds in memory (a 1 GB CSV outgrew 24 GB). The
  pipeline's only GroupByKeys are the byte ranges' spread, the row count's combine, and
  each split's list of written files."""
  pipelines = []
  make = LabelBlindSplitExecutor._make_beam_pipeline
  monkeypatch.setattr(LabelBlindSplitExecutor, "_make_beam_pipeline",
                      lambda self: pipelines.append(make(self)) or pipelines[-1])
  written = run_executor(data, tmp_path / "out", beam_options.direct(1))
  assert sum(map(len, written.values())) == ROWS
  graph = pipelines[0].to_runner_api().components
  groupings = sorted(t.unique_name for t in graph.transforms.values()
                     if t.spec.urn == common_urns.primitives.GROUP_BY_KEY.urn)
  assert groupings == [
      "InputToRecord/CountRows/CombineGlobally(CountCombineFn)/CombinePerKey/GroupByKey",
      "InputToRecord/SpreadRanges/ReshufflePerKey/GroupByKey",
      "Write[eval]/Write/WriteImpl/GroupByKey", "Write[train]/Write/WriteImpl/GroupByKey"]
  # The writes' groupings take the names of written files, not examples.
  for split in ("train", "eval"):
    bundles = graph.transforms[next(
        key for key, t in graph.transforms.items()
        if t.unique_name == f"Write[{split}]/Write/WriteImpl/WriteBundles")]
    pair = next(t for t in graph.transforms.values()
                if t.unique_name == f"Write[{split}]/Write/WriteImpl/Pair")
    assert list(pair.inputs.values()) == list(bundles.outputs.values())
