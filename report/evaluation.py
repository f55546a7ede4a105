"""The one reader of TFMA's output, and what the page shows as plain data classes.

`report_data` reads the evaluation an `EvaluationRecord` points at (`load_metrics`,
`load_plots`, `load_validation_result`, the stored EvalConfig) and the Trainer's
training_summary.json; the run summary reads the same evaluation through `read_metrics`,
`task_metrics` and `failed_thresholds`. TFMA is imported inside the functions that use it.

Generic on purpose: every scalar metric the evaluation holds becomes a column, every slice
a row, whatever the EvalConfig asks for. Metrics with an empty output name (computed on
all of the model's outputs, e.g. funnel metrics) get a task of their own.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

from models.evaluation_checks import evaluation_warnings, label_rates_from_statistics
from models.gate_thresholds import BASELINE, CANDIDATE
from report.metadata import EvaluationRecord

# Slices are tuples of (feature, value); the whole eval split is the empty tuple.
Slice = Tuple[Tuple[str, object], ...]
OVERALL: Slice = ()
# (model name, output name, metric name, is_diff) -> value
MetricValues = Dict[Tuple[str, str, str, bool], float]

# Plots the page draws, as TFMA stores them (CalibrationPlot / ConfusionMatrixPlot).
# (lower, upper, examples, sum of labels, sum of predictions) per histogram bucket.
CalibrationBucket = Tuple[float, float, float, float, float]
# (threshold, true positives, false positives, true negatives, false negatives).
ConfusionPoint = Tuple[float, float, float, float, float]


# --------------------------------------------------------------------------- plain data


@dataclasses.dataclass
class ModelInfo:
  """A model the page shows: its artifact uri and, from its training_summary.json, its
  name and training facts."""
  uri: str
  name: Optional[str] = None                 # training_summary.json "model_name"
  training: Dict[str, object] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Threshold:
  """One threshold of the EvalConfig and how it fared."""
  task: str
  metric: str
  slice: Slice
  kind: str                                   # "value" or "change"
  rule: str                                   # e.g. ">= 0.55", "change >= -0.005"
  failed: bool = False
  value: Optional[float] = None               # the metric (or its change) when it failed
  skipped: bool = False                       # a change threshold with no baseline to compare
  # A failed one's bound: the floor or ceiling the value crossed, or the allowed absolute
  # change; None when TFMA's message alone says why.
  limit: Optional[float] = None
  message: str = ""                           # TFMA's own words for the failure


@dataclasses.dataclass
class Verdict:
  """Whether the Evaluator blessed the candidate, and why: the thresholds checked, those
  that failed, and notes."""
  blessed: Optional[bool]                     # None: not validated (no thresholds)
  baseline_compared: bool
  rubber_stamp: bool = False                  # change thresholds skipped: no baseline
  thresholds: List[Threshold] = dataclasses.field(default_factory=list)
  failures: List[Threshold] = dataclasses.field(default_factory=list)
  notes: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class SliceRow:
  """One slice of a task: the candidate's metric values and, with a baseline, the
  baseline's values and the changes (candidate minus baseline)."""
  slice: Slice
  values: Dict[str, float]                    # metric -> candidate value
  baseline: Dict[str, float] = dataclasses.field(default_factory=dict)
  diff: Dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TaskResult:
  """One task's slices and overall-slice plot data; name "" holds the metrics computed
  on all outputs."""
  name: str                                   # output name; "" = all outputs (funnel)
  rows: List[SliceRow]
  label: str = ""                             # the label column, from the EvalConfig
  # role (candidate / baseline) -> overall-slice plot data; absent = not in the evaluation.
  calibration: Dict[str, List[CalibrationBucket]] = dataclasses.field(default_factory=dict)
  confusion: Dict[str, List[ConfusionPoint]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ReportData:
  """Everything the page shows about one evaluation: the run, the models, the verdict
  and each task's results."""
  pipeline_name: str
  run_id: str
  evaluated_at: Optional[float]               # seconds since the epoch
  evaluation_uri: str
  candidate: ModelInfo
  baseline: Optional[ModelInfo]
  verdict: Verdict
  tasks: List[TaskResult]
  slice_features: List[str] = dataclasses.field(default_factory=list)
  cached: bool = False                        # the Evaluator was served from the cache
  notes: List[str] = dataclasses.field(default_factory=list)
  # signs of a broken split or leakage (models/evaluation_checks.py), shown first
  warnings: List[str] = dataclasses.field(default_factory=list)


# --------------------------------------------------------------------------- TFMA -> data


def _slice_from_proto(slice_key) -> Slice:
  parts = []
  for key in slice_key.single_slice_keys:
    kind = key.WhichOneof("kind")
    value = getattr(key, kind) if kind else ""
    if isinstance(value, bytes):
      value = value.decode("utf-8", "replace")
    parts.append((key.column, value))
  return tuple(parts)


def _scalar(value) -> Optional[float]:
  kind = value.WhichOneof("type")
  if kind == "double_value":
    return value.double_value.value
  if kind == "bounded_value":
    return value.bounded_value.value.value
  if kind == "t_distribution_value":
    return value.t_distribution_value.unsampled_value.value
  if kind == "array_value" and len(value.array_value.float64_values) == 1:
    return value.array_value.float64_values[0]
  return None


def _metric_name(key) -> str:
  name = key.name
  if key.HasField("sub_key"):
    sub = key.sub_key
    for field in ("class_id", "k", "top_k"):
      if sub.HasField(field):
        name += f"@{field}={getattr(sub, field).value}"
  if key.HasField("example_weighted") and key.example_weighted.value:
    name += " (weighted)"
  return name


def _metric_entries(metrics):
  """(slice, metric key, value) for every scalar metric of TFMA's MetricsForSlice
  records; cross-slice comparisons are left out."""
  for record in metrics:
    if record.HasField("cross_slice_key"):
      continue
    slice_ = _slice_from_proto(record.slice_key)
    for kv in record.metric_keys_and_values:
      value = _scalar(kv.value)
      if value is not None:
        yield slice_, kv.key, value


def read_metrics(evaluation_uri: str) -> Dict[Slice, MetricValues]:
  """slice (() overall, (('pid', '430548_1007'),) ...) -> the scalar metrics of every
  model in the evaluation, keyed (model name, output name, metric name, is_diff).

  Model names: '' when one model was evaluated, else CANDIDATE and BASELINE.
  """
  import tensorflow_model_analysis as tfma
  found: Dict[Slice, MetricValues] = {}
  for slice_, key, value in _metric_entries(tfma.load_metrics(evaluation_uri)):
    found.setdefault(slice_, {})[
        key.model_name, key.output_name, _metric_name(key), key.is_diff] = value
  return found


def task_metrics(values: MetricValues, model: Optional[str] = None,
                 order: Sequence[str] = ()) -> Dict[str, Dict[str, float]]:
  """task -> metric name -> value, of the evaluated model (`model` None) or the named one;
  tasks in `order` first, in that order."""
  found: Dict[str, Dict[str, float]] = {task: {} for task in order}
  for (model_name, task, name, is_diff), value in sorted(values.items()):
    wanted = model_name != BASELINE if model is None else model_name == model
    if task and wanted and not is_diff:
      found.setdefault(task, {})[name] = value
  return {task: values for task, values in found.items() if values}


def load_eval_config(evaluation_uri: str):
  """The EvalConfig stored with an evaluation (an empty one when there is none)."""
  from tensorflow_model_analysis.proto import config_pb2
  from tensorflow_model_analysis.writers import eval_config_writer
  return eval_config_writer.load_eval_run(evaluation_uri)[0] or config_pb2.EvalConfig()


def load_validation(evaluation_uri: str):
  """TFMA's ValidationResult of an evaluation; None when nothing was validated."""
  import tensorflow_model_analysis as tfma
  try:
    return tfma.load_validation_result(evaluation_uri)
  except Exception:  # noqa: BLE001 - no (single) validations file: nothing was validated
    return None


def evaluated_tasks(eval_config) -> List[str]:
  """The task towers of an evaluation in funnel order (its metrics specs' order)."""
  tasks = []
  for spec in eval_config.metrics_specs:
    tasks += [name for name in spec.output_names if name not in tasks]
  return tasks


def task_order(eval_config) -> List[str]:
  """The tasks in funnel order (the metrics specs'), then any other label key."""
  order = evaluated_tasks(eval_config)
  return order + [task for spec in eval_config.model_specs for task in sorted(spec.label_keys)
                  if task not in order]


def task_labels(eval_config) -> Dict[str, str]:
  """task -> its label column, from the evaluated (not the baseline) model's spec."""
  labels = {}
  for spec in eval_config.model_specs:
    if not spec.is_baseline:
      labels.update(spec.label_keys)
  return labels


def split_statistics(statistics_uri: str) -> Dict[str, object]:
  """split (train, eval) -> StatisticsGen's DatasetFeatureStatisticsList of it."""
  import tensorflow_data_validation as tfdv
  statistics = {}
  for split in ("train", "eval"):
    path = os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb")
    if os.path.exists(path):
      statistics[split] = tfdv.load_stats_binary(path)
  return statistics


def _roles(eval_config) -> Dict[str, str]:
  """model name in the metric keys -> candidate / baseline."""
  roles = {}
  for spec in eval_config.model_specs:
    roles[spec.name] = BASELINE if spec.is_baseline else CANDIDATE
  return roles or {"": CANDIDATE}


def task_results(metrics, plots, eval_config) -> List[TaskResult]:
  """MetricsForSlice / PlotsForSlice protos -> one TaskResult per output name."""
  roles = _roles(eval_config)
  order = task_order(eval_config)
  labels = task_labels(eval_config)
  rows: Dict[str, Dict[Slice, SliceRow]] = {}
  for slice_, key, value in _metric_entries(metrics):
    role = roles.get(key.model_name)
    if role is None:
      continue
    row = rows.setdefault(key.output_name, {}).setdefault(slice_, SliceRow(slice_, {}))
    name = _metric_name(key)
    if key.is_diff:
      row.diff[name] = value
    elif role == BASELINE:
      row.baseline[name] = value
    else:
      row.values[name] = value
  tasks = {name: TaskResult(name, [r for r in by_slice.values() if r.values],
                           labels.get(name, ""))
           for name, by_slice in rows.items()}
  for record in plots:
    if record.HasField("cross_slice_key") or _slice_from_proto(record.slice_key):
      continue
    for kv in record.plot_keys_and_values:
      role = roles.get(kv.key.model_name)
      task = tasks.get(kv.key.output_name)
      if role is None or task is None:
        continue
      buckets = kv.value.calibration_histogram_buckets.buckets
      if buckets:
        task.calibration[role] = [
            (b.lower_threshold_inclusive, b.upper_threshold_exclusive,
             b.num_weighted_examples.value, b.total_weighted_label.value,
             b.total_weighted_refined_prediction.value) for b in buckets]
      matrices = kv.value.confusion_matrix_at_thresholds.matrices
      if matrices:
        task.confusion[role] = [(m.threshold, m.true_positives, m.false_positives,
                                 m.true_negatives, m.false_negatives) for m in matrices]
  rank = {name: i for i, name in enumerate(order)}
  return sorted((t for t in tasks.values() if t.rows),
                key=lambda t: (t.name == "", rank.get(t.name, len(rank)), t.name))


def slice_features(eval_config) -> List[str]:
  """The features the EvalConfig's slicing specs name, each once, in first-seen order."""
  names = []
  for spec in eval_config.slicing_specs:
    for name in list(spec.feature_keys) + sorted(spec.feature_values):
      if name not in names:
        names.append(name)
  return names


def _rule(threshold) -> str:
  from tensorflow_model_analysis.proto import config_pb2
  parts = []
  if isinstance(threshold, config_pb2.GenericValueThreshold):
    if threshold.HasField("lower_bound"):
      parts.append(f">= {threshold.lower_bound.value:g}")
    if threshold.HasField("upper_bound"):
      parts.append(f"<= {threshold.upper_bound.value:g}")
    return " and ".join(parts) or "any value"
  sign = {config_pb2.MetricDirection.HIGHER_IS_BETTER: ">=",
          config_pb2.MetricDirection.LOWER_IS_BETTER: "<="}.get(threshold.direction, "?")
  if threshold.HasField("absolute"):
    parts.append(f"change {sign} {threshold.absolute.value:+g}")
  if threshold.HasField("relative"):
    parts.append(f"relative change {sign} {threshold.relative.value:+g}")
  return " and ".join(parts) or "any change"


def _spec_slice(spec) -> Slice:
  if spec is None:
    return OVERALL
  return tuple((name, "*") for name in spec.feature_keys) + tuple(
      sorted(spec.feature_values.items()))


def failed_thresholds(validation) -> List[Threshold]:
  """The thresholds a TFMA ValidationResult records as failed, in its order."""
  failed = []
  for per_slice in validation.metric_validations_per_slice:
    slice_ = _slice_from_proto(per_slice.slice_key)
    failed += [_failed_threshold(slice_, failure) for failure in per_slice.failures]
  return failed


def _failed_threshold(slice_: Slice, failure) -> Threshold:
  key, value = failure.metric_key, _scalar(failure.metric_value)
  if failure.metric_threshold.HasField("change_threshold"):
    kind, threshold = "change", failure.metric_threshold.change_threshold
    limit = abs(threshold.absolute.value) if threshold.HasField("absolute") else None
  else:
    kind, threshold = "value", failure.metric_threshold.value_threshold
    limit = _crossed_bound(threshold, value)
  return Threshold(key.output_name, key.name, slice_, kind, _rule(threshold), True, value,
                   limit=limit, message=failure.message)


def _crossed_bound(bounds, value: Optional[float]) -> Optional[float]:
  """The lower or upper bound of a GenericValueThreshold that `value` is beyond."""
  if value is None:
    return None
  if bounds.HasField("lower_bound") and value < bounds.lower_bound.value:
    return bounds.lower_bound.value
  if bounds.HasField("upper_bound") and value > bounds.upper_bound.value:
    return bounds.upper_bound.value
  return None


def verdict(validation, eval_config, blessed: Optional[bool], has_baseline: bool,
            configured_config=None) -> Verdict:
  """What the Evaluator decided and why, from TFMA's ValidationResult and the EvalConfig.

  `configured_config`: the EvalConfig the Evaluator was given (ML Metadata keeps it); the
  one stored with the evaluation has its change thresholds removed when there was no
  baseline, so this one tells which thresholds were skipped."""
  import tensorflow_model_analysis as tfma
  from tensorflow_model_analysis.proto import config_pb2
  roles = _roles(eval_config)
  result = Verdict(blessed=blessed, baseline_compared=has_baseline)
  failures = []
  if validation is not None:
    result.rubber_stamp = bool(validation.rubber_stamp)
    failures = failed_thresholds(validation)
    result.notes += [failure.message for failure in failures if failure.message]
    for spec in validation.missing_slices:
      result.notes.append(f"a threshold's slice had no examples: {_spec_slice(spec) or 'Overall'}")
    if validation.missing_thresholds:
      result.notes.append("some metrics with thresholds were not computed")
    if blessed is None and validation.metric_validations_per_slice:
      result.blessed = validation.validation_ok
  result.failures = failures
  source = configured_config if configured_config is not None else eval_config
  try:
    configured = tfma.metrics.metric_thresholds_from_metrics_specs(
        source.metrics_specs, eval_config=source)
  except Exception as e:  # noqa: BLE001 - a custom metric that can't load: list failures only
    result.notes.append(f"could not list the configured thresholds: {e}")
    configured = {}
  failed = {(t.task, t.metric, t.slice, t.kind) for t in failures}
  for key, specs in configured.items():
    if roles.get(key.model_name, CANDIDATE) != CANDIDATE:
      continue
    for spec, threshold in specs:
      kind = "change" if isinstance(threshold, config_pb2.GenericChangeThreshold) else "value"
      slice_ = _spec_slice(spec)
      entry = Threshold(key.output_name or "", key.name, slice_, kind, _rule(threshold),
                        (key.output_name or "", key.name, slice_, kind) in failed,
                        skipped=kind == "change" and not has_baseline)
      if entry not in result.thresholds:
        result.thresholds.append(entry)
  if any(t.skipped for t in result.thresholds):
    result.rubber_stamp = True
  return result


def _model_info(uri: Optional[str], run_uri: Optional[str], fallback: str) -> ModelInfo:
  info = ModelInfo(uri or fallback)
  if run_uri:
    path = os.path.join(run_uri, "training_summary.json")
    if os.path.exists(path):
      with open(path) as f:
        summary = json.load(f)
      info.name = summary.get("model_name")
      info.training = summary
  return info


def _configured_eval_config(text: Optional[str]):
  if not text:
    return None
  from google.protobuf import json_format
  from tensorflow_model_analysis.proto import config_pb2
  try:
    return json_format.Parse(text, config_pb2.EvalConfig(), ignore_unknown_fields=True)
  except json_format.ParseError:
    return None


def _warnings(tasks: List[TaskResult], eval_config, statistics_uri: Optional[str]) -> List[str]:
  """The evaluation's warnings: an eval AUC below chance, train and eval label rates
  far apart (from the statistics of the evaluated examples, when ML Metadata has them)."""
  auc = {}
  for task in tasks:
    overall = next((row for row in task.rows if row.slice == OVERALL), None)
    if task.name and overall is not None and "auc" in overall.values:
      auc[task.name] = overall.values["auc"]
  rates = {}
  labels = [task.label for task in tasks if task.label]
  if statistics_uri and labels:
    rates = label_rates_from_statistics(split_statistics(statistics_uri), labels)
  return evaluation_warnings(auc, {task.name: task.label for task in tasks if task.label},
                             rates)


def report_data(record: EvaluationRecord) -> ReportData:
  """Reads the evaluation `record` points at with TFMA."""
  import tensorflow_model_analysis as tfma
  from tensorflow_model_analysis.writers import eval_config_writer

  uri = record.evaluation_uri
  eval_config, _, _, locations = eval_config_writer.load_eval_run(uri)
  roles = _roles(eval_config)
  location = {roles.get(name, CANDIDATE): path for name, path in (locations or {}).items()}
  validation = load_validation(uri)
  has_baseline = bool(record.baseline_uri) or BASELINE in location
  tasks = task_results(tfma.load_metrics(uri), tfma.load_plots(uri), eval_config)
  baseline = (_model_info(record.baseline_uri or location.get(BASELINE),
                          record.baseline_run_uri, "unknown") if has_baseline else None)
  return ReportData(
      pipeline_name=record.pipeline_name, run_id=record.run_id,
      evaluated_at=record.evaluated_at, evaluation_uri=uri,
      candidate=_model_info(record.model_uri or location.get(CANDIDATE), record.model_run_uri,
                            "unknown"),
      baseline=baseline,
      verdict=verdict(validation, eval_config, record.blessed, has_baseline,
                      _configured_eval_config(record.eval_config_json)),
      tasks=tasks, slice_features=slice_features(eval_config),
      cached=record.state == "CACHED",
      warnings=_warnings(tasks, eval_config, record.statistics_uri))
