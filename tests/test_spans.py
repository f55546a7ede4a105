"""Daily spans: ExampleGen's {SPAN} pattern, the rolling training window and the
drift check between spans (pipeline/spans.py, components/anomalies_gate.py),
through the whole pipeline on three generated spans, price x 3 in the third;
each run warm-started from the latest blessed model (models/warm_start.py)."""

import os
import re

import pytest

from cli.main import main as aitm
from datagen import taobao
from pipeline import spans

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPAN_ROWS = 3000
SEED = 5
TRAINING = {"seed": SEED, "max_epochs": 3}
# These tests are about spans, not model quality: on 600 eval rows a span's AUC
# is noisy, so no floor and no change threshold keep a model from being pushed.
GATE = dict(min_auc={"ctr": 0.0, "cvr": 0.0}, max_auc_drop={"ctr": 1.0, "cvr": 1.0})


def _examples(span, artifact_id):
  from tfx.types import standard_artifacts
  artifact = standard_artifacts.Examples()
  artifact.id = artifact_id
  artifact.set_int_custom_property("span", span)   # as ExampleGen records it
  return artifact


class _Lineage:
  """The two ML Metadata queries PreviousSpanStrategy makes, over given events."""

  def __init__(self, produced_from):
    from ml_metadata.proto import metadata_store_pb2
    event = metadata_store_pb2.Event
    # statistics id -> examples id it was computed from; one execution each.
    self.events = []
    for execution, (stats, examples) in enumerate(produced_from.items(), start=100):
      self.events += [event(artifact_id=stats, execution_id=execution, type=event.OUTPUT),
                      event(artifact_id=examples, execution_id=execution, type=event.INPUT)]

  def get_events_by_artifact_ids(self, ids):
    return [e for e in self.events if e.artifact_id in ids]

  def get_events_by_execution_ids(self, ids):
    return [e for e in self.events if e.execution_id in ids]


def test_window_takes_the_newest_artifact_of_each_span_up_to_the_current_one():
  a1, a2, a2_again, a3, a4 = (_examples(s, i) for i, s in enumerate((1, 2, 2, 3, 4), start=1))
  every = {"examples": [a1, a2, a2_again, a3, a4]}
  # --span 3: spans 3 and 2 (its newest ingestion); 4 is after the current span.
  assert spans.SpanWindowStrategy(num_spans=2, span=3).resolve_artifacts(
      None, every)["examples"] == [a3, a2_again]
  # No --span: the newest ingested span is the current one.
  assert spans.SpanWindowStrategy(num_spans=3).resolve_artifacts(
      None, every)["examples"] == [a4, a3, a2_again]
  assert spans.SpanWindowStrategy(5).resolve_artifacts(None, {"examples": [a1]})[
      "examples"] == [a1]
  with pytest.raises(ValueError):
    spans.SpanWindowStrategy(0)


def test_previous_span_statistics_found_through_lineage():
  from tfx.types import standard_artifacts
  examples = [_examples(s, i) for i, s in ((1, 1), (2, 1), (3, 2), (4, 5))]
  statistics = []
  for artifact_id in (11, 12, 13, 14):
    stats = standard_artifacts.ExampleStatistics()
    stats.id = artifact_id
    statistics.append(stats)
  # Statistics 11 and 12 from span 1 (ingested twice), 13 from span 2, 14 from span 5.
  store = _Lineage({11: 1, 12: 2, 13: 3, 14: 4})
  inputs = {"statistics": statistics, "examples": examples}
  out = spans.PreviousSpanStrategy(span=2).resolve_artifacts(store, inputs)
  assert [a.id for a in out["statistics"]] == [12] and [a.id for a in out["examples"]] == [2]
  out = spans.PreviousSpanStrategy().resolve_artifacts(store, inputs)   # newest: span 5
  assert [a.id for a in out["statistics"]] == [13] and [a.id for a in out["examples"]] == [3]
  out = spans.PreviousSpanStrategy(span=1).resolve_artifacts(store, inputs)  # the first span
  assert [a.id for a in out["statistics"]] == [12] and [a.id for a in out["examples"]] == [2]


def test_drift_thresholds_come_from_the_curated_schema():
  from pipeline import configs
  config = spans.drift_config(configs.SCHEMA_PATH)
  found = {f.path.step[0]: f.distribution_comparator for f in config.default_slice_config.feature}
  assert set(found) == {"pid", "age_level", "price"}
  assert found["pid"].infinity_norm.threshold == found["age_level"].infinity_norm.threshold == 0.1
  assert found["price"].jensen_shannon_divergence.threshold == 0.1


def test_generated_spans_are_one_world_with_the_shift_from_its_span(tmp_path):
  import csv
  paths = taobao.write_spans(str(tmp_path), 500, 3, seed=1, shift=("price", 3.0), shift_from=3)
  assert [os.path.relpath(p, tmp_path) for p in paths] == [
      f"span-{i}/data.csv" for i in (1, 2, 3)]
  assert spans.spans_in(str(tmp_path)) == [1, 2, 3]
  prices = [[int(r["price"]) for r in csv.DictReader(open(p))] for p in paths]
  means = [sum(p) / len(p) for p in prices]
  assert abs(means[0] - means[1]) < 3 and means[2] > 1.5 * means[1]
  assert max(prices[2]) <= 49   # clipped: still inside the schema's domain
  with pytest.raises(ValueError, match="numeric feature"):
    taobao.write_spans(str(tmp_path), 10, 1, shift=("pid", 2.0))


def test_cli_refuses_span_options_without_spans(tmp_path):
  flat = tmp_path / "flat"
  aitm(["generate-data", "--out", str(flat), "--rows", "50"])
  with pytest.raises(SystemExit, match="need --data with span-N/ directories"):
    aitm(["run", "--data", str(flat), "--span", "1", "--pipeline-root", str(tmp_path / "r")])
  many = tmp_path / "many"
  aitm(["generate-data", "--out", str(many), "--rows", "50", "--spans", "2"])
  with pytest.raises(SystemExit, match="--span 7: .* has spans 1, 2"):
    aitm(["run", "--data", str(many), "--span", "7", "--pipeline-root", str(tmp_path / "r")])
  with pytest.raises(SystemExit, match="FEATURE=FACTOR"):
    aitm(["generate-data", "--out", str(many), "--spans", "2", "--shift", "price"])


# --- the pipeline over three spans -------------------------------------------------

@pytest.fixture(scope="module")
def span_runs(tmp_path_factory):
  """Span 1 alone, then span 2 trained on spans 1-2 (drift checked, none) and
  warm-started from span 1's blessed model, then the same again (all cached),
  then span 3, whose prices were multiplied by 3: stopped by the drift check."""
  from models.config import load_config
  from pipeline import configs
  from pipeline.local_runner import run_local
  from pipeline.spans import SpanSettings
  from report.run_summary import summarize

  def run_and_summarize(**kwargs):
    return summarize(run_local(**kwargs), labels=kwargs["config"].labels)

  root = tmp_path_factory.mktemp("spans")
  data = str(root / "data")
  taobao.write_spans(data, SPAN_ROWS, 3, seed=SEED, shift=("price", 3.0), shift_from=3)
  kwargs = dict(config=load_config(configs.CONFIG_PATH), data_root=data,
                pipeline_root=str(root / "pipeline"), serving_dir=str(root / "serving"),
                training=TRAINING, warm_start=True, **GATE)
  first = run_and_summarize(spans=SpanSettings(span=1), **kwargs)
  killed = _kill_aitm_run_during_trainer(
      ["run", "--data", data, "--span", "2", "--train-spans", "2",
       "--pipeline-root", kwargs["pipeline_root"], "--serving-dir", kwargs["serving_dir"],
       "--min-auc", "0", "--max-auc-drop", "1", "--warm-start"],
      log=str(root / "killed.log"))
  # The same run again: everything before the Trainer comes from the cache.
  second = run_and_summarize(spans=SpanSettings(span=2, train_spans=2), **kwargs)
  rerun = run_and_summarize(spans=SpanSettings(span=2, train_spans=2), **kwargs)
  trainer_runs = len(_inputs_of(_store(kwargs["pipeline_root"]), "Trainer"))
  with pytest.raises(Exception) as drifted:
    run_local(spans=SpanSettings(train_spans=2), **kwargs)   # the newest span: 3
  return dict(root=root, kwargs=kwargs, first=first, killed=killed, second=second,
              rerun=rerun, error=str(drifted.value), trainer_runs=trainer_runs)


def _kill_aitm_run_during_trainer(argv, log, timeout=900):
  """Starts `aitm ARGV` as its own process group and SIGKILLs it once the Trainer has
  finished its first epoch; returns what the run printed."""
  import signal
  import subprocess
  import sys
  import time
  # A killed run can't delete its temporary files (TFX's 49 MB package of the project
  # among them): they go to a directory beside the log, which pytest's tmp_path cleans.
  tmp_dir = os.path.join(os.path.dirname(log), "killed-run-tmp")
  os.makedirs(tmp_dir, exist_ok=True)
  env = dict(os.environ, TMPDIR=tmp_dir, PYTHONPATH=os.pathsep.join(
      [PROJECT_DIR] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
  with open(log, "w+") as out:
    process = subprocess.Popen([sys.executable, "-m", "cli.main", *argv], cwd=PROJECT_DIR,
                               env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
      while time.monotonic() < deadline and process.poll() is None:
        out.seek(0)
        if "[Trainer] epoch 1 done" in out.read():
          break
        time.sleep(0.5)
      assert process.poll() is None, "aitm run ended before its Trainer trained"
      os.killpg(process.pid, signal.SIGKILL)
      process.wait(60)
    finally:
      if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(60)
    out.seek(0)
    text = out.read()
  assert "Trainer ..." in text and "Evaluator ..." not in text, text[-3000:]
  return text


def _store(pipeline_root):
  from pipeline.configs import metadata_path
  from report.metadata import open_store
  return open_store(metadata_path(pipeline_root))


def _inputs_of(store, node_id):
  """[[span of each input Examples artifact] per execution of node_id], oldest first."""
  from pipeline import configs
  node = store.get_context_by_type_and_name("node", f"{configs.PIPELINE_NAME}.{node_id}")
  runs = []
  for execution in sorted(store.get_executions_by_context(node.id), key=lambda e: e.id):
    events = store.get_events_by_execution_ids([execution.id])
    ids = [e.artifact_id for e in events if e.type == e.INPUT]
    examples = [a for a in store.get_artifacts_by_id(ids)
                if store.get_artifact_types_by_id([a.type_id])[0].name == "Examples"]
    runs.append(sorted(a.custom_properties["span"].int_value for a in examples))
  return runs


def test_each_run_reads_its_span_and_trains_on_the_window(span_runs):
  store = _store(span_runs["kwargs"]["pipeline_root"])
  # Transform: span 1 alone, then the window of spans 1 and 2 (run, then reused from
  # the cache after the kill and in the rerun); never span 3.
  assert _inputs_of(store, "Transform") == [[1], [1, 2], [1, 2], [1, 2]]
  assert _inputs_of(store, "Evaluator") == [[1], [2], [2]]   # each span's own eval split
  first, second = span_runs["first"], span_runs["second"]
  assert first.blessed and second.blessed
  assert first.pushed_dir != second.pushed_dir


def test_a_run_killed_in_the_trainer_resumes_from_the_cache(span_runs):
  second = span_runs["second"]
  states = second.component_states
  # Everything that had finished before the kill is reused, the rest runs.
  for node in ("FileBasedExampleGen", "StatisticsGen", "ExampleValidator",
               "DistributionValidator", "AnomaliesGate", "Transform"):
    assert states[node] == "CACHED", (node, states)
  assert states["Trainer"] == states["Evaluator"] == states["Pusher"] == "COMPLETE", states
  # The killed run pushed nothing; the resumed one pushed one complete version.
  base = os.path.join(span_runs["kwargs"]["serving_dir"], "aitm")
  assert sorted(os.listdir(base)) == sorted(
      os.path.basename(r.pushed_dir.rstrip("/")) for r in (span_runs["first"], second))


def test_the_window_trains_on_both_spans_rows(span_runs):
  import json
  from models.trainer import SUMMARY_FILE
  rows = []
  for run in ("first", "second"):
    with open(os.path.join(span_runs[run].model_run_uri, SUMMARY_FILE)) as f:
      rows.append(json.load(f)["train_rows"])
  # Span 2's run trains on span 1's train split and its own: about twice as many rows.
  assert 1.8 < rows[1] / rows[0] < 2.2


def test_a_drifted_span_stops_before_training_naming_feature_and_distance(span_runs, capsys):
  error = span_runs["error"]
  assert "DistributionValidator found drift in span 3 from span 2" in error
  line = next(l for l in error.splitlines() if "/price:" in l)
  distance = float(re.search(r"Jensen-Shannon divergence .*? is ([0-9.e-]+)", line).group(1))
  assert distance > 0.1 and "threshold" in line
  assert "pid" not in error and "age_level" not in error   # unshifted features pass
  store = _store(span_runs["kwargs"]["pipeline_root"])
  assert len(_inputs_of(store, "Trainer")) == span_runs["trainer_runs"]  # none for span 3
  versions = os.listdir(os.path.join(span_runs["kwargs"]["serving_dir"], "aitm"))
  assert len(versions) == 2                                # and nothing pushed


def test_cli_names_the_drift_and_pushes_nothing(span_runs, capsys):
  kwargs = span_runs["kwargs"]
  with pytest.raises(SystemExit) as stop:
    aitm(["run", "--data", kwargs["data_root"], "--pipeline-root", kwargs["pipeline_root"],
          "--serving-dir", kwargs["serving_dir"], "--train-spans", "2", "--max-epochs", "2"])
  message = str(stop.value)
  assert message.startswith("error: DistributionValidator found drift in span 3 from span 2")
  assert "price" in message and "nothing was pushed" in message
  assert "reading span 3" in capsys.readouterr().out


# --- warm start over spans ---------------------------------------------------------

def _trainer_runs(store):
  """[(input artifacts, output artifacts) by the Trainer's input and output keys] per
  Trainer execution that finished (run or cached), oldest first. By key, not type: two
  inputs are Examples (`examples`, Transform's; `raw_examples`, for the warmup file)."""
  from tfx.types import artifact_utils

  from pipeline import configs
  node = store.get_context_by_type_and_name("node", f"{configs.PIPELINE_NAME}.Trainer")
  runs = []
  for execution in sorted(store.get_executions_by_context(node.id), key=lambda e: e.id):
    if execution.last_known_state not in (execution.COMPLETE, execution.CACHED):
      continue
    sides = ({}, {})
    for event in store.get_events_by_execution_ids([execution.id]):
      artifact, = store.get_artifacts_by_id([event.artifact_id])
      kind, = store.get_artifact_types_by_id([artifact.type_id])
      sides[event.type == event.OUTPUT].setdefault(event.path.steps[0].key, []).append(
          artifact_utils.deserialize_artifact(kind, artifact))
    runs.append(sides)
  return runs


def _training_summary(run):
  import json
  from models.trainer import SUMMARY_FILE
  with open(os.path.join(run.model_run_uri, SUMMARY_FILE)) as f:
    return json.load(f)


def test_span_2_warm_starts_from_span_1s_blessed_model(span_runs):
  from models.config import load_config
  from models.features import Encoding
  from pipeline import configs
  first = _training_summary(span_runs["first"])["warm_start"]
  assert first == {"base_model": None, "warm": False, "reason": "no blessed model to start from yet",
                   "copied": [], "remapped": {}}
  runs = _trainer_runs(_store(span_runs["kwargs"]["pipeline_root"]))
  span_1_model = runs[0][1]["model"][0]
  assert [m.id for m in runs[1][0]["base_model"]] == [span_1_model.id]   # span 2's base_model

  second = _training_summary(span_runs["second"])["warm_start"]
  assert second["warm"] and second["reason"] is None
  assert second["base_model"] == os.path.join(span_1_model.uri, "Format-Serving")
  # Hashed, tag and integer-id tables and the dense layers, copied whole.
  for key in ("features/cate_id_embedding/embeddings",
              "features/tag_category_list_embedding/embeddings",
              "features/price_embedding/embeddings", "share_bottom/dense/kernel",
              "cvr_aitm/transfer_mlp/dense/kernel", "ctr_head/kernel"):
    assert key in second["copied"], key
  config = load_config(configs.CONFIG_PATH)
  vocabulary_features = {f.name for f in config.features if f.encoding is Encoding.VOCABULARY}
  rows = second["remapped"]
  assert set(rows) == vocabulary_features
  # The window holds span 1's train rows again: every base token is still in the
  # vocabulary, at whatever id; span 2 brings a few new ones (cms_segid here).
  assert all(r["dropped"] == 0 and r["kept"] > 0 and r["oov"] == 1 for r in rows.values()), rows
  assert sum(r["new"] for r in rows.values()) > 0, rows
  assert rows["pid"] == {"kept": 2, "new": 0, "dropped": 0, "oov": 1}   # the same 2 placements


def test_a_warm_started_rerun_is_served_from_the_cache(span_runs):
  from pipeline.pipeline import PREVIOUS_SPAN_ID, RESOLVER_ID, SPAN_WINDOW_ID, WARM_START_ID
  states = dict(span_runs["rerun"].component_states)
  # Resolvers are queries of ML Metadata, recorded afresh each run; the warm-start
  # one gives the rerun's Trainer its first run's base model back.
  for resolver in (RESOLVER_ID, WARM_START_ID, SPAN_WINDOW_ID, PREVIOUS_SPAN_ID):
    assert states.pop(resolver) == "COMPLETE", resolver
  assert "Trainer" in states and set(states.values()) == {"CACHED"}, states
  assert span_runs["rerun"].pushed_dir == span_runs["second"].pushed_dir


def test_another_architecture_starts_fresh_and_says_why(span_runs, capsys):
  """The Trainer's run_fn on span 2's Transform output with span 2's model as the
  base, but a wider ctr tower: a fresh start naming the weight (two steps, enough
  to see the decision)."""
  import json
  from tfx.components.trainer import executor as trainer_executor
  from tfx.types import standard_artifacts

  from models import trainer

  inputs, outputs = _trainer_runs(_store(span_runs["kwargs"]["pipeline_root"]))[1]
  text = open(os.path.join(PROJECT_DIR, "configs", "aitm_taobao.config")).read()
  head, tail = text.split('name: "ctr_tower"', 1)
  wider = head + 'name: "ctr_tower"' + tail.replace("hidden_units: 128", "hidden_units: 256", 1)
  model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
  model.uri = str(span_runs["root"] / "wider" / "model")
  model_run.uri = str(span_runs["root"] / "wider" / "model_run")
  fn_args = trainer_executor.GenericExecutor()._GetFnArgs(
      {"examples": inputs["examples"], "transform_graph": inputs["transform_graph"],
       "base_model": outputs["model"]},
      {"model": [model], "model_run": [model_run]},
      {"train_args": json.dumps({"num_steps": 2}), "eval_args": "{}",
       "custom_config": json.dumps({trainer.CONFIG_KEY: wider,
                                    trainer.TRAINING_KEY: {"seed": SEED},
                                    trainer.WARM_START_KEY: True})})
  result = trainer.train(fn_args)
  reason = "ctr_tower/dense/kernel is (256, 128) in the base model, (256, 256) now"
  assert result.summary["warm_start"]["reason"] == reason
  assert not result.summary["warm_start"]["warm"] and result.summary["steps"] == 2
  assert f"[Trainer] warm start: fresh start, {reason}" in capsys.readouterr().out
  # It still trains and exports, and leaves its own warm_start/ for the next run.
  assert os.path.exists(os.path.join(model.uri, "Format-Serving", "saved_model.pb"))
  assert os.path.exists(os.path.join(model.uri, "warm_start", "manifest.json"))


# --- the split by span ---------------------------------------------------------------

def test_split_by_span_evaluates_the_newest_span_on_a_model_of_the_earlier_ones(
    span_runs, tmp_path, capsys):
  """`aitm run --split span --span 2` over the same spans: one ExampleGen reads spans
  1 and 2, span 2 is the eval split the Trainer stops on and the Evaluator scores, span
  1 the train split; span 3 is not read."""
  from report.run_summary import summarize
  root = str(tmp_path / "pipeline")
  aitm(["run", "--data", span_runs["kwargs"]["data_root"], "--split", "span", "--span", "2",
        "--pipeline-root", root, "--serving-dir", str(tmp_path / "serving"), "--max-epochs", "2",
        "--min-auc", "0", "--max-auc-drop", "1"])
  printed = capsys.readouterr().out
  assert "split by span: span 2 evaluates, span(s) 1 train" in printed
  summary = summarize(os.path.join(root, "metadata.sqlite"))
  assert summary.rows == {"train": SPAN_ROWS, "eval": SPAN_ROWS}
  assert summary.metrics["ctr"]["example_count"] == SPAN_ROWS
  assert summary.pushed_dir and summary.warnings == []
