"""Batch scoring: `aitm score` (scoring/) and the pipeline's BulkInferrer (`aitm run
--bulk-infer`).

Over the session run's pushed AITM model: the scores of every row equal the
SavedModel's own in-process outputs (1e-6), as CSV and Parquet, with labels present or
absent, key columns in input order, from one worker and from two worker processes.
Over the tiny model of tests/conftest.py: the signatures, the refusals (a bad row names
its file, line and column, and nothing is left at --output) and the command line. The
pipeline: the BulkInferrer's place in the graph, the candidate ExampleGen alone, and
one real run that scores a candidate set with the session run's blessed model.
"""

import csv
import glob
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from apache_beam.portability import common_urns
from conftest import E2E_TRAINING

from components.csv_example_gen import csv_example_gen
from components.csv_example_gen.csv_parser import BadInputError
from models.config import load_config
from pipeline import beam_options, configs
from scoring import candidate_rows, score_files
from scoring.batch_scoring import score, scoring_pipeline
from scoring.model_contract import ModelError, read_contract, resolve_version
from serving import request_rows

CONFIG = load_config(configs.CONFIG_PATH)
LABELS = CONFIG.labels            # clk, buy
TASKS = ("ctr", "cvr")
# Rows of the session data whose price is blanked: serving_raw can't take a missing
# integer, so their batches go to serving_default.
NO_PRICE_ROWS = (5, 9_000)


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _write_csv(path, header, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([row.get(name, "") for name in header] for row in rows)


def _in_process(version_dir, rows, signature="serving_default"):
  """{task: float32 [rows]}: the SavedModel's own signature called in this process on the
  rows (dicts of cells), 1,000 at a time."""
  model = tf.saved_model.load(version_dir)
  function = model.signatures[signature]
  kinds = read_contract(version_dir).kinds
  outputs = {}
  for start in range(0, len(rows), 1000):
    part = rows[start:start + 1000]
    if signature == "serving_default":
      scores = function(examples=tf.constant(
          [request_rows.to_example(row, kinds, "test") for row in part]))
    else:
      scores = function(**{name: tf.constant(values) for name, values in
                           request_rows.to_raw_columns(part, kinds).items()})
    for task, values in scores.items():
      outputs.setdefault(task, []).append(values.numpy())
  return {task: np.concatenate(values) for task, values in outputs.items()}


def _two_worker_processes(monkeypatch):
  """Beam args for two DirectRunner worker processes, which import the project by name."""
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      [configs.PROJECT_DIR] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  return beam_options.direct(2)


# --- over the session run's AITM model --------------------------------------------------

@pytest.fixture(scope="module")
def aitm_version(pipeline_run):
  assert pipeline_run.first.pushed_dir, "the session run pushed nothing"
  return pipeline_run.first.pushed_dir.rstrip("/")


@pytest.fixture(scope="module")
def labelled(pipeline_run, tmp_path_factory):
  """The session data (labels present), a few prices blanked: (directory, rows)."""
  rows = _read_csv(os.path.join(pipeline_run.data_dir, "data.csv"))
  header = list(rows[0])
  for index in NO_PRICE_ROWS:
    rows[index]["price"] = ""
  folder = str(tmp_path_factory.mktemp("labelled"))
  _write_csv(os.path.join(folder, "data.csv"), header, rows)
  return folder, rows


@pytest.fixture(scope="module")
def unlabelled(pipeline_run, tmp_path_factory):
  """3,000 session rows without the label columns, in two files: (directory, rows)."""
  rows = _read_csv(os.path.join(pipeline_run.data_dir, "data.csv"))[:3000]
  header = [name for name in rows[0] if name not in LABELS]
  rows = [{name: row[name] for name in header} for row in rows]
  folder = str(tmp_path_factory.mktemp("unlabelled"))
  _write_csv(os.path.join(folder, "a.csv"), header, rows[:1800])
  _write_csv(os.path.join(folder, "b.csv"), header, rows[1800:])
  return folder, rows


def test_csv_scores_are_the_saved_models_own_for_every_row_in_input_order(
    aitm_version, labelled, tmp_path, monkeypatch):
  folder, rows = labelled
  output = str(tmp_path / "scores")
  result = score(model=os.path.dirname(aitm_version), data=folder, output=output,
                 labels=LABELS, beam_args=_two_worker_processes(monkeypatch),
                 range_bytes=300_000, batch_rows=1000)
  parts = sorted(glob.glob(os.path.join(output, "part-*.csv")))
  assert result.model_version_dir == aitm_version      # the base path's newest version
  assert result.rows == len(rows) == 20_000 and result.parts == len(parts) >= 7
  written = [row for part in parts for row in _read_csv(part)]
  keys = [name for name in rows[0] if name not in LABELS]
  assert list(written[0]) == keys + list(TASKS)        # labels left out, scores after
  assert [[row[k] for k in keys] for row in written] == [[row[k] for k in keys] for row in rows]
  expected = _in_process(aitm_version, rows)
  for task in TASKS:
    got = np.array([float(row[task]) for row in written])
    np.testing.assert_allclose(got, expected[task], rtol=0, atol=1e-6)
  # The rows without a price were scored (by serving_default) like every other.
  assert all(written[i]["price"] == "" for i in NO_PRICE_ROWS)
  assert not glob.glob(str(tmp_path / ".scores.staging-*"))


def test_parquet_scores_with_labels_absent_and_chosen_key_columns(aitm_version, unlabelled,
                                                                  tmp_path):
  folder, rows = unlabelled
  output = str(tmp_path / "scores")
  result = score(model=aitm_version, data=folder, output=output, fmt="parquet",
                 key_columns=["user_id", "adgroup_id", "price"], labels=LABELS)
  assert result.files == 2 and result.rows == 3000 and result.parts == 2
  table = pq.read_table(output)
  assert table.schema.names == ["user_id", "adgroup_id", "price", "ctr", "cvr"]
  assert [str(t) for t in table.schema.types] == ["string", "string", "int64", "float",
                                                   "float"]
  written = table.to_pydict()
  assert written["user_id"] == [row["user_id"] for row in rows]     # a.csv, then b.csv
  assert written["price"] == [int(row["price"]) for row in rows]
  expected = _in_process(aitm_version, rows)
  raw = _in_process(aitm_version, rows, "serving_raw")
  for task in TASKS:
    np.testing.assert_allclose(written[task], expected[task], rtol=0, atol=1e-6)
    np.testing.assert_allclose(written[task], raw[task], rtol=0, atol=1e-6)


# --- over the tiny model: pid (string), price (int64), score (float32) -> ctr -----------

TINY_HEADER = ["request_id", "pid", "price", "score", "clk"]


def _tiny_rows(count):
  return [{"request_id": f"r{i}", "pid": "p" * (i % 7), "price": str(i % 50),
           "score": f"{(i % 13) / 4:.2f}", "clk": str(i % 2)} for i in range(count)]


@pytest.fixture
def tiny_data(tmp_path):
  folder = str(tmp_path / "tiny_data")
  rows = _tiny_rows(600)
  _write_csv(os.path.join(folder, "data.csv"), TINY_HEADER, rows)
  return folder, rows


def _tiny_version(tiny_model_base):
  return os.path.join(tiny_model_base, "1")


def test_the_command_scores_with_either_signature_and_says_how_fast(tiny_model_base, tiny_data,
                                                                    tmp_path, capsys):
  from cli.main import main
  folder, rows = tiny_data
  (tmp_path / "empty").mkdir()                          # an empty --output is fine
  main(["score", "--model", tiny_model_base, "--data", folder,
        "--output", str(tmp_path / "empty")])
  printed = capsys.readouterr().out
  assert "scored 600 rows from 1 file(s) in" in printed and "rows/s) with" in printed
  assert "wrote 1 csv part file(s)" in printed
  written = _read_csv(str(tmp_path / "empty" / "part-00000-00001.csv"))
  # Every column but the config's labels (clk), in the file's order, then the score.
  assert list(written[0]) == ["request_id", "pid", "price", "score", "ctr"]
  assert [row["request_id"] for row in written] == [row["request_id"] for row in rows]
  raw = _in_process(_tiny_version(tiny_model_base), rows, "serving_raw")["ctr"]
  np.testing.assert_allclose([float(row["ctr"]) for row in written], raw, rtol=0, atol=1e-6)

  main(["score", "--model", tiny_model_base, "--data", folder, "--output",
        str(tmp_path / "examples"), "--signature", "serving_default", "--key-columns",
        "request_id", "--beam-args=--direct_num_workers=1"])
  written = _read_csv(str(tmp_path / "examples" / "part-00000-00001.csv"))
  examples = _in_process(_tiny_version(tiny_model_base), rows)["ctr"]
  # The tiny model's two signatures compute different things: this is serving_default's.
  assert np.abs(examples - raw).max() > 0.1
  np.testing.assert_allclose([float(row["ctr"]) for row in written], examples, rtol=0,
                             atol=1e-6)
  assert list(written[0]) == ["request_id", "ctr"]


@pytest.mark.parametrize("line, column, message", [
    ("r9,pp,12EUR,1.0,0", "price", r"'12EUR' is not an integer \(ASCII digits\)"),
    ("r9,pp,3,1e999,0", "score", r"'1e999' is not a finite number"),
    ("r9,pp,3,x,0", "score", r"'x' is not a number"),
    ("r9,pp,3,1.0,0,extra", None, r"6 fields where the header has 5 \(a malformed row\)"),
    ('r9,"pp,3,1.0,0', None, r"a quoted field is still open at the end of the line"),
])
def test_a_bad_row_stops_the_run_naming_file_line_and_column_and_leaves_nothing(
    tiny_model_base, tiny_data, tmp_path, line, column, message):
  folder, rows = tiny_data
  path = os.path.join(folder, "data.csv")
  with open(path) as f:
    lines = f.read().split("\n")
  lines[451] = line                                    # line 452 of the file
  with open(path, "w") as f:
    f.write("\n".join(lines))
  output = tmp_path / "out"
  field = rf", field '{column}'" if column else ""
  with pytest.raises(BadInputError, match=rf"Bad input in {path}, line 452{field}: {message}"):
    score(model=tiny_model_base, data=folder, output=str(output), range_bytes=2_000,
          batch_rows=64)
  assert not output.exists()
  assert not glob.glob(str(tmp_path / ".out.staging-*"))


def test_the_command_refuses_a_bad_row_saying_nothing_was_written(tiny_model_base, tiny_data,
                                                                  tmp_path):
  from cli.main import main
  folder, _ = tiny_data
  with open(os.path.join(folder, "more.csv"), "w") as f:
    f.write("request_id,pid,price,score\nr1,pp,3,1.0\nr2,pp,-,1.0\n")
  with pytest.raises(SystemExit) as done:
    main(["score", "--model", tiny_model_base, "--data", folder, "--output",
          str(tmp_path / "out"), "--format", "parquet"])
  assert str(done.value).startswith(f"error: Bad input in {folder}/more.csv, line 3, "
                                    "field 'price': '-' is not an integer")
  assert str(done.value).endswith(f"nothing was written to {tmp_path / 'out'}")
  assert not (tmp_path / "out").exists()


def test_what_can_be_checked_is_refused_before_any_work(tiny_model_base, tiny_data, tmp_path):
  folder, rows = tiny_data

  def refused(error, match, **kwargs):
    settings = dict(model=tiny_model_base, data=folder, output=str(tmp_path / "out"))
    with pytest.raises(error, match=match):
      score(**{**settings, **kwargs})
    assert not (tmp_path / "out").exists()

  (tmp_path / "taken").mkdir()
  (tmp_path / "taken" / "old.csv").write_text("x\n")
  refused(ValueError, "already exists and is not an empty directory",
          output=str(tmp_path / "taken"))
  refused(ModelError, "holds neither saved_model.pb nor a complete", model=folder)
  refused(ModelError, "gs://b/serving/aitm: a directory of this machine's file system",
          model="gs://b/serving/aitm")
  refused(BadInputError, "gs://b/candidates: a directory of this machine's file system",
          data="gs://b/candidates")
  refused(ValueError, "gs://b/scores: a local directory", output="gs://b/scores")
  refused(ValueError, "format must be one of", fmt="json")
  refused(BadInputError, r"missing the key column\(s\) 'request' \(the header has "
          "'request_id'\\)", key_columns=["request"])
  typo = str(tmp_path / "typo")
  _write_csv(os.path.join(typo, "data.csv"), ["pid", "pricee", "score"], rows[:3])
  refused(BadInputError, r"typo/data\.csv, line 1 \(header\): missing the model's column\(s\) "
          r"'price' \(the header has 'pricee'\)", data=typo)
  spans = tmp_path / "spans"
  for span in (1, 2, 10):
    (spans / f"span-{span}").mkdir(parents=True)
  refused(BadInputError, r"holds span directories \(span-1, span-2, span-10\), not CSV files: "
          r"score one, e.g. --data .*/spans/span-10$", data=str(spans))
  empty = str(tmp_path / "header_only")
  _write_csv(os.path.join(empty, "data.csv"), TINY_HEADER, [])
  refused(BadInputError, "have a header but no rows: nothing to score", data=empty)
  assert not glob.glob(str(tmp_path / ".out.staging-*"))


def test_a_base_path_means_its_newest_complete_version(tiny_model_base, tmp_path):
  base = tmp_path / "base"
  shutil.copytree(os.path.join(tiny_model_base, "1"), base / "1")
  shutil.copytree(os.path.join(tiny_model_base + "-v2", "1"), base / "2")
  (base / "3").mkdir()                                     # a push still being copied
  assert resolve_version(str(base)) == str(base / "2")
  assert resolve_version(str(base / "1")) == str(base / "1")
  contract = read_contract(str(base / "2"))
  assert contract.kinds == {"pid": "string", "price": "int", "score": "float"}
  assert contract.outputs == ("ctr",) and contract.version == "2"
  with pytest.raises(ModelError, match="is not a complete SavedModel"):
    (base / "3" / "saved_model.pb").write_bytes(b"")
    resolve_version(str(base / "3"))


def test_nothing_is_grouped_but_the_ranges_spread_to_the_workers(tiny_model_base, tiny_data,
                                                                 tmp_path):
  """Reading, scoring and writing a range are fused: a GroupByKey of the rows would hold
  all of them in the DirectRunner's memory."""
  folder, _ = tiny_data
  contract = read_contract(_tiny_version(tiny_model_base))
  keys, plans = candidate_rows.plan_files(candidate_rows.find_files(folder), contract.kinds,
                                          None, ("clk",))
  ranges = candidate_rows.cut_ranges(plans[0], 2_000)
  pipeline = scoring_pipeline(ranges, contract, keys, str(tmp_path), "csv", "serving_raw",
                              64, beam_options.direct(1))
  graph = pipeline.to_runner_api().components
  groupings = [t.unique_name for t in graph.transforms.values()
               if t.spec.urn == common_urns.primitives.GROUP_BY_KEY.urn]
  assert groupings == ["SpreadRanges/ReshufflePerKey/GroupByKey"]
  assert len(ranges) > 5 and [r.part for r in ranges] == sorted(r.part for r in ranges)
  assert os.path.basename(score_files.part_path("d", ranges[0].part, "csv")) == \
      "part-00000-00001.csv"


# --- the pipeline: BulkInferrer ----------------------------------------------------------

def _graph(tmp_path, **kwargs):
  from pipeline.pipeline import create_pipeline
  pipeline = create_pipeline(config=CONFIG, pipeline_root=str(tmp_path / "root"),
                             data_root=str(tmp_path / "data"),
                             serving_dir=str(tmp_path / "serving"), **kwargs)
  return {c.id: c for c in pipeline.components}


def test_bulk_infer_adds_a_candidate_example_gen_and_a_bulk_inferrer_fed_by_the_blessing(
    tmp_path):
  import json

  from pipeline.pipeline import BULK_INFERRER_ID, CANDIDATE_EXAMPLE_GEN_ID, Extent
  assert BULK_INFERRER_ID not in _graph(tmp_path)
  nodes = _graph(tmp_path, bulk_infer=str(tmp_path / "candidates"))
  candidates, inferrer = nodes[CANDIDATE_EXAMPLE_GEN_ID], nodes[BULK_INFERRER_ID]
  assert candidates.exec_properties["input_base"] == str(tmp_path / "candidates")
  assert json.loads(candidates.exec_properties["output_config"]) == {
      "split_config": {"splits": [{"name": "candidates", "hash_buckets": 1}]}}
  assert inferrer.inputs["examples"].producer_component_id == CANDIDATE_EXAMPLE_GEN_ID
  assert inferrer.inputs["model"].producer_component_id == "Trainer"
  assert inferrer.inputs["model_blessing"].producer_component_id == "Evaluator"
  assert json.loads(inferrer.exec_properties["model_spec"]) == {
      "model_signature_name": ["serving_default"]}
  columns = json.loads(inferrer.exec_properties["output_example_spec"])[
      "output_columns_spec"][0]["predict_output"]["output_columns"]
  assert [(c["output_key"], c["output_column"]) for c in columns] == [("ctr", "ctr"),
                                                                      ("cvr", "cvr")]
  assert "output_examples" in inferrer.outputs
  # The training ExampleGen is the same with or without it (its cache key).
  assert nodes["FileBasedExampleGen"].exec_properties == \
      _graph(tmp_path)["FileBasedExampleGen"].exec_properties
  with pytest.raises(ValueError, match="needs Extent.PUSH"):
    _graph(tmp_path, bulk_infer=str(tmp_path / "candidates"), extent=Extent.EVALUATE)


def test_the_candidate_example_gen_writes_every_row_into_one_split_labels_optional(tmp_path):
  from datagen import taobao
  from pipeline.local_runner import run_example_gen_executor
  taobao.write_csv(str(tmp_path / "gen"), 40, seed=5)
  rows = _read_csv(str(tmp_path / "gen" / "data.csv"))
  header = list(rows[0])
  folder = tmp_path / "candidates"
  _write_csv(str(folder / "labelled.csv"), header, rows[:10])
  _write_csv(str(folder / "unlabelled.csv"), [n for n in header if n not in LABELS], rows[10:])
  component = csv_example_gen(str(folder), CONFIG, candidates="candidates")
  _, examples = run_example_gen_executor(component, str(tmp_path / "examples"))
  splits = os.listdir(examples.uri)
  assert splits == ["Split-candidates"]
  written = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
      glob.glob(os.path.join(examples.uri, "Split-candidates", "*.gz")), compression_type="GZIP")]
  assert len(written) == 40
  with_labels = [e for e in written if "clk" in e.features.feature]
  assert len(with_labels) == 10 and all("buy" in e.features.feature for e in with_labels)
  # A file's labels, when it has them, are still checked.
  rows[3]["buy"], rows[3]["clk"] = "1", "0"
  _write_csv(str(folder / "labelled.csv"), header, rows[:10])
  with pytest.raises(Exception, match=r"labelled\.csv, line 5, field 'buy': buy=1 but clk=0"):
    run_example_gen_executor(component, str(tmp_path / "again"))


def test_the_summary_says_where_the_inferences_are_or_why_there_are_none():
  from report.run_summary import RunSummary
  summary = RunSummary("run", {"Pusher": "COMPLETE", "BulkInferrer": "COMPLETE"}, {}, {}, {},
                       True, "/serving/aitm/7", inferences_dir="/root/BulkInferrer/"
                       "output_examples/9/Split-candidates")
  assert ("inferences            /root/BulkInferrer/output_examples/9/Split-candidates "
          "(candidates' tf.Examples with the scores" in summary.table())
  summary.blessed, summary.pushed_dir, summary.inferences_dir = False, None, None
  assert "inferences            none: BulkInferrer scores with a blessed model only" in \
      summary.table()
  summary.component_states.pop("BulkInferrer")
  assert "inferences" not in summary.table()


def test_bulk_inferrer_scores_the_candidates_with_the_blessed_model_as_it_scores_itself(
    pipeline_run, aitm_version, unlabelled, tmp_path):
  """The session run again with --bulk-infer, from a copy of its ML Metadata: every other
  component comes from the cache, so only the candidate ExampleGen and BulkInferrer run."""
  from pipeline.local_runner import run_local
  from report.run_summary import summarize
  folder, rows = unlabelled
  root = tmp_path / "pipeline"
  root.mkdir()
  shutil.copy(configs.metadata_path(pipeline_run.pipeline_root), configs.metadata_path(str(root)))
  summary = summarize(run_local(config=CONFIG, data_root=pipeline_run.data_dir,
                                pipeline_root=str(root), serving_dir=pipeline_run.serving_dir,
                                training=E2E_TRAINING, bulk_infer=folder), labels=LABELS)
  states = dict(summary.component_states)
  assert states.pop("CandidateExampleGen") == states.pop("BulkInferrer") == "COMPLETE"
  # Resolvers are never cached; every component is.
  assert {node: state for node, state in states.items() if "resolver" not in node} == {
      node: "CACHED" for node in states if "resolver" not in node}
  assert summary.blessed and summary.inferences_dir.endswith("Split-candidates")
  assert "inferences" in summary.table()
  written = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
      glob.glob(os.path.join(summary.inferences_dir, "*.gz")), compression_type="GZIP")]
  assert len(written) == len(rows)
  assert sorted(e.features.feature["user_id"].bytes_list.value[0].decode() for e in written) \
      == sorted(row["user_id"] for row in rows)
  # Each output example is its input plus ctr and cvr: the input scored in this process.
  inputs = []
  for example in written:
    stripped = tf.train.Example()
    stripped.CopyFrom(example)
    for task in TASKS:
      del stripped.features.feature[task]
    inputs.append(stripped.SerializeToString())
  model = tf.saved_model.load(aitm_version)
  expected = model.signatures["serving_default"](examples=tf.constant(inputs))
  for task in TASKS:
    got = [e.features.feature[task].float_list.value[0] for e in written]
    np.testing.assert_allclose(got, expected[task].numpy(), rtol=0, atol=1e-6)


def test_an_unblessed_model_infers_nothing_and_the_summary_says_so(tiny_model_base, tmp_path):
  """BulkInferrer's executor with the Evaluator's verdict "not blessed": no split written,
  which the summary reads as no inferences."""
  from ml_metadata.proto import metadata_store_pb2
  from tfx.components.bulk_inferrer.executor import Executor
  from tfx.types import standard_artifacts

  from report.metadata import RunRecord
  from report.run_summary import _inferences_dir

  model, blessing = standard_artifacts.Model(), standard_artifacts.ModelBlessing()
  model.uri, blessing.uri = os.path.dirname(tiny_model_base), str(tmp_path / "blessing")
  blessing.set_int_custom_property("blessed", 0)
  examples, output = standard_artifacts.Examples(), standard_artifacts.Examples()
  examples.uri, output.uri = str(tmp_path / "candidates"), str(tmp_path / "inferences")
  examples.split_names = '["candidates"]'
  os.makedirs(output.uri)
  Executor().Do({"examples": [examples], "model": [model], "model_blessing": [blessing]},
                {"output_examples": [output]},
                {"data_spec": "{}", "model_spec": "{}", "output_example_spec":
                 '{"output_columns_spec": [{"predict_output": {"output_columns": '
                 '[{"output_key": "ctr", "output_column": "ctr"}]}}]}'})
  assert os.listdir(output.uri) == [] and output.split_names == ""

  def recorded(split_names):
    artifact = metadata_store_pb2.Artifact(uri=output.uri)
    if split_names is not None:
      artifact.properties["split_names"].string_value = split_names
    return RunRecord("run", {}, {}, {("BulkInferrer", "Examples"): [artifact]})

  assert _inferences_dir(recorded(output.split_names)) is None
  assert _inferences_dir(recorded(None)) is None
  assert _inferences_dir(recorded('["candidates"]')) == os.path.join(output.uri,
                                                                     "Split-candidates")
  assert _inferences_dir(RunRecord("run", {}, {}, {})) is None
