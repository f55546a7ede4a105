"""What a pipeline run produced, read back from ML Metadata and its artifacts."""

import dataclasses
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_model_analysis.writers.eval_config_writer import load_eval_run

from models.eval_config import BASELINE
from models.evaluation_checks import evaluation_warnings, label_rates_from_statistics

_STATE_NAMES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}

# Metric name -> the column heading of the summary's table, in table order.
TABLE_METRICS = {
    "auc": "AUC", "auc_precision_recall": "AUC-PR", "log_loss": "log loss",
    "calibration": "calib.", "order_violation_rate": "violations",
    "conditional_auc": "cond. AUC",
}
# How a reason names a metric.
_METRIC_WORDS = {"auc": "AUC", "auc_precision_recall": "AUC-PR", "log_loss": "log loss"}

# (model name, output name, metric name, is_diff) -> value
MetricValues = Dict[Tuple[str, str, str, bool], float]


@dataclasses.dataclass
class RunSummary:
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

  def table(self) -> str:
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
      lines.append(f"{'pushed to':<22}{self.pushed_dir or 'nothing pushed'}")
    return "\n".join(lines)


def metrics_table(metrics: Dict[str, Dict[str, float]]) -> List[str]:
  """Task x metric on the whole eval split, one line per task; a blank for a metric a
  task doesn't have (the first tower has no funnel metrics)."""
  if not metrics:
    return []
  columns = [name for name in TABLE_METRICS if any(name in m for m in metrics.values())]
  lines = [f"{'eval, overall':<18}" + "".join(f"{TABLE_METRICS[c]:>11}" for c in columns)
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


def _latest_run(store):
  runs = store.get_contexts_by_type("pipeline_run")
  if not runs:
    raise RuntimeError("no pipeline run is recorded in this ML Metadata store")
  return max(runs, key=lambda c: c.id)


def _node_ids(store, executions) -> Dict[int, str]:
  """execution id -> component id ('StatisticsGen'), from TFX's node contexts."""
  node_type = store.get_context_type("node").id
  found = {}
  for execution in executions:
    names = [c.name for c in store.get_contexts_by_execution(execution.id)
             if c.type_id == node_type]
    found[execution.id] = names[0].split(".", 1)[-1] if names else str(execution.id)
  return found


def _outputs(store, node_of: Dict[int, str]
             ) -> Dict[Tuple[str, str], List[metadata_store_pb2.Artifact]]:
  """(node id, artifact type) -> output artifacts, cached ones included.

  An artifact can be the output of several nodes: the baseline resolver
  outputs the Model a Trainer produced."""
  events = store.get_events_by_execution_ids(list(node_of))
  producers: Dict[int, List[str]] = {}
  for e in events:
    if e.type == metadata_store_pb2.Event.OUTPUT:
      producers.setdefault(e.artifact_id, []).append(node_of[e.execution_id])
  types = {t.id: t.name for t in store.get_artifact_types()}
  found: Dict[Tuple[str, str], List[metadata_store_pb2.Artifact]] = {}
  for artifact in store.get_artifacts_by_id(sorted(producers)):
    for node in producers[artifact.id]:
      found.setdefault((node, types[artifact.type_id]), []).append(artifact)
  return found


def _custom(artifact, key):
  value = artifact.custom_properties.get(key)
  if value is None:
    return None
  return value.int_value if value.HasField("int_value") else value.string_value


def summarize(metadata_path: str, labels: Sequence[str] = ()) -> RunSummary:
  """Reads the newest pipeline run recorded in the SQLite ML Metadata at metadata_path.
  `labels`: the label columns, whose train and eval rates are compared (default: the
  evaluation's, when the run has one)."""
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = metadata_path
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  store = metadata_store.MetadataStore(config)
  run = _latest_run(store)
  executions = store.get_executions_by_context(run.id)
  node_of = _node_ids(store, executions)
  states, seconds = {}, {}
  for execution in sorted(executions, key=lambda e: e.id):
    node = node_of[execution.id]
    states[node] = _STATE_NAMES.get(execution.last_known_state,
                                    str(execution.last_known_state))
    seconds[node] = (execution.last_update_time_since_epoch
                     - execution.create_time_since_epoch) / 1000
  outputs = _outputs(store, node_of)

  rows, statistics = {}, {}
  for stats in outputs.get(("StatisticsGen", "ExampleStatistics"), [])[-1:]:
    for split in ("train", "eval"):
      path = os.path.join(stats.uri, f"Split-{split}", "FeatureStats.pb")
      if os.path.exists(path):
        statistics[split] = tfdv.load_stats_binary(path)
        rows[split] = int(statistics[split].datasets[0].num_examples)

  model_runs = outputs.get(("Trainer", "ModelRun"), [])[-1:]
  blessing = outputs.get(("Evaluator", "ModelBlessing"), [])[-1:]
  # No `blessed` property: the Evaluator had no thresholds (aitm compare).
  blessed = (bool(_custom(blessing[0], "blessed"))
             if blessing and "blessed" in blessing[0].custom_properties else None)
  pushed_dir = None
  for pushed in outputs.get(("Pusher", "PushedModel"), [])[-1:]:
    if _custom(pushed, "pushed"):
      pushed_dir = _custom(pushed, "pushed_destination")
  summary = RunSummary(run.name, states, seconds, rows, {}, blessed, pushed_dir, None,
                       model_runs[0].uri if model_runs else None)
  for evaluation in outputs.get(("Evaluator", "ModelEvaluation"), [])[-1:]:
    summary.evaluation_uri = evaluation.uri
    by_slice = read_metrics(evaluation.uri)
    overall = by_slice.get((), {})
    tasks = evaluated_tasks(evaluation.uri)
    summary.metrics = task_metrics(overall, order=tasks)
    summary.auc = {task: m["auc"] for task, m in summary.metrics.items() if "auc" in m}
    summary.baseline_auc = {task: m["auc"] for task, m in
                            task_metrics(overall, BASELINE, tasks).items() if "auc" in m}
    summary.slices = slice_counts(by_slice, _slice_order(evaluation.uri))
    if blessed is False:
      summary.not_blessed = not_blessed_reasons(evaluation.uri, overall)
    task_labels = evaluated_labels(evaluation.uri)
  else:
    task_labels = {}
  summary.label_rates = label_rates_from_statistics(
      statistics, list(labels) or list(task_labels.values()))
  summary.warnings = evaluation_warnings(summary.auc, task_labels, summary.label_rates)
  return summary


def evaluated_labels(evaluation_uri: str) -> Dict[str, str]:
  """task -> its label column, from an evaluation's model spec, in funnel order."""
  eval_config = load_eval_run(evaluation_uri)[0]
  if not eval_config or not eval_config.model_specs:
    return {}
  keys = eval_config.model_specs[0].label_keys
  return {task: keys[task] for task in evaluated_tasks(evaluation_uri) if task in keys}


def read_metrics(evaluation_uri: str) -> Dict[tuple, MetricValues]:
  """slice key (() overall, (('pid', '430548_1007'),) ...) -> the scalar metrics of every
  model in the evaluation, keyed (model name, output name, metric name, is_diff).

  Model names: '' when one model was evaluated, else 'candidate' and 'baseline'.
  """
  found: Dict[tuple, MetricValues] = {}
  for record in tfma.load_metrics(evaluation_uri):
    values = found.setdefault(tfma.slicer.deserialize_slice_key(record.slice_key), {})
    for item in record.metric_keys_and_values:
      if item.value.HasField("double_value"):
        key = item.key
        values[key.model_name, key.output_name, key.name, key.is_diff] = (
            item.value.double_value.value)
  return found


def evaluated_tasks(evaluation_uri: str) -> List[str]:
  """The task towers of an evaluation in funnel order (its metrics specs' order)."""
  eval_config = load_eval_run(evaluation_uri)[0]
  tasks = []
  for spec in eval_config.metrics_specs if eval_config else []:
    tasks += [name for name in spec.output_names if name not in tasks]
  return tasks


def _slice_order(evaluation_uri: str) -> List[str]:
  """The single features an evaluation slices by, in its config's order."""
  eval_config = load_eval_run(evaluation_uri)[0]
  return [spec.feature_keys[0] for spec in (eval_config.slicing_specs if eval_config else [])
          if len(spec.feature_keys) == 1]


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


def slice_counts(by_slice: Dict[tuple, MetricValues], order: Sequence[str] = ()
                 ) -> Dict[str, int]:
  """Slice feature -> the number of its values that got metrics; `order` first."""
  counts: Dict[str, int] = {feature: 0 for feature in order}
  for key in by_slice:
    if len(key) == 1:
      counts[key[0][0]] = counts.get(key[0][0], 0) + 1
  return counts


def overall_auc(evaluation_uri: str) -> Dict[str, float]:
  """task -> AUC on the whole eval split, from a ModelEvaluation artifact."""
  overall = read_metrics(evaluation_uri).get((), {})
  return {task: m["auc"] for task, m in
          task_metrics(overall, order=evaluated_tasks(evaluation_uri)).items() if "auc" in m}


def _slice_words(slice_key) -> str:
  return "" if not slice_key else " on " + ", ".join(f"{f}={v}" for f, v in slice_key)


def not_blessed_reasons(evaluation_uri: str, overall: Optional[MetricValues] = None
                        ) -> List[str]:
  """Why TFMA's validation of an evaluation failed (see explain_validation); [] if it
  passed. `overall`: its overall-slice metrics, when already read."""
  result = tfma.load_validation_result(evaluation_uri)
  if overall is None:
    overall = read_metrics(evaluation_uri).get((), {})
  return explain_validation(result, overall, evaluation_uri)


def explain_validation(result, overall: MetricValues, where_to_look: str = "") -> List[str]:
  """A TFMA ValidationResult in plain words, one line per failing task and metric, e.g.
  "not blessed: cvr AUC 0.512 is 0.171 below the serving model's 0.683 (allowed drop
  0.010)" or "not blessed: ctr AUC 0.531 is below the floor 0.55". `overall` gives the
  candidate's and the baseline's values a change threshold compares."""
  if result.validation_ok:
    return []
  reasons = []
  for per_slice in result.metric_validations_per_slice:
    where = _slice_words(tfma.slicer.deserialize_slice_key(per_slice.slice_key))
    for failure in per_slice.failures:
      key, threshold = failure.metric_key, failure.metric_threshold
      what = f"{key.output_name} {_METRIC_WORDS.get(key.name, key.name)}"
      value = failure.metric_value.double_value.value
      if key.is_diff and threshold.HasField("change_threshold"):
        change = threshold.change_threshold
        candidate = next((v for (m, o, n, d), v in overall.items()
                          if m != BASELINE and o == key.output_name and n == key.name
                          and not d), math.nan)
        baseline = overall.get((BASELINE, key.output_name, key.name, False), math.nan)
        if change.HasField("absolute"):
          allowed = abs(change.absolute.value)
          worse = "below" if value < 0 else "above"
          reasons.append(f"not blessed: {what} {candidate:.3f}{where} is {abs(value):.3f} "
                         f"{worse} the serving model's {baseline:.3f} (allowed drop "
                         f"{allowed:.3f})")
          continue
      elif threshold.HasField("value_threshold"):
        bounds = threshold.value_threshold
        if bounds.HasField("lower_bound") and value < bounds.lower_bound.value:
          reasons.append(f"not blessed: {what} {value:.3f}{where} is below the floor "
                         f"{bounds.lower_bound.value:g}")
          continue
        if bounds.HasField("upper_bound") and value > bounds.upper_bound.value:
          reasons.append(f"not blessed: {what} {value:.3f}{where} is above the ceiling "
                         f"{bounds.upper_bound.value:g}")
          continue
      reasons.append(f"not blessed: {what}{where}: {failure.message}")
  for missing in result.missing_slices:
    reasons.append("not blessed: no examples in the gated slice "
                   + (", ".join(missing.feature_keys) or "overall"))
  if result.missing_thresholds:
    reasons.append("not blessed: a gated metric was not computed (TFMA missing_thresholds)")
  if not reasons:
    reasons.append("not blessed: TFMA's validation failed without naming a metric"
                   + (f" (see {where_to_look})" if where_to_look else ""))
  return reasons
