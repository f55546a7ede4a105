"""The Evaluator's per-task metrics on slice groups (models.task_metrics,
models.batch_slicing) against TFMA's stock per-example metrics and exact values,
on generated predictions shaped like a funnel's: skewed slices, rows without the
sliced feature, a purchase tower whose probabilities sit around 1e-4."""

import os

import numpy as np
import pytest
from google.protobuf import json_format
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.extractors import slice_key_extractor, unbatch_extractor
from tensorflow_model_analysis.proto import config_pb2
from tensorflow_model_analysis.slicer import slicer_lib

from models import batch_slicing, eval_config as ec, task_metrics
from models.config import load_config
from pipeline import configs
from report.evaluation import read_metrics, task_metrics as metrics_of

CONFIG = load_config(configs.CONFIG_PATH)
ROWS = 3_000
# Today's TFMA classes per task, as the Evaluator configured them before
# models.task_metrics: the reference the new metrics are held to.
STOCK = ["ExampleCount", "AUC", "AUCPrecisionRecall", "BinaryCrossentropy", "Calibration",
         "MeanPrediction", "MeanLabel", "CalibrationPlot", "ConfusionMatrixPlot"]


def exact_auc(labels, scores):
  """P(score of a positive > a negative's), ties half: from average ranks."""
  order = np.argsort(scores, kind="stable")
  ranks = np.empty(len(scores))
  sorted_scores = scores[order]
  _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
  ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
  positives = labels > 0.5
  n_pos, n_neg = positives.sum(), (~positives).sum()
  return (ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def exact_pr_auc(labels, scores):
  """TFMA's interpolated PR AUC (confusion_matrix_metrics.AUC._metric_value) with every
  distinct score as a threshold, ascending."""
  thresholds = np.unique(scores)
  tp = np.array([labels[scores >= t].sum() for t in thresholds] + [0.0])
  fp = np.array([(1 - labels)[scores >= t].sum() for t in thresholds] + [0.0])
  dtp, p = tp[:-1] - tp[1:], tp + fp
  dp = p[:-1] - p[1:]
  slope = np.divide(dtp, dp, out=np.zeros_like(dtp), where=dp > 0)
  intercept = tp[1:] - slope * p[1:]
  ratio = np.where((p[:-1] > 0) & (p[1:] > 0), p[:-1] / np.maximum(p[1:], 1e-300), 1.0)
  return np.nansum(slope * (dtp + intercept * np.log(ratio)) / tp[0])


def _rows(seed=5):
  rng = np.random.default_rng(seed)
  segment = rng.zipf(1.6, ROWS).clip(max=6).astype(str)        # skewed slice sizes
  p_ctr = rng.beta(1.2, 20, ROWS).astype(np.float32)
  p_cvr = (p_ctr * np.exp(rng.normal(-6.5, 1.2, ROWS))).astype(np.float32)  # ~1e-4
  clk = (rng.random(ROWS) < p_ctr * 3).astype(int)
  buy = (clk * (rng.random(ROWS) < 0.25 + 400 * p_cvr)).astype(int)
  level = rng.integers(0, 4, ROWS)
  has_level = rng.random(ROWS) > 0.2                          # some rows lack it
  return dict(segment=segment, p_ctr=p_ctr, p_cvr=p_cvr, clk=clk, buy=buy, level=level,
              has_level=has_level)


def _write(path, rows):
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(ROWS):
      example = tf.train.Example()
      f = example.features.feature
      f["segment"].bytes_list.value.append(rows["segment"][i].encode())
      f["p_ctr"].float_list.value.append(rows["p_ctr"][i])
      f["p_cvr"].float_list.value.append(rows["p_cvr"][i])
      f["clk"].int64_list.value.append(rows["clk"][i])
      f["buy"].int64_list.value.append(rows["buy"][i])
      if rows["has_level"][i]:
        f["level"].int64_list.value.append(rows["level"][i])
      writer.write(example.SerializeToString())


def _eval_config(metrics_specs):
  return config_pb2.EvalConfig(
      model_specs=[config_pb2.ModelSpec(label_keys={"ctr": "clk", "cvr": "buy"},
                                        prediction_keys={"ctr": "p_ctr", "cvr": "p_cvr"})],
      slicing_specs=[config_pb2.SlicingSpec(), config_pb2.SlicingSpec(feature_keys=["segment"]),
                     config_pb2.SlicingSpec(feature_keys=["level"])],
      metrics_specs=metrics_specs)


def _stock_specs():
  specs = []
  for i, task in enumerate(("ctr", "cvr")):
    metrics = [config_pb2.MetricConfig(
        class_name=name, config='{"name": "log_loss"}' if name == "BinaryCrossentropy" else "")
        for name in STOCK]
    specs.append(config_pb2.MetricsSpec(output_names=[task], metrics=metrics))
  return specs


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory):
  """The same rows evaluated twice: TFMA's stock metrics on its per-example slicing, and
  the Evaluator's metrics on slice groups (its own extractors)."""
  root = tmp_path_factory.mktemp("task_metrics")
  rows = _rows()
  path = str(root / "examples.tfrecord")
  _write(path, rows)
  stock, ours = str(root / "stock"), str(root / "ours")
  tfma.run_model_analysis(eval_config=_eval_config(_stock_specs()), data_location=path,
                          output_path=stock)
  ours_config = _eval_config(ec.make_eval_config(CONFIG, gate=False).metrics_specs)
  tfma.run_model_analysis(eval_config=ours_config, data_location=path, output_path=ours,
                          extractors=batch_slicing.custom_extractors(None, ours_config))
  return rows, stock, ours


def _members(rows, slice_key):
  mask = np.ones(ROWS, bool)
  for feature, value in slice_key:
    if feature == "segment":
      mask &= rows["segment"] == value
    else:
      mask &= rows["has_level"] & (rows["level"] == value)
  return mask


def test_same_slices_and_counts_as_tfma(evaluations):
  rows, stock, ours = evaluations
  stock_metrics, our_metrics = read_metrics(stock), read_metrics(ours)
  assert set(our_metrics) == set(stock_metrics)
  assert len(our_metrics) == 1 + len(set(rows["segment"])) + 4
  for slice_key, values in our_metrics.items():
    mask = _members(rows, slice_key)
    for task, label in (("ctr", "clk"), ("cvr", "buy")):
      ours_task = metrics_of(values)[task]
      assert ours_task["example_count"] == mask.sum() == metrics_of(
          stock_metrics[slice_key])[task]["example_count"]
      assert ours_task["mean_label"] == pytest.approx(rows[label][mask].mean())


def test_means_calibration_and_log_loss_match_tfma_and_the_definitions(evaluations):
  rows, stock, ours = evaluations
  stock_metrics, our_metrics = read_metrics(stock), read_metrics(ours)
  for slice_key, values in our_metrics.items():
    mask = _members(rows, slice_key)
    for task, label in (("ctr", "clk"), ("cvr", "buy")):
      mine, theirs = metrics_of(values)[task], metrics_of(stock_metrics[slice_key])[task]
      for name in ("mean_prediction", "calibration"):
        if np.isnan(theirs[name]):
          assert np.isnan(mine[name])
        else:
          assert mine[name] == pytest.approx(theirs[name], rel=1e-6), (slice_key, task, name)
      p = np.clip(rows[f"p_{task}"][mask].astype(np.float64), 1e-7, 1 - 1e-7)
      y = rows[label][mask]
      assert mine["log_loss"] == pytest.approx(
          -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)), rel=1e-9)
      # Keras' (today's) adds its epsilon inside the log as well: a hair apart.
      assert mine["log_loss"] == pytest.approx(theirs["log_loss"], rel=0.03)


def test_aucs_are_within_a_thousandth_of_exact_on_every_slice(evaluations):
  rows, stock, ours = evaluations
  stock_metrics, our_metrics = read_metrics(stock), read_metrics(ours)
  worst_stock = 0.0
  for slice_key, values in our_metrics.items():
    mask = _members(rows, slice_key)
    for task, label in (("ctr", "clk"), ("cvr", "buy")):
      y, p = rows[label][mask], rows[f"p_{task}"][mask].astype(np.float64)
      if y.min() == y.max():
        assert np.isnan(metrics_of(values)[task]["auc"])
        continue
      exact = exact_auc(y, p)
      assert metrics_of(values)[task]["auc"] == pytest.approx(exact, abs=1e-3), slice_key
      worst_stock = max(worst_stock,
                        abs(metrics_of(stock_metrics[slice_key])[task]["auc"] - exact))
      assert metrics_of(values)[task]["auc_precision_recall"] == pytest.approx(
          exact_pr_auc(y.astype(float), p), abs=3e-3), slice_key
  # Why the bins are in logit space: TFMA's 10,000 equal thresholds lump the purchase
  # tower's ~1e-4 probabilities together.
  assert worst_stock > 0.005


def test_plots_are_tfmas_own(evaluations):
  _, stock, ours = evaluations

  def plots(path):
    found = {}
    for record in tfma.load_plots(path):
      for entry in record.plot_keys_and_values:
        found[record.slice_key.SerializeToString(), str(entry.key)] = entry.value
    return found

  stock_plots, our_plots = plots(stock), plots(ours)
  assert stock_plots.keys() == our_plots.keys()
  assert len(our_plots) == 2 * len(read_metrics(ours))   # per slice and output
  for key, value in our_plots.items():
    assert value.HasField("calibration_histogram_buckets"), key
    assert value.HasField("confusion_matrix_at_thresholds"), key
    # As dicts: NaN (a precision with no predicted positives) is then equal to itself.
    assert json_format.MessageToDict(value) == json_format.MessageToDict(stock_plots[key]), key


def test_pr_auc_is_tfmas_interpolation_on_every_distinct_score():
  rng = np.random.default_rng(2)
  scores = rng.random(400)
  labels = (rng.random(400) < scores).astype(float)
  statistics = task_metrics.TaskStatistics()
  statistics.add(labels, scores)
  assert task_metrics.pr_auc(statistics.positives, statistics.negatives) == pytest.approx(
      exact_pr_auc(labels, scores), abs=1e-3)


def test_statistics_merge_is_adding_the_rows():
  rng = np.random.default_rng(4)
  labels, scores = (rng.random(300) < 0.3).astype(float), rng.random(300)
  whole, first, second = (task_metrics.TaskStatistics() for _ in range(3))
  whole.add(labels, scores)
  first.add(labels[:100], scores[:100])
  second.add(labels[100:], scores[100:])
  first.merge(second)
  for name in task_metrics.TaskStatistics.__slots__:
    np.testing.assert_allclose(getattr(first, name), getattr(whole, name), rtol=1e-12)


def test_buckets_follow_tfmas_histogram_rule():
  from tensorflow_model_analysis.metrics import calibration_histogram
  combiner = calibration_histogram._CalibrationHistogramCombiner(  # the rule's owner
      key=None, eval_config=None, aggregation_type=None, class_weights=None,
      example_weighted=False, num_buckets=task_metrics.NUM_BUCKETS, left=0.0, right=1.0,
      prediction_based_bucketing=True, fractional_labels=True)
  edges = np.array([-0.5, 0.0, 1e-9, 1e-4, 1e-4 + 1e-12, 0.12345, 0.99995, 1.0, 1.5],
                   np.float32).astype(np.float64)
  assert list(task_metrics.tfma_buckets(edges)) == [combiner._bucket_index(p) for p in edges]


def test_logit_bins_keep_tiny_probabilities_apart():
  bins = task_metrics.logit_bins(np.array([1e-6, 1.002e-6, 1e-4, 1.002e-4, 0.5, 1.0, np.nan]))
  assert bins[0] < bins[1] < bins[2] < bins[3] < bins[4] < bins[5] == task_metrics.NUM_LOGIT_BINS - 1
  assert bins[6] == 0


def test_labels_outside_zero_one_are_refused():
  combiner = task_metrics._StatisticsCombiner(
      tfma.metrics.MetricKey(name="_task_statistics", output_name="cvr"))
  element = tfma.metrics.StandardMetricInputs(
      labels={"cvr": np.array([0.0, 2.0])}, predictions={"cvr": np.array([0.1, 0.2])})
  with pytest.raises(ValueError, match=r"cvr: labels must be in \[0, 1\]"):
    combiner.add_input(combiner.create_accumulator(), element)


# --- slice groups against TFMA's own slicer -------------------------------------------

def test_slice_groups_are_tfmas_slices_of_each_row():
  """A batch with a dense feature, a feature some rows lack (VarLenTensorValue), a row
  with two values, and a transformed feature that shadows the raw one of its name."""
  batch = {
      tfma.constants.FEATURES_KEY: {
          "pid": np.array([[b"a"], [b"b"], [b"a"], [b"c"]], dtype=object),
          "tags": tfma.types.VarLenTensorValue(
              values=np.array([b"x", b"y", b"x"], dtype=object),
              indices=np.array([[0, 0], [0, 1], [2, 0]]), dense_shape=np.array([4, 2])),
          "activity": np.array([[b"raw"]] * 4, dtype=object),
      },
      tfma.constants.TRANSFORMED_FEATURES_KEY: {"activity": np.array([1, 0, 1, 2])},
  }
  features = ["pid", "tags", "activity"]
  groups = {key: sorted(rows.tolist())
            for key, rows in batch_slicing.slice_groups(batch, features, [""])}
  specs = [slicer_lib.SingleSliceSpec()] + [slicer_lib.SingleSliceSpec(columns=[f])
                                            for f in features]
  expected = {}
  for row in range(4):
    raw = {"pid": batch["features"]["pid"][row],
           "tags": np.array([v for (r, _), v in zip(batch["features"]["tags"].indices,
                                                    batch["features"]["tags"].values)
                             if r == row], dtype=object),
           "activity": batch["features"]["activity"][row]}
    transformed = {"activity": batch["transformed_features"]["activity"][row:row + 1]}
    for key in slicer_lib.get_slices_for_features_dicts([transformed], raw, specs):
      expected.setdefault(key, []).append(row)
  assert groups == expected
  assert groups[(("activity", 1),)] == [0, 2]


def test_slice_groups_extract_has_only_its_rows():
  batch = {
      tfma.constants.FEATURES_KEY: {"pid": np.array([[b"a"], [b"b"], [b"a"]], dtype=object)},
      tfma.constants.LABELS_KEY: {"ctr": np.array([[1], [0], [0]])},
      tfma.constants.PREDICTIONS_KEY: {"ctr": np.array([0.9, 0.1, 0.2], np.float32)},
  }
  groups = list(batch_slicing._SliceGroupsFn(["pid"], [""]).process(batch))
  by_key = {g[tfma.constants.SLICE_KEY_TYPES_KEY][0]: g for g in groups}
  assert set(by_key) == {(), (("pid", "a"),), (("pid", "b"),)}
  a = by_key[(("pid", "a"),)]
  np.testing.assert_array_equal(a[tfma.constants.PREDICTIONS_KEY]["ctr"],
                                np.array([0.9, 0.2], np.float32))
  np.testing.assert_array_equal(a[tfma.constants.LABELS_KEY]["ctr"], [[1], [0]])
  assert tfma.constants.FEATURES_KEY not in a   # the metrics don't read them


def test_the_evaluator_extractors_replace_only_tfmas_slicing():
  eval_config = _eval_config(ec.make_eval_config(CONFIG, gate=False).metrics_specs)
  stages = [e.stage_name for e in batch_slicing.custom_extractors(None, eval_config)]
  assert unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME not in stages
  assert stages[-1] == slice_key_extractor.SLICE_KEY_EXTRACTOR_STAGE_NAME
  assert stages[0] == "ExtractFeatures"


@pytest.mark.parametrize("spec, message", [
    (config_pb2.SlicingSpec(feature_keys=["a", "b"]), "one feature per spec"),
    (config_pb2.SlicingSpec(feature_values={"a": "1"}), "one feature per spec"),
    (config_pb2.SlicingSpec(slice_keys_sql="SELECT 1"), "one feature per spec"),
])
def test_slicing_the_extractors_cannot_do_is_refused(spec, message):
  with pytest.raises(ValueError, match=message):
    batch_slicing.sliced_features(config_pb2.EvalConfig(slicing_specs=[spec]))


# --- on the test session's pipeline run: its Evaluator against today's TFMA metrics ---

def _eval_split(pipeline_run):
  import glob
  (split,) = glob.glob(os.path.join(pipeline_run.pipeline_root, "FileBasedExampleGen",
                                    "examples", "*", "Split-eval"))
  return os.path.join(split, "*")


def _slice_columns(pipeline_run, data_location):
  """The eval split's labels, predictions and slice features, through the pushed
  model's signatures (the model the Evaluator evaluated)."""
  model = tf.saved_model.load(pipeline_run.first.pushed_dir)
  strings = {name: tf.io.FixedLenFeature([], tf.string, b"") for name in CONFIG.slice_fields}
  spec = dict(strings, clk=tf.io.FixedLenFeature([], tf.int64), buy=tf.io.FixedLenFeature(
      [], tf.int64))
  columns = {}
  files = tf.io.gfile.glob(data_location)
  for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096):
    outputs = dict(model.signatures["serving_default"](examples=batch))
    outputs.update(model.signatures["transformed_features"](examples=batch))
    outputs.update(tf.io.parse_example(batch, spec))
    for name, value in outputs.items():
      columns.setdefault(name, []).append(value.numpy())
  return {name: np.concatenate(values) for name, values in columns.items()}


def test_the_pipelines_evaluator_keeps_todays_metrics(pipeline_run, tmp_path):
  """The session run's evaluation (metrics on slice groups) against TFMA's stock
  per-example metrics on the same eval split and model, slice by slice, and its AUCs
  against the exact values."""
  data_location = _eval_split(pipeline_run)
  stock_config = ec.make_eval_config(CONFIG, gate=False)
  for spec, stock_spec in zip(stock_config.metrics_specs, _stock_specs()):
    funnel = [m for m in spec.metrics if m.class_name == "FunnelMetrics"]
    del spec.metrics[:]
    spec.metrics.extend(list(stock_spec.metrics) + funnel)
  model = tfma.default_eval_shared_model(pipeline_run.first.pushed_dir, eval_config=stock_config)
  tfma.run_model_analysis(eval_shared_model=model, eval_config=stock_config,
                          data_location=data_location, output_path=str(tmp_path))
  stock = read_metrics(str(tmp_path))
  pipeline = read_metrics(pipeline_run.first.evaluation_uri)
  assert set(pipeline) == set(stock) and len(pipeline) > 10
  columns = _slice_columns(pipeline_run, data_location)
  for slice_key, values in pipeline.items():
    mask = np.ones(len(columns["ctr"]), bool)
    for feature, value in slice_key:
      mask &= columns[feature] == (value.encode() if isinstance(value, str) else value)
    for task, label in (("ctr", "clk"), ("cvr", "buy")):
      mine, theirs = metrics_of(values)[task], metrics_of(stock[slice_key])[task]
      assert mine["example_count"] == theirs["example_count"] == mask.sum()
      for name in ("mean_label", "mean_prediction", "calibration", "order_violation_rate",
                   "conditional_auc", "conditional_example_count"):
        if name in theirs:
          assert mine[name] == pytest.approx(theirs[name], rel=1e-5, nan_ok=True), (
              slice_key, task, name)
      assert mine["log_loss"] == pytest.approx(theirs["log_loss"], rel=0.03)
      y = columns[label][mask]
      if y.min() < y.max():
        assert mine["auc"] == pytest.approx(exact_auc(y, columns[task][mask]), abs=1e-3), (
            slice_key, task)
