"""`aitm run`'s summary: what a pipeline run produced, read back through report/'s
readers of ML Metadata (report.metadata) and TFMA (report.evaluation), in a few lines."""

import dataclasses
import json
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

from models.evaluation_checks import evaluation_warnings, label_rates_from_statistics
from models.gate_thresholds import BASELINE
from report.evaluation import (OVERALL, MetricValues, Slice, Threshold, evaluated_tasks,
                               failed_thresholds, load_eval_config, load_validation,
                               read_metrics, slice_features, split_statistics, task_labels,
                               task_metrics)
from report.formatting import metric_label
from report.metadata import RunRecord, blessed, custom_property, read_run

# pipeline.pipeline.BULK_INFERRER_ID, which the summary reads without loading TFX.
_BULK_INFERRER = "BulkInferrer"
# The metrics of the summary's table, in its column order.
TABLE_METRICS = ("auc", "auc_precision_recall", "log_loss", "calibration",
                 "order_violation_rate", "conditional_auc")


@dataclasses.dataclass
class RunSummary:
  """What a pipeline run did and what its model scored, as `aitm run` prints it."""
  run_id: str
  component_states: Dict[str, str]          # node id -> COMPLETE / CACHED / FAILED ...
  component_seconds: Dict[str, float]        # node id -> wall time recorded in MLMD
  rows: Dict[str, int]                       # split -> examples
  auc: Dict[str, float]                      # task -> overall eval AUC
  blessed: Optional[bool]                    # None: evaluated without the gate (compare)
  pushed_dir: Optional[str]
  evaluation_uri: Optional[str] = None
  model_run_uri: Optional[str] = None        # TensorBoard logs, training_summary.json
  # task -> metric name -> value on the whole eval split (the evaluated model's)
  metrics: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
  baseline_auc: Dict[str, float] = dataclasses.field(default_factory=dict)  # empty: none
  slices: Dict[str, int] = dataclasses.field(default_factory=dict)  # feature -> its slices
  not_blessed: List[str] = dataclasses.field(default_factory=list)  # why, in plain words
  # label -> split -> (positive rate, examples), from StatisticsGen
  label_rates: Dict[str, Dict[str, Tuple[float, int]]] = dataclasses.field(default_factory=dict)
  # signs of a broken split or leakage (models/evaluation_checks.py)
  warnings: List[str] = dataclasses.field(default_factory=list)
  # The infra validator's verdict (None: the run has none) and what it checked or
  # why it refused (components/local_infra_validator.py's `reason`).
  infra_blessed: Optional[bool] = None
  infra_reason: str = ""
  # BulkInferrer's scored candidates (--bulk-infer); None: none scored or no BulkInferrer
  inferences_dir: Optional[str] = None

  def table(self) -> str:
    """The summary as the lines `aitm run` prints after the run."""
    lines = [f"{'rows read':<22}" + ", ".join(f"{s} {n:,}" for s, n in self.rows.items())]
    if self.label_rates:
      lines.append(f"{'label rates':<22}" + "; ".join(
          f"{label} " + ", ".join(f"{split} {rate:.2%}" for split, (rate, _) in by_split.items())
          for label, by_split in self.label_rates.items()))
    if self.warnings:
      lines.append("WARNING: these numbers may not measure the model:")
      lines += [f"  - {warning}" for warning in self.warnings]
    lines += metrics_table(self.metrics)
    if any("calibration" in m for m in self.metrics.values()):
      lines.append("  calib. is 1 by construction: the Trainer fits each task's intercept on "
                   "this split (held out: bench/quality.py)")
    if self.baseline_auc:
      lines.append(f"{'baseline AUC':<22}" + ", ".join(
          f"{task} {auc:.4f}" for task, auc in self.baseline_auc.items()))
    if self.slices:
      lines.append(f"{'slices':<22}" + ", ".join(f"{f} {n}" for f, n in self.slices.items()))
    if self.blessed is not None:
      lines.append(f"{'blessed':<22}{'yes' if self.blessed else 'no'}")
      lines += [f"  {reason}" for reason in self.not_blessed]
      if self.infra_blessed is not None:
        lines.append(f"{'infra validated':<22}{'yes' if self.infra_blessed else 'no'}"
                     + (f": {self.infra_reason}" if self.infra_reason else ""))
      lines.append(f"{'pushed to':<22}{self.pushed_dir or 'nothing pushed'}")
    if _BULK_INFERRER in self.component_states:
      lines.append(f"{'inferences':<22}" + (
          f"{self.inferences_dir} (candidates' tf.Examples with the scores, gzipped "
          "TFRecords)" if self.inferences_dir else
          "none: BulkInferrer scores with a blessed model only"))
    return "\n".join(lines)


def metrics_table(metrics: Dict[str, Dict[str, float]]) -> List[str]:
  """Task x metric on the whole eval split, one line per task; a blank for a metric a
  task doesn't have (the first tower has no funnel metrics)."""
  if not metrics:
    return []
  columns = [name for name in TABLE_METRICS if any(name in m for m in metrics.values())]
  lines = [f"{'eval, overall':<18}" + "".join(f"{metric_label(c, short=True):>11}" for c in columns)
           + f"{'examples':>11}"]
  for task, values in metrics.items():
    cells = []
    for column in columns:
      value = values.get(column)
      if value is None or math.isnan(value):
        cells.append(f"{'-':>11}")
      elif column == "order_violation_rate":
        cells.append(f"{value:>11.2%}")
      else:
        cells.append(f"{value:>11.4f}")
    count = values.get("example_count")
    lines.append(f"{'  ' + task:<18}" + "".join(cells)
                 + (f"{int(count):>11,}" if count is not None else ""))
  return lines


def summarize(metadata_path: str, labels: Sequence[str] = ()) -> RunSummary:
  """Reads the newest pipeline run recorded in the SQLite ML Metadata at metadata_path.
  `labels`: the label columns, whose train and eval rates are compared (default: the
  evaluation's, when the run has one)."""
  run = read_run(metadata_path)
  statistics = _statistics(run)
  model_run = run.output("Trainer", "ModelRun")
  blessing = run.output("Evaluator", "ModelBlessing")
  summary = RunSummary(
      run.run_id, run.states, run.seconds,
      {split: int(stats.datasets[0].num_examples) for split, stats in statistics.items()},
      {}, blessed(blessing) if blessing is not None else None, _pushed_dir(run), None,
      model_run.uri if model_run is not None else None)
  infra = run.output("InfraValidator", "InfraBlessing")  # pipeline.INFRA_VALIDATOR_ID
  if infra is not None:
    summary.infra_blessed = blessed(infra)
    summary.infra_reason = custom_property(infra, "reason") or ""
  evaluation = run.output("Evaluator", "ModelEvaluation")
  labels_of = (_read_evaluation(summary, evaluation.uri)
               if evaluation is not None else {})
  summary.label_rates = label_rates_from_statistics(
      statistics, list(labels) or list(labels_of.values()))
  summary.warnings = evaluation_warnings(summary.auc, labels_of, summary.label_rates)
  summary.inferences_dir = _inferences_dir(run)
  return summary


def _statistics(run: RunRecord) -> Dict[str, object]:
  """split -> the run's StatisticsGen statistics of it; none without StatisticsGen."""
  stats = run.output("StatisticsGen", "ExampleStatistics")
  return split_statistics(stats.uri) if stats is not None else {}


def _pushed_dir(run: RunRecord) -> Optional[str]:
  pushed = run.output("Pusher", "PushedModel")
  if pushed is None or not custom_property(pushed, "pushed"):
    return None
  return custom_property(pushed, "pushed_destination")


def _inferences_dir(run: RunRecord) -> Optional[str]:
  """The split directory of BulkInferrer's output examples; None when the run has no
  BulkInferrer or it inferred nothing (an unblessed model: no split was written)."""
  examples = run.output(_BULK_INFERRER, "Examples")
  split_names = examples.properties.get("split_names") if examples is not None else None
  names = json.loads(split_names.string_value or "[]") if split_names is not None else []
  return os.path.join(examples.uri, f"Split-{names[0]}") if names else None


def _read_evaluation(summary: RunSummary, evaluation_uri: str) -> Dict[str, str]:
  """Fills in the summary's evaluation fields; returns task -> label column, in funnel
  order."""
  eval_config = load_eval_config(evaluation_uri)
  by_slice = read_metrics(evaluation_uri)
  overall = by_slice.get(OVERALL, {})
  tasks = evaluated_tasks(eval_config)
  summary.evaluation_uri = evaluation_uri
  summary.metrics = task_metrics(overall, order=tasks)
  summary.auc = _auc(summary.metrics)
  summary.baseline_auc = _auc(task_metrics(overall, BASELINE, tasks))
  summary.slices = slice_counts(by_slice, slice_features(eval_config))
  if summary.blessed is False:
    validation = load_validation(evaluation_uri)
    if validation is not None:
      summary.not_blessed = explain_validation(validation, overall, evaluation_uri)
  labels = task_labels(eval_config)
  return {task: labels[task] for task in tasks if task in labels}


def _auc(metrics: Dict[str, Dict[str, float]]) -> Dict[str, float]:
  return {task: m["auc"] for task, m in metrics.items() if "auc" in m}


def slice_counts(by_slice: Dict[Slice, MetricValues], order: Sequence[str] = ()
                 ) -> Dict[str, int]:
  """Slice feature -> the number of its values that got metrics; `order` first."""
  counts: Dict[str, int] = {feature: 0 for feature in order}
  for key in by_slice:
    if len(key) == 1:
      counts[key[0][0]] = counts.get(key[0][0], 0) + 1
  return counts


def explain_validation(result, overall: MetricValues, where_to_look: str = "") -> List[str]:
  """A TFMA ValidationResult in plain words, one line per failing task and metric, e.g.
  "not blessed: cvr AUC 0.512 is 0.171 below the serving model's 0.683 (allowed drop
  0.010)" or "not blessed: ctr AUC 0.531 is below the floor 0.55". `overall` gives the
  candidate's and the baseline's values a change threshold compares."""
  if result.validation_ok:
    return []
  reasons = [_failure_words(failure, overall) for failure in failed_thresholds(result)]
  for missing in result.missing_slices:
    reasons.append("not blessed: no examples in the gated slice "
                   + (", ".join(missing.feature_keys) or "overall"))
  if result.missing_thresholds:
    reasons.append("not blessed: a gated metric was not computed (TFMA missing_thresholds)")
  if not reasons:
    reasons.append("not blessed: TFMA's validation failed without naming a metric"
                   + (f" (see {where_to_look})" if where_to_look else ""))
  return reasons


def _failure_words(failure: Threshold, overall: MetricValues) -> str:
  """One failed threshold as a line of the summary."""
  what = f"{failure.task} {metric_label(failure.metric)}"
  where = ("" if not failure.slice else
           " on " + ", ".join(f"{f}={v}" for f, v in failure.slice))
  value, limit = failure.value, failure.limit
  if limit is None or value is None:
    return f"not blessed: {what}{where}: {failure.message}"
  if failure.kind == "change":
    candidate = next((v for (m, o, n, d), v in overall.items()
                      if m != BASELINE and o == failure.task and n == failure.metric
                      and not d), math.nan)
    baseline = overall.get((BASELINE, failure.task, failure.metric, False), math.nan)
    worse = "below" if value < 0 else "above"
    return (f"not blessed: {what} {candidate:.3f}{where} is {abs(value):.3f} {worse} the "
            f"serving model's {baseline:.3f} (allowed drop {limit:.3f})")
  if value < limit:
    return f"not blessed: {what} {value:.3f}{where} is below the floor {limit:g}"
  return f"not blessed: {what} {value:.3f}{where} is above the ceiling {limit:g}"
