"""The one reader of ML Metadata: what a pipeline run executed and produced
(`read_run`), and the newest finished evaluation with its model(s), blessing, Trainer
ModelRun, pipeline and run (`find_evaluation`)."""

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

from pipeline.configs import metadata_path


class NoEvaluation(Exception):
  """The pipeline root holds no finished evaluation (or none since the given time)."""


@dataclasses.dataclass
class EvaluationRecord:
  """Where the evaluation and what it evaluated are, as ML Metadata recorded them."""
  evaluation_uri: str
  pipeline_name: str
  run_id: str
  state: str                                  # COMPLETE or CACHED
  evaluated_at: Optional[float]
  model_uri: Optional[str]
  baseline_uri: Optional[str]
  model_run_uri: Optional[str]
  baseline_run_uri: Optional[str]
  blessed: Optional[bool]
  eval_config_json: Optional[str] = None      # the EvalConfig the Evaluator was given
  statistics_uri: Optional[str] = None        # StatisticsGen's output for the evaluated examples


@dataclasses.dataclass
class RunRecord:
  """One pipeline run as ML Metadata recorded it."""
  run_id: str
  states: Dict[str, str]                      # node id -> COMPLETE / CACHED / FAILED ...
  seconds: Dict[str, float]                   # node id -> wall time of its execution
  # (node id, artifact type) -> its output artifacts, cached ones included, oldest first
  outputs: Dict[Tuple[str, str], List[object]]
  started: Dict[str, float] = dataclasses.field(default_factory=dict)  # node id -> epoch s

  def output(self, node: str, artifact_type: str):
    """The newest `artifact_type` output of `node` in this run, or None."""
    found = self.outputs.get((node, artifact_type))
    return found[-1] if found else None


def open_store(path: str):
  """The SQLite ML Metadata store at `path`, read-only."""
  from ml_metadata.metadata_store import metadata_store
  from ml_metadata.proto import metadata_store_pb2
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = path
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(config)


def _store(pipeline_root: str):
  """The ML Metadata store of a pipeline root; NoEvaluation when it has none."""
  path = metadata_path(pipeline_root)
  if not os.path.exists(path):
    raise NoEvaluation(f"no evaluation in pipeline root {pipeline_root}: it has no ML Metadata "
                       f"store ({path}); run `aitm run --pipeline-root {pipeline_root}` first")
  return open_store(path)


def custom_property(artifact, key: str):
  """An artifact's int or string custom property, or None when it has none."""
  value = artifact.custom_properties.get(key)
  if value is None:
    return None
  return value.int_value if value.HasField("int_value") else value.string_value


def blessed(blessing) -> Optional[bool]:
  """What a ModelBlessing says; None when it says nothing (an Evaluator without
  thresholds: `aitm compare`)."""
  value = custom_property(blessing, "blessed")
  return None if value is None else bool(value)


def read_run(path: str) -> RunRecord:
  """The newest pipeline run recorded in the SQLite ML Metadata at `path`."""
  from ml_metadata.proto import metadata_store_pb2
  store = open_store(path)
  runs = store.get_contexts_by_type("pipeline_run")
  if not runs:
    raise RuntimeError("no pipeline run is recorded in this ML Metadata store")
  run = max(runs, key=lambda c: c.id)
  executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
  node_of = _node_ids(store, executions)
  state_names = {v: k for k, v in metadata_store_pb2.Execution.State.items()}
  states, seconds, started = {}, {}, {}
  for execution in executions:
    node = node_of[execution.id]
    states[node] = state_names.get(execution.last_known_state,
                                   str(execution.last_known_state))
    seconds[node] = (execution.last_update_time_since_epoch
                     - execution.create_time_since_epoch) / 1000
    started[node] = execution.create_time_since_epoch / 1000
  return RunRecord(run.name, states, seconds, _outputs(store, node_of), started)


def _node_ids(store, executions) -> Dict[int, str]:
  """execution id -> component id ('StatisticsGen'), from TFX's node contexts."""
  node_type = store.get_context_type("node").id
  found = {}
  for execution in executions:
    names = [c.name for c in store.get_contexts_by_execution(execution.id)
             if c.type_id == node_type]
    found[execution.id] = names[0].split(".", 1)[-1] if names else str(execution.id)
  return found


def _outputs(store, node_of: Dict[int, str]) -> Dict[Tuple[str, str], List[object]]:
  """(node id, artifact type) -> output artifacts, cached ones included.

  An artifact can be the output of several nodes: the baseline resolver
  outputs the Model a Trainer produced."""
  from ml_metadata.proto import metadata_store_pb2
  producers: Dict[int, List[str]] = {}
  for event in store.get_events_by_execution_ids(list(node_of)):
    if event.type == metadata_store_pb2.Event.OUTPUT:
      producers.setdefault(event.artifact_id, []).append(node_of[event.execution_id])
  types = {t.id: t.name for t in store.get_artifact_types()}
  found: Dict[Tuple[str, str], List[object]] = {}
  for artifact in store.get_artifacts_by_id(sorted(producers)):
    for node in producers[artifact.id]:
      found.setdefault((node, types[artifact.type_id]), []).append(artifact)
  return found


def _key(event) -> str:
  """The input or output name an event records ('model', 'evaluation'), or ''."""
  return next((step.key for step in event.path.steps if step.HasField("key")), "")


def _artifact_ids(events, event_type) -> Dict[str, int]:
  """Input or output name -> artifact id, over the events of `event_type`."""
  return {_key(e): e.artifact_id for e in events if e.type == event_type}


def _finished_states() -> Dict[int, str]:
  """The execution states of a finished execution, with their names."""
  from ml_metadata.proto import metadata_store_pb2
  return {metadata_store_pb2.Execution.COMPLETE: "COMPLETE",
          metadata_store_pb2.Execution.CACHED: "CACHED"}


def _evaluator_executions(store) -> List[object]:
  """Every execution of TFX's Evaluator component, whatever its node id."""
  candidates = []
  for execution_type in store.get_execution_types():
    if execution_type.name.split(".")[-1] == "Evaluator":
      candidates.extend(store.get_executions_by_type(execution_type.name))
  return candidates


def _newest_evaluation(store, pipeline_root: str, since: Optional[float]):
  """(execution, its events, its ModelEvaluation) of the newest finished Evaluator
  execution (started at `since` or later) whose evaluation is on disk."""
  from ml_metadata.proto import metadata_store_pb2
  finished = _finished_states()
  for execution in sorted(_evaluator_executions(store), key=lambda e: e.id, reverse=True):
    if execution.last_known_state not in finished:
      continue
    if since is not None and execution.create_time_since_epoch < since * 1000 - 1:
      continue
    events = store.get_events_by_execution_ids([execution.id])
    outputs = _artifact_ids(events, metadata_store_pb2.Event.OUTPUT)
    if "evaluation" not in outputs:
      continue
    evaluation, = store.get_artifacts_by_id([outputs["evaluation"]])
    if os.path.isdir(evaluation.uri):
      return execution, events, evaluation
  when = " for the run just made" if since is not None else ""
  raise NoEvaluation(f"no evaluation in pipeline root {pipeline_root}{when}: ML Metadata "
                     "records no finished Evaluator run (did the pipeline stop before the "
                     "Evaluator?)")


def _uri(store, artifact_id: Optional[int]) -> Optional[str]:
  """The uri of an artifact, or None (no id, or no such artifact)."""
  if artifact_id is None:
    return None
  artifacts = store.get_artifacts_by_id([artifact_id])
  return artifacts[0].uri if artifacts else None


def _output_beside(store, artifact_id: Optional[int], role, key: str) -> Optional[str]:
  """The uri of output `key` of the execution that had this artifact as its `role`
  (OUTPUT: the one that produced it; INPUT: one that read it)."""
  from ml_metadata.proto import metadata_store_pb2
  if artifact_id is None:
    return None
  for event in store.get_events_by_artifact_ids([artifact_id]):
    if event.type != role:
      continue
    for out in store.get_events_by_execution_ids([event.execution_id]):
      if out.type == metadata_store_pb2.Event.OUTPUT and _key(out) == key:
        return _uri(store, out.artifact_id)
  return None


def _model_run(store, model_id: Optional[int]) -> Optional[str]:
  """The ModelRun written by the Trainer execution that produced this model."""
  from ml_metadata.proto import metadata_store_pb2
  return _output_beside(store, model_id, metadata_store_pb2.Event.OUTPUT, "model_run")


def _pipeline_and_run(store, execution) -> Tuple[str, str]:
  """The names of the pipeline and the pipeline run an execution belongs to ('' if none)."""
  kind_of = {t.id: t.name for t in store.get_context_types()}
  pipeline_name, run_id = "", ""
  for context in store.get_contexts_by_execution(execution.id):
    kind = kind_of.get(context.type_id)
    if kind == "pipeline":
      pipeline_name = context.name
    elif kind == "pipeline_run":
      run_id = context.name
  return pipeline_name, run_id


def find_evaluation(pipeline_root: str, since: Optional[float] = None) -> EvaluationRecord:
  """The newest finished Evaluator execution (COMPLETE or CACHED) with its ModelEvaluation;
  with `since` (seconds since the epoch) only executions that started then or later."""
  from ml_metadata.proto import metadata_store_pb2
  store = _store(pipeline_root)
  execution, events, evaluation = _newest_evaluation(store, pipeline_root, since)
  inputs = _artifact_ids(events, metadata_store_pb2.Event.INPUT)
  outputs = _artifact_ids(events, metadata_store_pb2.Event.OUTPUT)
  is_blessed = None
  if "blessing" in outputs:
    is_blessed = blessed(store.get_artifacts_by_id([outputs["blessing"]])[0])
  pipeline_name, run_id = _pipeline_and_run(store, execution)
  configured = execution.custom_properties.get("eval_config")
  return EvaluationRecord(
      eval_config_json=configured.string_value if configured is not None else None,
      evaluation_uri=evaluation.uri, pipeline_name=pipeline_name, run_id=run_id,
      state=_finished_states()[execution.last_known_state],
      evaluated_at=(evaluation.create_time_since_epoch / 1000
                    if evaluation.create_time_since_epoch else None),
      model_uri=_uri(store, inputs.get("model")),
      baseline_uri=_uri(store, inputs.get("baseline_model")),
      model_run_uri=_model_run(store, inputs.get("model")),
      baseline_run_uri=_model_run(store, inputs.get("baseline_model")), blessed=is_blessed,
      # The ExampleStatistics StatisticsGen computed from the evaluated examples.
      statistics_uri=_output_beside(store, inputs.get("examples"),
                                    metadata_store_pb2.Event.INPUT, "statistics"))
