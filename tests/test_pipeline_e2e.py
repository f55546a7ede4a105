"""The whole LocalDagRunner pipeline on generated data, run once per session (conftest)."""

import csv
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from models import eval_config, funnel_metrics
from models.config import load_config
from models.features import ColumnType
from pipeline import configs
from pipeline.pipeline import INFRA_VALIDATOR_ID, RESOLVER_ID
from report.evaluation import read_metrics, task_metrics

pytestmark = pytest.mark.e2e
CONFIG = load_config(configs.CONFIG_PATH)
TASKS = [t.name for t in CONFIG.tasks]

COMPONENTS = ["FileBasedExampleGen", "ImportSchemaGen", "StatisticsGen", "ExampleValidator",
              "AnomaliesGate", "Transform", "Trainer", RESOLVER_ID, "Evaluator",
              INFRA_VALIDATOR_ID, "Pusher"]


@pytest.fixture(scope="module")
def pushed_model(pipeline_run):
  return tf.saved_model.load(pipeline_run.first.pushed_dir)


@pytest.fixture(scope="module")
def eval_rows(pipeline_run):
  with open(os.path.join(pipeline_run.data_dir, "data.csv")) as f:
    return list(csv.DictReader(f))[:300]


def _example(row):
  example = tf.train.Example()
  for column in CONFIG.columns:
    name = column.name
    if name in CONFIG.labels or row[name] == "":
      continue  # labels aren't needed to serve; empty = missing
    if column.type is ColumnType.INT:
      example.features.feature[name].int64_list.value.append(int(row[name]))
    else:
      example.features.feature[name].bytes_list.value.append(row[name].encode())
  return example.SerializeToString()


def _raw_tensors(rows):
  out = {}
  for column in CONFIG.columns:
    if column.name in CONFIG.labels:
      continue
    if column.type is ColumnType.INT:
      out[column.name] = tf.constant([int(r[column.name]) for r in rows], tf.int64)
    else:
      out[column.name] = tf.constant([r[column.name] for r in rows])
  return out


def test_every_component_ran(pipeline_run):
  assert list(pipeline_run.first.component_states) == COMPONENTS
  assert set(pipeline_run.first.component_states.values()) == {"COMPLETE"}


def test_rows_read_and_split(pipeline_run):
  rows = pipeline_run.first.rows
  assert rows["train"] + rows["eval"] == 20_000
  assert 0.15 < rows["eval"] / 20_000 < 0.25


def test_the_split_gives_both_splits_the_same_label_rates_and_no_warnings(pipeline_run):
  """The generated data repeats impressions; the split by row never reads the labels,
  so both splits have the rates of the data, and the summary has nothing to warn of."""
  from models.evaluation_checks import rate_gap
  summary = pipeline_run.first
  assert set(summary.label_rates) == {"clk", "buy"}
  for label, by_split in summary.label_rates.items():
    assert by_split["train"][1] == summary.rows["train"], label
    assert rate_gap(by_split["train"], by_split["eval"]) < 4, (label, by_split)
  assert 0.04 < summary.label_rates["clk"]["train"][0] < 0.06
  assert summary.warnings == []
  table = summary.table()
  assert "label rates" in table and "WARNING" not in table


def test_eval_auc_beats_chance_clearly(pipeline_run):
  auc = pipeline_run.first.auc
  assert auc["ctr"] > 0.6, auc
  assert auc["cvr"] > 0.65, auc


def test_blessed_and_pushed_to_serving_layout(pipeline_run):
  summary = pipeline_run.first
  assert summary.blessed is True
  model_dir = os.path.join(pipeline_run.serving_dir, "aitm")
  versions = os.listdir(model_dir)
  assert len(versions) == 1 and versions[0].isdigit()
  assert os.path.normpath(summary.pushed_dir) == os.path.join(model_dir, versions[0])
  assert os.path.exists(os.path.join(summary.pushed_dir, "saved_model.pb"))


def test_example_gen_keeps_ids_as_strings(pipeline_run):
  files = glob.glob(os.path.join(pipeline_run.pipeline_root, "FileBasedExampleGen",
                                 "examples", "*", "Split-train", "*.gz"))
  record = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP")))
  feature = tf.train.Example.FromString(record.numpy()).features.feature
  assert feature["user_id"].bytes_list.value[0].isdigit()
  assert feature["adgroup_id"].bytes_list.value
  assert feature["price"].int64_list.value
  assert feature["clk"].int64_list.value


def test_signatures_contract(pushed_model):
  default = pushed_model.signatures["serving_default"]
  _, inputs = default.structured_input_signature
  assert list(inputs) == ["examples"]
  assert inputs["examples"].dtype == tf.string and inputs["examples"].shape.as_list() == [None]
  assert set(default.structured_outputs) == set(TASKS)
  slicing = pushed_model.signatures["transformed_features"]
  assert list(slicing.structured_input_signature[1]) == ["examples"]
  assert set(slicing.structured_outputs) == {"user_activity"}
  _, raw_inputs = pushed_model.signatures["serving_raw"].structured_input_signature
  assert set(raw_inputs) == set(CONFIG.feature_columns)
  assert raw_inputs["price"].dtype == tf.int64 and raw_inputs["user_id"].dtype == tf.string


def test_both_signatures_agree_and_give_probabilities(pushed_model, eval_rows):
  from_examples = pushed_model.signatures["serving_default"](
      examples=tf.constant([_example(r) for r in eval_rows]))
  from_raw = pushed_model.signatures["serving_raw"](**_raw_tensors(eval_rows))
  for task in TASKS:
    a, b = from_examples[task].numpy(), from_raw[task].numpy()
    assert a.shape == (len(eval_rows),) and a.dtype == np.float32
    assert np.all((a >= 0) & (a <= 1))
    np.testing.assert_allclose(a, b, atol=1e-6)
  # The calibrator keeps P(buy) below P(click) almost everywhere.
  assert np.mean(from_examples["cvr"].numpy() <= from_examples["ctr"].numpy()) > 0.95


def test_user_activity_levels_of_eval_rows(pushed_model, eval_rows):
  levels = pushed_model.signatures["transformed_features"](
      examples=tf.constant([_example(r) for r in eval_rows]))["user_activity"].numpy()
  assert levels.dtype == np.int64 and set(levels) <= {0, 1, 2, 3, 4}
  assert len(set(levels)) >= 3  # popular and rare users alike


def test_every_metric_on_every_slice(pipeline_run):
  by_slice = read_metrics(pipeline_run.first.evaluation_uri)
  features = {key[0][0] for key in by_slice if key}
  assert features == {"pid", "age_level", "new_user_class_level", "shopping_level",
                      "user_activity"}
  expected = {"example_count", "auc", "auc_precision_recall", "log_loss", "calibration",
              "mean_prediction", "mean_label"}
  for key, values in by_slice.items():
    metrics = task_metrics(values)
    assert set(metrics) == set(TASKS), key
    assert set(metrics["ctr"]) == expected, key
    assert set(metrics["cvr"]) == expected | set(funnel_metrics.METRIC_NAMES), key


def test_overall_metrics_are_sane(pipeline_run):
  metrics = pipeline_run.first.metrics
  for task in TASKS:
    m = metrics[task]
    assert m["example_count"] == pipeline_run.first.rows["eval"]
    assert m["calibration"] == pytest.approx(m["mean_prediction"] / m["mean_label"])
    assert 0 < m["log_loss"] < 1 and 0 < m["auc_precision_recall"] < 1
  # The calibration intercepts are fit on the eval split: TFMA, reading the same rows
  # through the serving signature, finds the mean prediction at the label rate.
  assert 0.98 < metrics["ctr"]["calibration"] < 1.02, metrics["ctr"]
  assert 0.98 < metrics["cvr"]["calibration"] < 1.02, metrics["cvr"]
  # The calibrator keeps P(buy) below P(click) almost everywhere.
  assert metrics["cvr"]["order_violation_rate"] < 0.05
  assert 0.5 < metrics["cvr"]["conditional_auc"] <= 1
  assert 0 < metrics["cvr"]["conditional_example_count"] < metrics["ctr"]["example_count"]


def test_missing_fields_are_allowed_at_serving(pushed_model):
  only_pid = tf.train.Example()
  only_pid.features.feature["pid"].bytes_list.value.append(b"430548_1007")
  out = pushed_model.signatures["serving_default"](
      examples=tf.constant([only_pid.SerializeToString(), b""]))
  for task in TASKS:
    values = out[task].numpy()
    assert values.shape == (2,) and np.all(np.isfinite(values))


def test_trainer_logs_each_loss_term_and_a_summary(pipeline_run):
  import json
  from tensorboard.backend.event_processing import event_accumulator
  run_dir = pipeline_run.first.model_run_uri
  with open(os.path.join(run_dir, "training_summary.json")) as f:
    summary = json.load(f)
  assert summary["model_name"] == "AITM" and summary["parameters"] > 100_000
  assert set(summary["eval_auc"]) == set(TASKS) and summary["exported_epoch"] >= 1
  # Each task's calibration intercept was fit on the eval split: its label rate.
  labels = {t.name: t.label for t in CONFIG.tasks}
  for task in TASKS:
    calibration = summary["calibration"][task]
    eval_rate = pipeline_run.first.label_rates[labels[task]]["eval"][0]
    assert calibration["label_rate"] == pytest.approx(eval_rate, rel=1e-4), task
    assert 0 < calibration["label_rate"] < 0.1 and calibration["mean_prediction"] > 0
    assert abs(calibration["shift"]) < 3
  events = event_accumulator.EventAccumulator(os.path.join(run_dir, "train"),
                                              size_guidance={"tensors": 0})
  events.Reload()
  tags = set(events.Tags()["tensors"]) | set(events.Tags()["scalars"])
  for term in ("epoch_loss", "epoch_ctr_loss", "epoch_cvr_loss",
               "epoch_cvr_order_calibrate_loss", "epoch_embedding_regularization_loss",
               "epoch_l2_regularization_loss"):
    assert term in tags, sorted(tags)


def test_second_run_is_served_from_the_cache(pipeline_run):
  states = dict(pipeline_run.second.component_states)
  assert list(states) == COMPONENTS
  # The resolver is a query of ML Metadata, recorded afresh each run.
  assert states.pop(RESOLVER_ID) == "COMPLETE"
  assert set(states.values()) == {"CACHED"}, states
  assert pipeline_run.second.auc == pipeline_run.first.auc
  assert len(os.listdir(os.path.join(pipeline_run.serving_dir, "aitm"))) == 1
