"""The Evaluator's TFMA config (metrics, slices, thresholds) and the funnel metrics,
the latter through TFMA's own Beam evaluation on hand-made predictions."""

import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_specs
from tensorflow_model_analysis.proto import config_pb2

from models import batch_slicing
from models import eval_config as ec
from models import funnel_metrics
from models.config import load_config
from pipeline import configs
from report.evaluation import read_metrics, task_metrics
from report.run_summary import explain_validation

CONFIG = load_config(configs.CONFIG_PATH)
THREE_STEPS = load_config(os.path.join(configs.PROJECT_DIR, "configs",
                                       "aitm_click_cart_buy.config"))
TASK_CLASSES = [metric.__name__ for metric in ec.TASK_METRICS + ec.TASK_PLOTS]
# What the module docstring promises per task: TFMA's own metric names.
TASK_METRIC_NAMES = {"example_count", "auc", "auc_precision_recall", "log_loss", "calibration",
                     "mean_prediction", "mean_label", "calibration_plot", "confusion_matrix_plot"}


def _specs_by_task(eval_config):
  found = {}
  for spec in eval_config.metrics_specs:
    assert len(spec.output_names) == 1, spec
    found[spec.output_names[0]] = spec
  return found


def _auc(spec):
  aucs = [m for m in spec.metrics if m.class_name == "TaskAUC"]
  assert len(aucs) == 1
  return aucs[0]


@pytest.mark.parametrize("config", [CONFIG, THREE_STEPS], ids=["2 towers", "3 towers"])
def test_every_task_gets_every_metric_and_each_later_one_the_funnel_metrics(config):
  tasks = list(config.task_labels)
  specs = _specs_by_task(ec.make_eval_config(config))
  assert list(specs) == tasks
  for i, task in enumerate(tasks):
    classes = [m.class_name for m in specs[task].metrics]
    assert classes[:len(TASK_CLASSES)] == TASK_CLASSES
    assert {m.module for m in specs[task].metrics[:len(TASK_CLASSES)]} == {"models.task_metrics"}
    funnel = [m for m in specs[task].metrics if m.class_name == "FunnelMetrics"]
    if i == 0:
      assert not funnel
    else:
      assert funnel[0].module == "models.funnel_metrics"
      assert json.loads(funnel[0].config) == {"upstream": tasks[i - 1]}


def test_metric_keys_are_the_documented_names():
  """What TFMA will write, per task: the names models.eval_config documents."""
  eval_config = ec.make_eval_config(CONFIG, gate=False)
  names = {}
  for key, _, _ in metric_specs.keys_and_metrics_from_specs(eval_config,
                                                            eval_config.metrics_specs):
    names.setdefault(key.output_name, set()).add(key.name)
  assert names["ctr"] == TASK_METRIC_NAMES
  assert names["cvr"] == names["ctr"] | {funnel_metrics.FUNNEL_METRICS_NAME}
  # The funnel metric's instance emits these three keys (checked on data below).
  assert funnel_metrics.METRIC_NAMES == (
      "order_violation_rate", "conditional_auc", "conditional_example_count")


def test_slices_overall_the_profile_columns_and_user_activity():
  eval_config = ec.make_eval_config(CONFIG)
  keys = [list(s.feature_keys) for s in eval_config.slicing_specs]
  assert keys == [[], ["pid"], ["age_level"], ["new_user_class_level"], ["shopping_level"],
                  ["user_activity"]]


def test_slices_are_the_configured_fields():
  fake = types.SimpleNamespace(slice_fields=("pid", "age_level"), user_id_field=None)
  assert ec.slice_features(fake) == ["pid", "age_level"]  # no user_id_field: no activity


def test_a_config_that_names_no_slices_is_evaluated_overall_only():
  """EasyRec's own config has neither extension field (docs/config_extensions.md)."""
  reference = load_config(os.path.join(configs.PROJECT_DIR, "configs",
                                       "easyrec_aitm_on_taobao.config"))
  eval_config = ec.make_eval_config(reference)
  assert [list(s.feature_keys) for s in eval_config.slicing_specs] == [[]]
  assert not eval_config.model_specs[0].preprocessing_function_names


def test_candidate_computes_the_slice_features_and_a_baseline_is_declared():
  candidate, baseline = ec.make_eval_config(CONFIG).model_specs
  assert candidate.name == ec.CANDIDATE and not candidate.is_baseline
  assert list(candidate.preprocessing_function_names) == ["transformed_features"]
  assert baseline.name == ec.BASELINE and baseline.is_baseline
  assert not baseline.preprocessing_function_names
  for spec in (candidate, baseline):
    assert spec.signature_name == "serving_default"
    assert dict(spec.label_keys) == {"ctr": "clk", "cvr": "buy"}


def test_auc_floor_and_change_threshold_on_the_overall_slice_only():
  specs = _specs_by_task(ec.make_eval_config(CONFIG, min_auc={"cvr": 0.6},
                                             max_auc_drop={"ctr": 0.02}))
  expected = {"ctr": (ec.DEFAULT_MIN_AUC, 0.02), "cvr": (0.6, ec.DEFAULT_MAX_AUC_DROP)}
  for task, (floor, drop) in expected.items():
    per_slice, = _auc(specs[task]).per_slice_thresholds
    assert list(per_slice.slicing_specs) == [config_pb2.SlicingSpec()]
    threshold = per_slice.threshold
    assert threshold.value_threshold.lower_bound.value == pytest.approx(floor)
    assert threshold.change_threshold.absolute.value == pytest.approx(-drop)
    assert threshold.change_threshold.direction == config_pb2.MetricDirection.HIGHER_IS_BETTER
    others = [m for m in specs[task].metrics if m.class_name != "TaskAUC"]
    assert not any(m.per_slice_thresholds or m.HasField("threshold") for m in others)


def test_first_run_without_a_baseline_gates_on_the_floors_alone():
  """What the TFX Evaluator does with the config when the resolver found no blessed
  model (tfx/components/evaluator/executor.py): the baseline spec and every change
  threshold are dropped, the floors stay, so the model is still validated."""
  eval_config = ec.make_eval_config(CONFIG)
  first = tfma.utils.update_eval_config_with_defaults(
      eval_config, has_baseline=False, rubber_stamp=True)
  assert [s.name for s in first.model_specs] == [""]
  thresholds = tfma.metrics.metric_thresholds_from_metrics_specs(first.metrics_specs, first)
  assert {(k.output_name, k.name, k.is_diff) for k in thresholds} == {
      ("ctr", "auc", False), ("cvr", "auc", False)}
  later = tfma.utils.update_eval_config_with_defaults(
      eval_config, has_baseline=True, rubber_stamp=True)
  thresholds = tfma.metrics.metric_thresholds_from_metrics_specs(later.metrics_specs, later)
  # (TFMA's validator skips the keys it also makes for the baseline itself.)
  assert {(k.output_name, k.name, k.is_diff) for k in thresholds
          if k.model_name == "candidate"} == {
      (task, "auc", diff) for task in ("ctr", "cvr") for diff in (False, True)}


def test_compare_mode_has_no_thresholds_and_no_baseline():
  eval_config = ec.make_eval_config(CONFIG, gate=False)
  assert len(eval_config.model_specs) == 1 and not eval_config.model_specs[0].is_baseline
  assert not tfma.metrics.metric_thresholds_from_metrics_specs(eval_config.metrics_specs,
                                                               eval_config)
  # Every metric is still there.
  for spec in eval_config.metrics_specs:
    assert [m.class_name for m in spec.metrics][:len(TASK_CLASSES)] == TASK_CLASSES
  with pytest.raises(ValueError, match="min_auc and max_auc_drop"):
    ec.make_eval_config(CONFIG, min_auc={"ctr": 0.6}, gate=False)


def test_bad_thresholds_name_the_field():
  with pytest.raises(ValueError, match=r"min_auc: unknown tasks \['click'\]"):
    ec.make_eval_config(CONFIG, min_auc={"click": 0.6})
  with pytest.raises(ValueError, match=r"max_auc_drop\['cvr'\]: expected a number >= 0"):
    ec.make_eval_config(CONFIG, max_auc_drop={"cvr": -0.1})


def test_threshold_flags():
  assert ec.thresholds_from_flags(CONFIG, "--min-auc", None) == {}
  assert ec.thresholds_from_flags(CONFIG, "--min-auc", ["cvr=0.7", "0.6"]) == {
      "ctr": 0.6, "cvr": 0.7}
  with pytest.raises(ValueError, match="--max-auc-drop buy=0.1: no task 'buy'"):
    ec.thresholds_from_flags(CONFIG, "--max-auc-drop", ["buy=0.1"])
  with pytest.raises(ValueError, match="--min-auc cvr=high: 'high' is not a number"):
    ec.thresholds_from_flags(CONFIG, "--min-auc", ["cvr=high"])


def test_tfma_builds_the_computations_of_every_metric():
  """The module= metric imports and every class name resolves, as in the Evaluator."""
  eval_config = tfma.utils.update_eval_config_with_defaults(
      ec.make_eval_config(THREE_STEPS), has_baseline=True)
  computations = metric_specs.to_computations(eval_config.metrics_specs, eval_config)
  keys = {(k.model_name, k.output_name, k.name) for c in computations for k in c.keys}
  for model in ("candidate", "baseline"):
    assert (model, "cart", "conditional_auc") in keys
    assert (model, "cvr", "order_violation_rate") in keys
    assert (model, "ctr", "conditional_auc") not in keys


# --- the funnel metrics on hand-made predictions --------------------------------------

# clk, buy, p_ctr, p_cvr, slice. p_cvr / p_ctr among clicks: row 0 .8 (buy), 1 .2,
# 2 .5, 3 .25 (buy), 6 1.125 -> clipped to 1 (buy); rows 4 and 6 have p_cvr > p_ctr.
ROWS = [
    (1, 1, 0.5, 0.4, "a"), (1, 0, 0.5, 0.1, "a"), (1, 0, 0.4, 0.2, "a"), (1, 1, 0.2, 0.05, "a"),
    (0, 0, 0.1, 0.2, "b"), (0, 0, 0.3, 0.01, "b"), (1, 1, 0.8, 0.9, "b"), (0, 0, 0.05, 0.01, "b"),
]


def _write_examples(path, rows, columns):
  with tf.io.TFRecordWriter(path) as writer:
    for row in rows:
      example = tf.train.Example()
      for name, value in zip(columns, row):
        feature = example.features.feature[name]
        if isinstance(value, str):
          feature.bytes_list.value.append(value.encode())
        elif isinstance(value, int):
          feature.int64_list.value.append(value)
        else:
          feature.float_list.value.append(value)
      writer.write(example.SerializeToString())


def _model_free(spec_names, prediction_keys):
  """ModelSpecs that read predictions from example features (no SavedModel)."""
  specs = []
  for name, keys in zip(spec_names, prediction_keys):
    specs.append(config_pb2.ModelSpec(name=name, is_baseline=name == ec.BASELINE,
                                      label_keys={"ctr": "clk", "cvr": "buy"},
                                      prediction_keys=keys))
  return specs


@pytest.fixture(scope="module", params=["TFMA's slicing", "slice groups"])
def funnel_evaluation(tmp_path_factory, request):
  """The rows above through TFMA per example, and through the Evaluator's extractors
  (models.batch_slicing) in groups: the metrics take either."""
  out = str(tmp_path_factory.mktemp("funnel"))
  path = os.path.join(out, "examples.tfrecord")
  _write_examples(path, ROWS, ("clk", "buy", "p_ctr", "p_cvr", "grp"))
  eval_config = config_pb2.EvalConfig(
      model_specs=_model_free([""], [{"ctr": "p_ctr", "cvr": "p_cvr"}]),
      slicing_specs=[config_pb2.SlicingSpec(), config_pb2.SlicingSpec(feature_keys=["grp"])],
      metrics_specs=ec.make_eval_config(CONFIG, gate=False).metrics_specs)
  extractors = (batch_slicing.custom_extractors(None, eval_config)
                if request.param == "slice groups" else None)
  tfma.run_model_analysis(eval_config=eval_config, data_location=path, output_path=out,
                          extractors=extractors)
  return read_metrics(out)


def test_funnel_metrics_by_hand(funnel_evaluation):
  overall = task_metrics(funnel_evaluation[()])["cvr"]
  assert overall["order_violation_rate"] == pytest.approx(2 / 8)
  # Positives .8, .25, 1.0 against negatives .2, .5: 2 + 1 + 2 of 6 pairs.
  assert overall["conditional_auc"] == pytest.approx(5 / 6)
  assert overall["conditional_example_count"] == 5
  slice_a = task_metrics(funnel_evaluation[(("grp", "a"),)])["cvr"]
  assert slice_a["order_violation_rate"] == 0
  assert slice_a["conditional_auc"] == pytest.approx(3 / 4)
  slice_b = task_metrics(funnel_evaluation[(("grp", "b"),)])["cvr"]
  assert slice_b["order_violation_rate"] == pytest.approx(2 / 4)
  assert np.isnan(slice_b["conditional_auc"])  # one click, a purchase: nothing to rank
  assert slice_b["conditional_example_count"] == 1
  # The first tower has the per-task metrics only.
  ctr = task_metrics(funnel_evaluation[()])["ctr"]
  assert "conditional_auc" not in ctr and ctr["example_count"] == 8
  assert ctr["mean_label"] == pytest.approx(5 / 8)
  assert ctr["calibration"] == pytest.approx(np.mean([r[2] for r in ROWS]) / (5 / 8))
  p, y = np.array([r[2] for r in ROWS]), np.array([r[0] for r in ROWS])
  log_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
  assert ctr["log_loss"] == pytest.approx(log_loss, rel=1e-4)


def test_histogram_auc_is_the_mann_whitney_statistic():
  rng = np.random.default_rng(3)
  scores = rng.random(500)
  labels = rng.random(500) < scores
  bins = (scores * funnel_metrics.NUM_BINS).astype(int)
  auc = funnel_metrics.histogram_auc(
      np.bincount(bins[labels], minlength=funnel_metrics.NUM_BINS),
      np.bincount(bins[~labels], minlength=funnel_metrics.NUM_BINS))
  pos, neg = scores[labels], scores[~labels]
  exact = (np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])) / (
      len(pos) * len(neg))
  assert auc == pytest.approx(exact, abs=1e-3)


def test_funnel_metric_needs_its_upstream():
  with pytest.raises(ValueError, match="'upstream'"):
    funnel_metrics.FunnelMetrics()


# --- the gate's reasons, from TFMA's own validator ---------------------------------

def _validate(eval_config, values):
  """TFMA's validator (as the Evaluator runs it) on overall metrics given as
  (model, task, metric) -> value; diffs are candidate - baseline."""
  eval_config = tfma.utils.update_eval_config_with_defaults(eval_config, has_baseline=True)
  thresholds = tfma.metrics.metric_thresholds_from_metrics_specs(eval_config.metrics_specs,
                                                                 eval_config)
  metrics = {}
  for key in thresholds:
    if key.model_name != ec.CANDIDATE:
      continue
    base = key._replace(model_name=ec.BASELINE, is_diff=False)
    candidate = key._replace(is_diff=False)
    metrics[candidate] = values[ec.CANDIDATE, key.output_name, key.name]
    metrics[base] = values[ec.BASELINE, key.output_name, key.name]
    if key.is_diff:
      metrics[key] = metrics[candidate] - metrics[base]
  result = tfma.evaluators.metrics_validator.validate_metrics(((), metrics), eval_config)
  overall = {(m.model_name, m.output_name, m.name, m.is_diff): v for m, v in metrics.items()}
  return result, overall


def test_reasons_name_task_metric_and_numbers():
  result, overall = _validate(
      ec.make_eval_config(CONFIG, min_auc={"ctr": 0.7, "cvr": 0.5}),
      {("candidate", "ctr", "auc"): 0.6912, ("baseline", "ctr", "auc"): 0.6950,
       ("candidate", "cvr", "auc"): 0.512, ("baseline", "cvr", "auc"): 0.683})
  assert not result.validation_ok
  assert sorted(explain_validation(result, overall)) == [
      "not blessed: ctr AUC 0.691 is below the floor 0.7",
      "not blessed: cvr AUC 0.512 is 0.171 below the serving model's 0.683 "
      "(allowed drop 0.010)",
  ]


def test_within_the_allowed_drop_and_above_the_floors_is_blessed():
  result, overall = _validate(
      ec.make_eval_config(CONFIG),
      {("candidate", "ctr", "auc"): 0.655, ("baseline", "ctr", "auc"): 0.660,
       ("candidate", "cvr", "auc"): 0.83, ("baseline", "cvr", "auc"): 0.80})
  assert result.validation_ok and explain_validation(result, overall) == []
