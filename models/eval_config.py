"""The TFMA EvalConfig: per-task metrics, slices and the blessing thresholds."""

from typing import Dict, Sequence

from google.protobuf import wrappers_pb2
from tensorflow_model_analysis.proto import config_pb2

from models import features as F

SLICE_FEATURES: Sequence[str] = ("pid",)
DEFAULT_MIN_AUC: Dict[str, float] = {"ctr": 0.55, "cvr": 0.55}


def make_eval_config(min_auc: Dict[str, float] = DEFAULT_MIN_AUC) -> config_pb2.EvalConfig:
  """AUC (the gate), AUC-PR and example counts per task tower, overall and by slice.

  The model is evaluated through `serving_default` on raw ExampleGen
  examples; labels are read from the raw label columns.
  """
  unknown = set(min_auc) - set(F.TASKS)
  if unknown:
    raise ValueError(f"AUC floors for unknown tasks {sorted(unknown)}; tasks are {list(F.TASKS)}")
  metrics_specs = []
  for task in F.TASKS:
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
                                        label_keys=dict(F.TASKS))],
      slicing_specs=[config_pb2.SlicingSpec()] + [
          config_pb2.SlicingSpec(feature_keys=[name]) for name in SLICE_FEATURES],
      metrics_specs=metrics_specs,
      # The compiled Keras metrics would be recomputed on raw features the Keras
      # model (which takes transformed ones) can't read; the specs above replace them.
      options=config_pb2.Options(
          include_default_metrics=wrappers_pb2.BoolValue(value=False)))
