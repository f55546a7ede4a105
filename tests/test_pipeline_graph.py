"""The component graph create_pipeline builds for each use, without running it."""

import pytest

from models.config import load_config
from pipeline import configs
from pipeline.pipeline import Extent, create_pipeline

CONFIG = load_config(configs.CONFIG_PATH)


def _ids(tmp_path, **kwargs):
  pipeline = create_pipeline(config=CONFIG, pipeline_root=str(tmp_path / "root"),
                             data_root=str(tmp_path / "data"),
                             serving_dir=str(tmp_path / "serving"), **kwargs)
  return [c.id for c in pipeline.components]


def test_run_compare_training_and_transform_only_graphs(tmp_path):
  run = _ids(tmp_path)
  assert run == _ids(tmp_path, extent=Extent.PUSH)
  assert {"latest_blessed_model_resolver", "Evaluator", "Pusher"} <= set(run)
  compare = _ids(tmp_path, extent=Extent.EVALUATE)
  assert "Evaluator" in compare and "Pusher" not in compare
  assert "latest_blessed_model_resolver" not in compare
  training_only = _ids(tmp_path, extent=Extent.TRAIN)
  assert set(training_only) == set(compare) - {"Evaluator"}
  transform_only = _ids(tmp_path, extent=Extent.TRANSFORM)
  assert set(transform_only) == set(training_only) - {"Trainer"}
  assert transform_only[-1] == "Transform"
  with pytest.raises(ValueError, match="data_format"):
    _ids(tmp_path, data_format="parquet")


def test_span_settings_are_checked_where_they_conflict(tmp_path):
  from components.label_blind_split import Split
  from pipeline.spans import SpanSettings
  with pytest.raises(ValueError, match="train_spans 0: at least 1"):
    SpanSettings(train_spans=0)
  with pytest.raises(ValueError, match="use one or the other"):
    _ids(tmp_path, spans=SpanSettings(), split=Split("span"))
  with pytest.raises(ValueError, match="spans are read from CSV data only"):
    _ids(tmp_path, spans=SpanSettings(), data_format="aliccp")
  window = _ids(tmp_path, spans=SpanSettings(span=2, train_spans=2))
  assert {"span_window", "previous_span_statistics", "DistributionValidator"} <= set(window)
  unchecked = _ids(tmp_path, spans=SpanSettings(drift_check=False))
  assert not {"span_window", "previous_span_statistics"} & set(unchecked)


def _node(tmp_path, node_id, **kwargs):
  pipeline = create_pipeline(config=CONFIG, pipeline_root=str(tmp_path / "root"),
                             data_root=str(tmp_path / "data"),
                             serving_dir=str(tmp_path / "serving"), **kwargs)
  return {c.id: c for c in pipeline.components}.get(node_id)


def test_warm_start_feeds_the_trainer_a_base_model_only_when_asked(tmp_path):
  import json
  from models import trainer
  from pipeline.pipeline import WARM_START_ID
  from pipeline.resolvers import LatestBlessedModelOnOtherDataStrategy
  cold = _node(tmp_path, "Trainer")
  assert "base_model" not in cold.inputs
  assert trainer.WARM_START_KEY not in json.loads(cold.exec_properties["custom_config"])
  assert WARM_START_ID not in _ids(tmp_path)
  warm = _node(tmp_path, "Trainer", warm_start=True)
  assert warm.inputs["base_model"].producer_component_id == WARM_START_ID
  assert json.loads(warm.exec_properties["custom_config"])[trainer.WARM_START_KEY] is True
  local = _node(tmp_path, WARM_START_ID, warm_start=True, rerun_safe_resolvers=True)
  assert local.exec_properties["resolver_class"] is LatestBlessedModelOnOtherDataStrategy
  assert local.raw_inputs["examples"].producer_component_id == "Transform"
  stock = _node(tmp_path, WARM_START_ID, warm_start=True)  # what Kubeflow compiles
  assert stock.exec_properties["resolver_class"].__name__ == "LatestBlessedModelStrategy"


def test_the_pusher_needs_the_local_infra_validators_blessing_after_the_evaluators(tmp_path):
  from components.local_infra_validator import LocalInfraValidator
  from components.trainer import Trainer
  from pipeline.pipeline import INFRA_VALIDATOR_ID, InfraValidation
  ids = _ids(tmp_path)
  assert ids.index("Evaluator") < ids.index(INFRA_VALIDATOR_ID) < ids.index("Pusher")
  infra = _node(tmp_path, INFRA_VALIDATOR_ID)
  assert isinstance(infra, LocalInfraValidator)
  assert infra.inputs["model"].producer_component_id == "Trainer"
  assert infra.inputs["model_blessing"].producer_component_id == "Evaluator"
  assert infra.exec_properties["model_name"] == "aitm"
  pusher = _node(tmp_path, "Pusher")
  assert pusher.inputs["infra_blessing"].producer_component_id == INFRA_VALIDATOR_ID
  assert pusher.inputs["model_blessing"].producer_component_id == "Evaluator"
  # The Trainer reads ExampleGen's raw rows for its warmup requests.
  trainer = _node(tmp_path, "Trainer")
  assert isinstance(trainer, Trainer)
  assert trainer.inputs["raw_examples"].producer_component_id == "FileBasedExampleGen"
  assert _node(tmp_path, INFRA_VALIDATOR_ID, infra_validation=InfraValidation.KUBERNETES)
  unchecked = _ids(tmp_path, infra_validation=None)
  assert INFRA_VALIDATOR_ID not in unchecked
  assert "infra_blessing" not in _node(tmp_path, "Pusher", infra_validation=None).inputs
  assert INFRA_VALIDATOR_ID not in _ids(tmp_path, extent=Extent.EVALUATE)


class _Store:
  """The two ML Metadata queries the warm-start strategy makes, over given events."""

  def __init__(self, executions):
    from ml_metadata.proto import metadata_store_pb2
    event = metadata_store_pb2.Event
    # execution id -> (input artifact ids, output artifact ids)
    self.events = [event(artifact_id=a, execution_id=e, type=kind)
                   for e, (inputs, outputs) in executions.items()
                   for kind, ids in ((event.INPUT, inputs), (event.OUTPUT, outputs))
                   for a in ids]

  def get_events_by_artifact_ids(self, ids):
    return [e for e in self.events if e.artifact_id in ids]

  def get_events_by_execution_ids(self, ids):
    return [e for e in self.events if e.execution_id in ids]


def _artifact(kind, artifact_id, **properties):
  from tfx.types import standard_artifacts
  artifact = getattr(standard_artifacts, kind)()
  artifact.id = artifact_id
  for key, value in properties.items():
    artifact.set_int_custom_property(key, value)
  return artifact


def test_the_warm_start_base_is_the_latest_blessed_model_trained_on_other_data():
  from pipeline.resolvers import LatestBlessedModelOnOtherDataStrategy
  # Models 11 (examples 1) and 12 (examples 2), both blessed; model 13 not blessed.
  models = [_artifact("Model", i) for i in (11, 12, 13)]
  blessings = [_artifact("ModelBlessing", 20 + m, current_model_id=m, blessed=int(m != 13))
               for m in (11, 12, 13)]
  # Trainers 101..103 read examples and wrote models; resolver 104 passed model 11 on
  # (outputs only), in a run whose examples were 2.
  store = _Store({101: ([1], [11]), 102: ([2], [12]), 103: ([3], [13]), 104: ([], [11])})

  def base(examples_id):
    resolved = LatestBlessedModelOnOtherDataStrategy().resolve_artifacts(
        store, {"model": list(models), "model_blessing": list(blessings),
                "examples": [_artifact("Examples", examples_id)]})
    assert [a.id for a in resolved["examples"]] == [examples_id]   # passed through
    return [m.id for m in resolved["model"]]

  assert base(3) == [12]   # a new span: the latest blessed model
  # A rerun on examples 2: not the model it trained itself, the one before.
  assert base(2) == [11]
  assert base(1) == [12]
