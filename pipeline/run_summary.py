"""What a pipeline run produced, read back from ML Metadata and its artifacts."""

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

_STATE_NAMES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}


@dataclasses.dataclass
class RunSummary:
  run_id: str
  component_states: Dict[str, str]          # node id -> COMPLETE / CACHED / FAILED ...
  component_seconds: Dict[str, float]        # node id -> wall time recorded in MLMD
  rows: Dict[str, int]                       # split -> examples
  auc: Dict[str, float]                      # task -> overall eval AUC
  blessed: Optional[bool]
  pushed_dir: Optional[str]
  evaluation_uri: Optional[str] = None
  model_run_uri: Optional[str] = None        # TensorBoard logs, training_summary.json

  def table(self) -> str:
    lines = [f"{'rows read':<22}" + ", ".join(f"{s} {n:,}" for s, n in self.rows.items())]
    for task, auc in self.auc.items():
      lines.append(f"{'eval AUC ' + task:<22}{auc:.4f}")
    lines.append(f"{'blessed':<22}{'yes' if self.blessed else 'no'}")
    lines.append(f"{'pushed to':<22}{self.pushed_dir or 'nothing pushed'}")
    return "\n".join(lines)


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
  """(node id, artifact type) -> output artifacts, cached ones included."""
  events = store.get_events_by_execution_ids(list(node_of))
  producer = {e.artifact_id: node_of[e.execution_id] for e in events
              if e.type == metadata_store_pb2.Event.OUTPUT}
  types = {t.id: t.name for t in store.get_artifact_types()}
  found: Dict[Tuple[str, str], List[metadata_store_pb2.Artifact]] = {}
  for artifact in store.get_artifacts_by_id(sorted(producer)):
    key = (producer[artifact.id], types[artifact.type_id])
    found.setdefault(key, []).append(artifact)
  return found


def _custom(artifact, key):
  value = artifact.custom_properties.get(key)
  if value is None:
    return None
  return value.int_value if value.HasField("int_value") else value.string_value


def summarize(metadata_path: str) -> RunSummary:
  """Reads the newest pipeline run recorded in the SQLite ML Metadata at metadata_path."""
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

  rows = {}
  for stats in outputs.get(("StatisticsGen", "ExampleStatistics"), [])[-1:]:
    for split in ("train", "eval"):
      path = os.path.join(stats.uri, f"Split-{split}", "FeatureStats.pb")
      if os.path.exists(path):
        rows[split] = int(tfdv.load_stats_binary(path).datasets[0].num_examples)

  auc, evaluation_uri = {}, None
  for evaluation in outputs.get(("Evaluator", "ModelEvaluation"), [])[-1:]:
    evaluation_uri = evaluation.uri
    auc = overall_auc(evaluation.uri)

  model_runs = outputs.get(("Trainer", "ModelRun"), [])[-1:]
  blessing = outputs.get(("Evaluator", "ModelBlessing"), [])[-1:]
  blessed = bool(_custom(blessing[0], "blessed")) if blessing else None
  pushed_dir = None
  for pushed in outputs.get(("Pusher", "PushedModel"), [])[-1:]:
    if _custom(pushed, "pushed"):
      pushed_dir = _custom(pushed, "pushed_destination")
  return RunSummary(run.name, states, seconds, rows, auc, blessed, pushed_dir, evaluation_uri,
                    model_runs[0].uri if model_runs else None)


def overall_auc(evaluation_uri: str) -> Dict[str, float]:
  """task -> AUC on the whole eval split, from a ModelEvaluation artifact."""
  result = tfma.load_eval_result(evaluation_uri)
  for slice_key, metrics in result.slicing_metrics:
    if slice_key == ():
      return {task: values[""]["auc"]["doubleValue"]
              for task, values in sorted(metrics.items()) if "auc" in values.get("", {})}
  return {}
