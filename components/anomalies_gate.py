"""A component that fails the run when ExampleValidator found anomalies.

ExampleValidator records anomalies but lets the pipeline go on; a production
run must not train on data that breaks the schema contract. The gate reads
every split's anomalies and raises with each anomaly named, so Transform,
Trainer and Pusher (which run after it) never start.
"""

import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.types import artifact_utils


class DataAnomaliesError(RuntimeError):
  """The data broke the schema contract."""


def describe_anomalies(anomalies_uri: str, split_names) -> list:
  """'split/feature: description' for every anomaly under an ExampleAnomalies uri."""
  found = []
  for split in split_names:
    path = os.path.join(anomalies_uri, f"Split-{split}", "SchemaDiff.pb")
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
def AnomaliesGate(anomalies: tfx.dsl.components.InputArtifact[
    tfx.types.standard_artifacts.ExampleAnomalies]):
  found = describe_anomalies(
      anomalies.uri, artifact_utils.decode_split_names(anomalies.split_names))
  if found:
    raise DataAnomaliesError(
        "ExampleValidator found anomalies against the schema; the run stops before "
        "training:\n  " + "\n  ".join(found))
  print("  [AnomaliesGate] no anomalies", flush=True)
