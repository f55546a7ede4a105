"""The TFMA EvalConfig: per-task metrics, funnel metrics, slices and the blessing gate.

Metric keys, as TFMA writes them (output_name = the task tower):

* every tower (models.task_metrics): `example_count`, `auc`,
  `auc_precision_recall`, `log_loss` (mean binary cross-entropy of the tower's
  probability and label), `calibration` (mean prediction / mean label: 1 is
  calibrated, above 1 over-predicts), `mean_prediction`, `mean_label`;
* every tower after the first: the funnel metrics against the tower before it
  (models.funnel_metrics): `order_violation_rate`, `conditional_auc`,
  `conditional_example_count`;
* plots, per tower (for the report's calibration and ROC curves):
  `calibration_plot` (TFMA CalibrationPlot: 1,000 prediction buckets with
  example, label and prediction sums) and `confusion_matrix_plot`
  (ConfusionMatrixPlot: counts at 1,000 thresholds).

They are computed on groups of rows, one per batch and slice, which the
Evaluator's extractors (EXTRACTORS_MODULE, its `module_path`) make in place of
TFMA's per-example slicing: over 10x the eval rows a second of TFMA's stock
per-example metrics (docs/evaluation.md).

Slices: overall, then one per value of each of the config's
`eval_config.slice_fields` (raw input fields, in that order), then one per
level of the Transform-computed `user_activity` (models.preprocessing) when
the config names its `data_config.user_id_field`. A config with neither
(EasyRec's own, e.g.) is evaluated overall only.

The gate (`gate=True`, what `aitm run` uses) is on the overall slice only:
each tower's AUC must reach its floor (`min_auc`) and must not be more than
`max_auc_drop` below the baseline's - the latest blessed model, which the
pipeline resolves from ML Metadata. Without a baseline (the first run) TFX
drops the change thresholds and the floors alone decide. `gate=False` (`aitm
compare`) evaluates one model with no thresholds at all.
"""

from typing import Dict, List, Mapping, Optional, Sequence

from google.protobuf import wrappers_pb2
from tensorflow_model_analysis.proto import config_pb2

from models import batch_slicing, preprocessing, task_metrics
from models.config import PipelineConfig
from models.funnel_metrics import funnel_metric_config
from models.gate_thresholds import BASELINE, CANDIDATE, DEFAULT_MAX_AUC_DROP, DEFAULT_MIN_AUC
from models.signatures import TRANSFORM_SIGNATURE

# TFMA only calls the models' signatures. Left unset, it loads each model as Keras
# twice (once to find its type, once to run it), rebuilding every layer from its
# config; as a plain SavedModel it loads once. Evaluator with a baseline on a 20k-row
# run (2 busy cores, two tries each): 191 s / 152 s as Keras, 147 s / 137 s so.
MODEL_TYPE = "tf_generic"

# The metric and plot classes per task (models.task_metrics: TFMA's keys, computed
# on groups of rows), in the order the report lists them.
TASK_METRICS = task_metrics.TASK_METRIC_CLASSES
TASK_PLOTS = task_metrics.TASK_PLOT_CLASSES
# The Evaluator's `module_path`: its extractors, grouping each batch by slice.
EXTRACTORS_MODULE = batch_slicing.__name__


def _per_task(name: str, values: Optional[Mapping[str, float]], default: float,
              tasks: Sequence[str]) -> Dict[str, float]:
  """Task -> value: `values` where given, `default` for the other tasks."""
  values = dict(values or {})
  unknown = set(values) - set(tasks)
  if unknown:
    raise ValueError(f"{name}: unknown tasks {sorted(unknown)}; the towers are {list(tasks)}")
  for task, value in values.items():
    if not isinstance(value, (int, float)) or value < 0:
      raise ValueError(f"{name}['{task}']: expected a number >= 0, got {value!r}")
  return {task: float(values.get(task, default)) for task in tasks}


def min_auc_floors(config: PipelineConfig,
                   min_auc: Optional[Mapping[str, float]] = None) -> Dict[str, float]:
  """Task -> AUC floor (DEFAULT_MIN_AUC where `min_auc` doesn't say)."""
  return _per_task("min_auc", min_auc, DEFAULT_MIN_AUC, list(config.task_labels))


def max_auc_drops(config: PipelineConfig,
                  max_auc_drop: Optional[Mapping[str, float]] = None) -> Dict[str, float]:
  """Task -> allowed AUC drop against the baseline (DEFAULT_MAX_AUC_DROP where not given)."""
  return _per_task("max_auc_drop", max_auc_drop, DEFAULT_MAX_AUC_DROP,
                   list(config.task_labels))


def thresholds_from_flags(config: PipelineConfig, flag: str,
                          values: Optional[Sequence[str]]) -> Dict[str, float]:
  """`aitm run --min-auc 0.6 --min-auc cvr=0.7` -> {'ctr': 0.6, 'cvr': 0.7}: each value
  is NUMBER (every task) or TASK=NUMBER (that task, winning over a NUMBER for all)."""
  tasks = list(config.task_labels)
  everyone, one = {}, {}
  for value in values or []:
    task, _, number = value.rpartition("=")
    if task and task not in tasks:
      raise ValueError(f"{flag} {value}: no task '{task}'; the towers are {tasks}")
    try:
      parsed = float(number)
    except ValueError:
      raise ValueError(f"{flag} {value}: '{number}' is not a number") from None
    if parsed < 0:
      raise ValueError(f"{flag} {value}: must be >= 0")
    if task:
      one[task] = parsed
    else:
      everyone = {t: parsed for t in tasks}
  return {**everyone, **one}


def slice_features(config: PipelineConfig) -> List[str]:
  """The features sliced on, in order: the config's slice_fields, then the
  Transform-computed ones."""
  return list(config.slice_fields) + list(preprocessing.derived_features(config))


def _metric_config(metric_class) -> config_pb2.MetricConfig:
  return config_pb2.MetricConfig(class_name=metric_class.__name__, module=metric_class.__module__)


def _auc_gate(floor: float, max_drop: float) -> config_pb2.MetricConfig:
  auc = _metric_config(task_metrics.TaskAUC)
  # The whole eval split decides; small slices are reported, not gated.
  auc.per_slice_thresholds.add(
      slicing_specs=[config_pb2.SlicingSpec()],
      threshold=config_pb2.MetricThreshold(
          value_threshold=config_pb2.GenericValueThreshold(
              lower_bound=wrappers_pb2.DoubleValue(value=floor)),
          change_threshold=config_pb2.GenericChangeThreshold(
              direction=config_pb2.MetricDirection.HIGHER_IS_BETTER,
              absolute=wrappers_pb2.DoubleValue(value=-max_drop))))
  return auc


def make_eval_config(config: PipelineConfig,
                     min_auc: Optional[Mapping[str, float]] = None,
                     max_auc_drop: Optional[Mapping[str, float]] = None,
                     *, gate: bool = True) -> config_pb2.EvalConfig:
  """The Evaluator's config for `config`'s task towers (see the module docstring).

  The model is evaluated through `serving_default` on raw ExampleGen examples;
  labels are the raw label columns. `min_auc` / `max_auc_drop` map tower name
  -> value (unlisted towers get DEFAULT_MIN_AUC / DEFAULT_MAX_AUC_DROP); with
  `gate=False` they must be left out.
  """
  tasks = list(config.task_labels)
  if not gate and (min_auc or max_auc_drop):
    raise ValueError("min_auc and max_auc_drop are blessing thresholds; an evaluation "
                     "without the gate (gate=False) takes neither")
  floors = min_auc_floors(config, min_auc)
  drops = max_auc_drops(config, max_auc_drop)

  metrics_specs = []
  for i, task in enumerate(tasks):
    metrics = [_auc_gate(floors[task], drops[task]) if metric is task_metrics.TaskAUC and gate
               else _metric_config(metric) for metric in TASK_METRICS + TASK_PLOTS]
    if i > 0:
      metrics.append(funnel_metric_config(upstream=tasks[i - 1]))
    metrics_specs.append(config_pb2.MetricsSpec(output_names=[task], metrics=metrics))

  derived = preprocessing.derived_features(config)
  candidate = config_pb2.ModelSpec(
      signature_name="serving_default", label_keys=dict(config.task_labels),
      model_type=MODEL_TYPE,
      # TFMA runs this signature on the eval examples and slices on its outputs
      # (the Transform-computed features), looking there before the raw ones.
      preprocessing_function_names=[TRANSFORM_SIGNATURE] if derived else [])
  model_specs = [candidate]
  if gate:
    candidate.name = CANDIDATE
    # No preprocessing_function_names: TFMA then calls the signature (its default
    # name) on the baseline only if it has one, so a baseline exported before it
    # existed still loads. TFMA finds the candidate's slice features under the
    # model's name only when both models returned some; with such a baseline it
    # finds none, and that one comparison has no user_activity slices.
    model_specs.append(config_pb2.ModelSpec(
        name=BASELINE, is_baseline=True, signature_name="serving_default",
        label_keys=dict(config.task_labels), model_type=MODEL_TYPE))
  return config_pb2.EvalConfig(
      model_specs=model_specs,
      slicing_specs=[config_pb2.SlicingSpec()] + [
          config_pb2.SlicingSpec(feature_keys=[name]) for name in slice_features(config)],
      metrics_specs=metrics_specs,
      # The compiled Keras metrics would be recomputed on raw features the Keras
      # model (which takes transformed ones) can't read; the specs above replace them.
      options=config_pb2.Options(
          include_default_metrics=wrappers_pb2.BoolValue(value=False)))
