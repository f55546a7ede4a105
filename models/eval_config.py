"""The TFMA EvalConfig: per-task metrics, slices and the blessing thresholds."""

from typing import Dict, Optional, Sequence

from google.protobuf import wrappers_pb2
from tensorflow_model_analysis.proto import config_pb2

from models.config import PipelineConfig

SLICE_FEATURES: Sequence[str] = ("pid",)
# Every task's eval AUC must reach this for the model to be blessed.
DEFAULT_MIN_AUC = 0.55


def make_eval_config(config: PipelineConfig,
                     min_auc: Optional[Dict[str, float]] = None) -> config_pb2.EvalConfig:
  """AUC (the gate), AUC-PR and example counts per task tower, overall and by slice.

  The model is evaluated through `serving_default` on raw ExampleGen
  examples; labels are read from the raw label columns. `min_auc` maps tower
  name -> floor (default DEFAULT_MIN_AUC for every tower).
  """
  tasks = config.task_labels
  if min_auc is None:
    min_auc = {task: DEFAULT_MIN_AUC for task in tasks}
  unknown = set(min_auc) - set(tasks)
  if unknown:
    raise ValueError(f"AUC floors for unknown tasks {sorted(unknown)}; tasks are {list(tasks)}")
  metrics_specs = []
  for task in tasks:
    auc = config_pb2.MetricConfig(class_name="AUC")
    if task in min_auc:
      # The floor holds for the whole eval split; small slices are reported, not gated.
      auc.per_slice_thresholds.add(
          slicing_specs=[config_pb2.SlicingSpec()],
          threshold=config_pb2.MetricThreshold(
              value_threshold=config_pb2.GenericValueThreshold(
                  lower_bound=wrappers_pb2.DoubleValue(value=min_auc[task]))))
    metrics_specs.append(config_pb2.MetricsSpec(
        output_names=[task],
        metrics=[
            config_pb2.MetricConfig(class_name="ExampleCount"),
            auc,
            config_pb2.MetricConfig(class_name="AUCPrecisionRecall"),
        ]))
  return config_pb2.EvalConfig(
      model_specs=[config_pb2.ModelSpec(signature_name="serving_default",
                                        label_keys=dict(tasks))],
      slicing_specs=[config_pb2.SlicingSpec()] + [
          config_pb2.SlicingSpec(feature_keys=[name]) for name in SLICE_FEATURES
          if name in config.feature_columns],
      metrics_specs=metrics_specs,
      # The compiled Keras metrics would be recomputed on raw features the Keras
      # model (which takes transformed ones) can't read; the specs above replace them.
      options=config_pb2.Options(
          include_default_metrics=wrappers_pb2.BoolValue(value=False)))
