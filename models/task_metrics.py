"""The per-task TFMA metrics of the Evaluator, accumulated with numpy over groups of rows.

TFMA's built-in AUC, calibration and plot metrics loop in Python over every
example of every slice: with 22 slices and two towers that is about 100 eval rows
a second per worker. Here each metric is handed one group of rows per batch and
slice (models.batch_slicing) and one shared accumulator per (model, output) adds
the group with a few numpy calls. The keys are the ones TFMA's own metrics write,
so thresholds, the diffs against the baseline, TFMA's writer and loaders and the
report are unchanged:

| metric class (this module) | key | value |
| --- | --- | --- |
| TaskExampleCount | `example_count` | rows |
| TaskMeanLabel, TaskMeanPrediction | `mean_label`, `mean_prediction` | means |
| TaskCalibration | `calibration` | sum of predictions / sum of labels (NaN without positives) |
| TaskLogLoss | `log_loss` | mean binary cross-entropy, p clipped to [1e-7, 1 - 1e-7] as Keras does |
| TaskAUC | `auc` | ROC AUC, ties within a bin counted half (Mann-Whitney) |
| TaskAUCPrecisionRecall | `auc_precision_recall` | PR AUC, TFMA's interpolation between thresholds |
| TaskCalibrationPlot | `calibration_plot` | TFMA's CalibrationPlot, computed by TFMA |
| TaskConfusionMatrixPlot | `confusion_matrix_plot` | TFMA's ConfusionMatrixPlot, computed by TFMA |

The AUCs come from NUM_LOGIT_BINS equal bins of logit(p) over +-LOGIT_RANGE, not
from TFMA's 10,000 thresholds equally spaced in [0, 1]: a purchase tower's
predictions are around 1e-4, so most of its rows share TFMA's first few buckets,
and TFMA's AUC came out 0.003 below the exact value on the demo's eval split; these
bins keep it within 0.0001. The plots are TFMA's own derived computations, fed
the 10,000-bucket calibration histogram they expect, filled here by TFMA's
bucket rule. Labels are 0/1 (or fractions in [0, 1]); rows are unweighted.
"""

import functools
from typing import Any, Dict, Iterable, List

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import calibration_histogram
from tensorflow_model_analysis.metrics import calibration_plot
from tensorflow_model_analysis.metrics import confusion_matrix_plot
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.metrics import metric_util

from models.funnel_metrics import histogram_auc

# AUC bins: 32,768 over logit(p) in [-28, 28] (p from 7e-13 to 1 - 7e-13), each
# 0.0017 wide, i.e. a relative change of p of 0.17%.
NUM_LOGIT_BINS = 32_768
LOGIT_RANGE = 28.0
# TFMA's calibration histogram (the plots rebin it): buckets of p in [0, 1] plus an
# underflow and an overflow bucket.
NUM_BUCKETS = calibration_histogram.DEFAULT_NUM_BUCKETS
LOG_LOSS_EPSILON = 1e-7   # Keras' backend epsilon, which BinaryCrossentropy clips with
_STATISTICS_NAME = "_task_statistics"   # private: TFMA doesn't write it


class TaskStatistics:
  """What every task metric is derived from, for one (slice, model, output)."""

  __slots__ = ("examples", "labels", "predictions", "log_loss", "positives", "negatives",
               "bucket_labels", "bucket_predictions", "bucket_examples")

  def __init__(self):
    self.examples = 0
    self.labels = 0.0
    self.predictions = 0.0
    self.log_loss = 0.0
    self.positives = np.zeros(NUM_LOGIT_BINS)      # label mass per logit bin
    self.negatives = np.zeros(NUM_LOGIT_BINS)      # (1 - label) mass per logit bin
    self.bucket_labels = np.zeros(NUM_BUCKETS + 2)  # TFMA's histogram, by bucket index
    self.bucket_predictions = np.zeros(NUM_BUCKETS + 2)
    self.bucket_examples = np.zeros(NUM_BUCKETS + 2)

  def add(self, labels: np.ndarray, predictions: np.ndarray):
    """Adds rows: float64 labels in [0, 1] and their predicted probabilities."""
    self.examples += labels.size
    self.labels += float(labels.sum())
    self.predictions += float(predictions.sum())
    clipped = np.clip(predictions, LOG_LOSS_EPSILON, 1 - LOG_LOSS_EPSILON)
    self.log_loss -= float(np.sum(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped)))
    bins = logit_bins(predictions)
    np.add.at(self.positives, bins, labels)
    np.add.at(self.negatives, bins, 1 - labels)
    buckets = tfma_buckets(predictions)
    np.add.at(self.bucket_labels, buckets, labels)
    np.add.at(self.bucket_predictions, buckets, predictions)
    np.add.at(self.bucket_examples, buckets, 1.0)

  def merge(self, other: "TaskStatistics"):
    """Adds `other`'s rows."""
    for name in self.__slots__:
      setattr(self, name, getattr(self, name) + getattr(other, name))

  def tfma_histogram(self) -> calibration_histogram.Histogram:
    """TFMA's calibration histogram of these rows: its non-empty buckets, in order."""
    return [calibration_histogram.Bucket(int(i), float(self.bucket_labels[i]),
                                         float(self.bucket_predictions[i]),
                                         float(self.bucket_examples[i]))
            for i in np.flatnonzero(self.bucket_examples)]


def logit_bins(predictions: np.ndarray) -> np.ndarray:
  """The AUC bin of each probability: equal bins of logit(p) over +-LOGIT_RANGE, the
  ends open (NaN goes to the lowest bin)."""
  p = np.clip(predictions, 1e-15, 1 - 1e-15)
  logits = np.log(p) - np.log1p(-p)
  bins = np.floor((logits + LOGIT_RANGE) * (NUM_LOGIT_BINS / (2 * LOGIT_RANGE)))
  return np.clip(np.nan_to_num(bins, nan=0.0), 0, NUM_LOGIT_BINS - 1).astype(np.int64)


def tfma_buckets(predictions: np.ndarray) -> np.ndarray:
  """The bucket of each prediction in TFMA's calibration histogram over [0, 1], by
  its rule: int(p * NUM_BUCKETS + 1), 0 below, NUM_BUCKETS + 1 from 1 up."""
  index = predictions * NUM_BUCKETS + 1
  return np.where(index < 0, 0, np.minimum(np.trunc(index), NUM_BUCKETS + 1)).astype(np.int64)


def pr_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
  """Area under the precision-recall curve over the bins' lower edges as thresholds,
  interpolated as TFMA's AUCPrecisionRecall does (Davis & Goadrich)."""
  tp = np.append(np.cumsum(positives[::-1])[::-1], 0.0)   # mass at or above each edge
  fp = np.append(np.cumsum(negatives[::-1])[::-1], 0.0)
  fn = tp[0] - tp
  dtp = tp[:-1] - tp[1:]
  p = tp + fp
  dp = p[:-1] - p[1:]
  with np.errstate(divide="ignore", invalid="ignore"):
    slope = dtp / np.maximum(dp, 0)
    intercept = tp[1:] - slope * p[1:]
    ratio = np.where((p[:-1] > 0) & (p[1:] > 0), p[:-1] / np.maximum(p[1:], 0), 1.0)
    increments = slope * (dtp + intercept * np.log(ratio)) / np.maximum(tp[1:] + fn[1:], 0)
  return float(np.nansum(increments)) if tp[0] > 0 else float("nan")


def _nan_ratio(numerator: float, denominator: float) -> float:
  return numerator / denominator if denominator else float("nan")


# Metric name -> its value from a TaskStatistics.
_VALUES = {
    "example_count": lambda s: s.examples,
    "mean_label": lambda s: _nan_ratio(s.labels, s.examples),
    "mean_prediction": lambda s: _nan_ratio(s.predictions, s.examples),
    "calibration": lambda s: _nan_ratio(s.predictions, s.labels),
    "log_loss": lambda s: _nan_ratio(s.log_loss, s.examples),
    "auc": lambda s: histogram_auc(s.positives, s.negatives),
    "auc_precision_recall": lambda s: pr_auc(s.positives, s.negatives),
}


class _StatisticsCombiner(beam.CombineFn):
  """StandardMetricInputs (one row or a group of rows) -> the TaskStatistics of one
  (model, output)."""

  def __init__(self, key: metric_types.MetricKey):
    self._key = key

  def create_accumulator(self) -> TaskStatistics:
    """Statistics of no rows."""
    return TaskStatistics()

  def add_input(self, accumulator: TaskStatistics,
                element: metric_types.StandardMetricInputs) -> TaskStatistics:
    """Adds the input's rows of this output: its labels and predictions."""
    model, output = self._key.model_name or None, self._key.output_name or None
    labels = _column(element.get_labels(model, output), "labels", self._key)
    predictions = _column(element.get_predictions(model, output), "predictions", self._key)
    if labels.size != predictions.size:
      raise ValueError(f"{self._key.output_name}: {labels.size} labels for "
                       f"{predictions.size} predictions")
    if labels.size and (labels.min() < 0 or labels.max() > 1):
      raise ValueError(f"{self._key.output_name}: labels must be in [0, 1] (a binary task), "
                       f"got values from {labels.min()} to {labels.max()}")
    accumulator.add(labels, predictions)
    return accumulator

  def merge_accumulators(self, accumulators: Iterable[TaskStatistics]) -> TaskStatistics:
    """The statistics of all `accumulators`' rows, added into the first."""
    accumulators = iter(accumulators)
    result = next(accumulators)
    for other in accumulators:
      result.merge(other)
    return result

  def extract_output(self, accumulator: TaskStatistics) -> Dict[metric_types.MetricKey, Any]:
    """{the private statistics key: the statistics}, for the derived metrics."""
    return {self._key: accumulator}


def _column(value, what: str, key: metric_types.MetricKey) -> np.ndarray:
  if value is None:
    raise ValueError(f"no {what} of output '{key.output_name}' in the extracts")
  return np.asarray(value, np.float64).reshape(-1)


def _statistics(model_name: str, output_name: str, example_weighted: bool
                ) -> metric_types.MetricComputation:
  """The shared accumulation of one (model, output); TFMA runs it once however many
  metrics derive from it (it de-duplicates computations by combiner and key)."""
  key = metric_types.MetricKey(name=_STATISTICS_NAME, model_name=model_name,
                               output_name=output_name, example_weighted=example_weighted)
  return metric_types.MetricComputation(keys=[key], preprocessors=None,
                                        combiner=_StatisticsCombiner(key))


def _check_plain(name: str, sub_key, aggregation_type, class_weights, example_weighted):
  if sub_key or aggregation_type or class_weights or example_weighted:
    raise ValueError(f"{name}: computed per binary output, unweighted; sub keys, "
                     "aggregation, class weights and example weights are not supported")


def _derive(metric_name: str, key: metric_types.MetricKey,
            statistics_key: metric_types.MetricKey,
            metrics: Dict[metric_types.MetricKey, Any]) -> Dict[metric_types.MetricKey, Any]:
  return {key: _VALUES[metric_name](metrics[statistics_key])}


class _TaskMetric(metric_types.Metric):
  """A value per (model, output) derived from the shared TaskStatistics; `NAME` is
  its key's name, the name TFMA's own metric of this kind writes."""

  NAME = ""

  def __init__(self, name: str = ""):
    super().__init__(metric_util.merge_per_key_computations(self._computations),
                     name=name or self.NAME)

  def _computations(self, name: str = "", eval_config=None, model_name: str = "",
                    output_name: str = "", sub_key=None, aggregation_type=None,
                    class_weights=None, example_weighted: bool = False
                    ) -> metric_types.MetricComputations:
    _check_plain(type(self).__name__, sub_key, aggregation_type, class_weights,
                 example_weighted)
    statistics = _statistics(model_name, output_name, example_weighted)
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                 example_weighted=example_weighted)
    return [statistics, metric_types.DerivedMetricComputation(
        keys=[key], result=functools.partial(_derive, self.NAME, key, statistics.keys[0]))]


class TaskExampleCount(_TaskMetric):
  """`example_count`: the rows of the output."""
  NAME = "example_count"


class TaskMeanLabel(_TaskMetric):
  """`mean_label`: the mean label."""
  NAME = "mean_label"


class TaskMeanPrediction(_TaskMetric):
  """`mean_prediction`: the mean predicted probability."""
  NAME = "mean_prediction"


class TaskCalibration(_TaskMetric):
  """`calibration`: sum of predictions / sum of labels (1 is calibrated)."""
  NAME = "calibration"


class TaskLogLoss(_TaskMetric):
  """`log_loss`: mean binary cross-entropy, probabilities clipped as Keras does."""
  NAME = "log_loss"


class TaskAUC(_TaskMetric):
  """`auc`: area under the ROC curve, from the logit bins."""
  NAME = "auc"


class TaskAUCPrecisionRecall(_TaskMetric):
  """`auc_precision_recall`: area under the precision-recall curve, from the logit bins."""
  NAME = "auc_precision_recall"


def _histogram(histogram_key: metric_types.MetricKey, statistics_key: metric_types.MetricKey,
               metrics: Dict[metric_types.MetricKey, Any]) -> Dict[metric_types.MetricKey, Any]:
  return {histogram_key: metrics[statistics_key].tfma_histogram()}


class _TaskPlot(metric_types.Metric):
  """TFMA's plot `PLOT`, its calibration histogram filled from the TaskStatistics:
  TFMA's derived computations run as they are; only the per-example histogram
  combiner they start from is replaced."""

  PLOT = metric_types.Metric

  def __init__(self, name: str = ""):
    super().__init__(metric_util.merge_per_key_computations(self._computations),
                     name=name or self.PLOT().name)

  def _computations(self, name: str = "", eval_config=None, model_name: str = "",
                    output_name: str = "", sub_key=None, aggregation_type=None,
                    class_weights=None, example_weighted: bool = False
                    ) -> metric_types.MetricComputations:
    _check_plain(type(self).__name__, sub_key, aggregation_type, class_weights,
                 example_weighted)
    statistics = _statistics(model_name, output_name, example_weighted)
    result: List[Any] = [statistics]
    for computation in self.PLOT(name=name).computations(
        eval_config=eval_config, model_names=[model_name], output_names=[output_name],
        example_weighted=example_weighted):
      if isinstance(computation, metric_types.MetricComputation):
        (histogram_key,) = computation.keys   # TFMA's histogram: filled from the statistics
        result.append(metric_types.DerivedMetricComputation(
            keys=[histogram_key],
            result=functools.partial(_histogram, histogram_key, statistics.keys[0])))
      else:
        result.append(computation)
    return result


class TaskCalibrationPlot(_TaskPlot):
  """`calibration_plot`: TFMA's CalibrationPlot (1,000 prediction buckets)."""
  PLOT = calibration_plot.CalibrationPlot


class TaskConfusionMatrixPlot(_TaskPlot):
  """`confusion_matrix_plot`: TFMA's ConfusionMatrixPlot (1,000 thresholds)."""
  PLOT = confusion_matrix_plot.ConfusionMatrixPlot


TASK_METRIC_CLASSES = (TaskExampleCount, TaskAUC, TaskAUCPrecisionRecall, TaskLogLoss,
                       TaskCalibration, TaskMeanPrediction, TaskMeanLabel)
TASK_PLOT_CLASSES = (TaskCalibrationPlot, TaskConfusionMatrixPlot)
for _metric in TASK_METRIC_CLASSES + TASK_PLOT_CLASSES:
  metric_types.register_metric(_metric)
