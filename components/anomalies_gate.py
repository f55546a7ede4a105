"""A component that fails the run when ExampleValidator found anomalies, or
DistributionValidator found drift from the previous span.

Both validators record what they find but let the pipeline go on; a
production run must not train on data that breaks the schema contract or
has shifted since yesterday. The gate reads every split's anomalies and
raises with each one named (drift: the feature, the distance and the
threshold, as TFDV words it), so Transform, Trainer and Pusher, which run
after it, never start.
"""

import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from components.label_blind_split import examples_span


class DataAnomaliesError(RuntimeError):
  """The data broke the schema contract."""


class DataDriftError(DataAnomaliesError):
  """A span's distribution moved beyond the schema's drift thresholds."""


def describe_anomalies(anomalies_uri: str, split_names, prefix: str = "Split") -> list:
  """'split/feature: description' for every anomaly under an ExampleAnomalies uri
  (`prefix` "SplitPair" for DistributionValidator's split pairs)."""
  found = []
  for split in split_names:
    path = os.path.join(anomalies_uri, f"{prefix}-{split}", "SchemaDiff.pb")
    with fileio.open(path, "rb") as f:
      anomalies = anomalies_pb2.Anomalies.FromString(f.read())
    for feature, info in sorted(anomalies.anomaly_info.items()):
      reasons = "; ".join(r.description or r.short_description for r in info.reason)
      found.append(f"{split}/{feature}: {reasons or info.description}")
    if anomalies.HasField("dataset_anomaly_info"):
      reasons = "; ".join(r.description for r in anomalies.dataset_anomaly_info.reason)
      found.append(f"{split}/<dataset>: {reasons}")
  return found


@tfx.dsl.components.component
def AnomaliesGate(
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    # Optional (default None), as TFX's function components declare it.
    drift_anomalies: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleAnomalies] = None,
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples] = None,
    baseline_examples: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.Examples] = None):
  """Fails the run on schema anomalies, then on drift.

  Raises DataAnomaliesError listing every split's anomalies in `anomalies`
  (ExampleValidator's). Given `drift_anomalies` (DistributionValidator's), raises
  DataDriftError listing the drift between the span of `examples` and the earlier
  span of `baseline_examples`; a baseline span that is not earlier has nothing to
  compare.
  """
  found = describe_anomalies(
      anomalies.uri, artifact_utils.decode_split_names(anomalies.split_names))
  if found:
    raise DataAnomaliesError(
        "ExampleValidator found anomalies against the schema; the run stops before "
        "training:\n  " + "\n  ".join(found))
  print("  [AnomaliesGate] no anomalies", flush=True)
  if drift_anomalies is None:
    return
  span, baseline = examples_span(examples), examples_span(baseline_examples)
  if baseline >= span:
    print(f"  [AnomaliesGate] span {span}: no earlier span to check drift against", flush=True)
    return
  drifted = describe_anomalies(
      drift_anomalies.uri, artifact_utils.decode_split_names(drift_anomalies.split_names),
      prefix="SplitPair")
  if drifted:
    raise DataDriftError(
        f"DistributionValidator found drift in span {span} from span {baseline}; "
        "the run stops before training:\n  " + "\n  ".join(drifted))
  print(f"  [AnomaliesGate] span {span}: no drift from span {baseline}", flush=True)
