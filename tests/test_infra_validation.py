"""Infra validation before push, locally (components/local_infra_validator.py): a
candidate loaded by a fresh `aitm serve` process must answer its warmup requests over
gRPC, or it is not blessed and the Pusher pushes nothing. Over tiny models
(conftest.tiny_model_base), a small pipeline of the validator and the Pusher, and the
session run (conftest.pipeline_run)."""

import os
import shutil

import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.components.util import model_utils
from tfx.types import standard_artifacts

from components import local_infra_validator, serving_pusher
from components.local_infra_validator import LocalInfraValidator, validate
from models import warmup_requests
from pipeline import configs
from pipeline.local_runner import run_dag
from pipeline.pipeline import INFRA_VALIDATOR_ID
from report.metadata import custom_property, read_run

TINY_RAW = {"pid": tf.string, "price": tf.int64, "score": tf.float32}


def _row(pid, price, score):
  example = tf.train.Example()
  example.features.feature["pid"].bytes_list.value.append(pid)
  example.features.feature["price"].int64_list.value.append(price)
  example.features.feature["score"].float_list.value.append(score)
  return example


ROWS = [_row(b"a", 1, 0.5), _row(b"bb", 4, -1.0), _row(b"ccc", 9, 2.5)]


def _candidate(tiny_model_base, path, logs=None):
  """The tiny model at `path`, with `logs` (default: warmup requests built from ROWS)."""
  shutil.copytree(os.path.join(tiny_model_base, "1"), path)
  warmup_requests.write_requests(path, logs or warmup_requests.build_requests(ROWS, TINY_RAW))
  return path


def _truncate(path, keep=0.5):
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:int(len(data) * keep)])


def _shard(model):
  variables = os.path.join(model, "variables")
  return os.path.join(variables, next(n for n in os.listdir(variables) if "-of-" in n))


def test_a_good_candidate_is_blessed_once_it_answers_every_warmup_request(tiny_model_base,
                                                                          tmp_path):
  outcome = validate(_candidate(tiny_model_base, str(tmp_path / "good")), "tiny", 180)
  assert outcome.blessed, outcome.reason
  assert outcome.reason.startswith("AVAILABLE in a fresh model server after ")
  assert outcome.reason.endswith("; 4 warmup requests answered over gRPC")


def test_corrupt_candidates_are_refused_with_the_reason(tiny_model_base, tmp_path):
  # A variables shard cut short: the server's load fails, and says how.
  cut = _candidate(tiny_model_base, str(tmp_path / "cut"))
  _truncate(_shard(cut))
  outcome = validate(cut, "tiny", 180)
  assert not outcome.blessed
  assert outcome.reason == ("failed to load in the model server: IndexError: Read less "
                            "bytes than requested"), outcome.reason
  # A saved_model.pb cut short is no SavedModel: refused before any server starts.
  graph = _candidate(tiny_model_base, str(tmp_path / "graph"))
  _truncate(os.path.join(graph, "saved_model.pb"))
  outcome = validate(graph, "tiny", 180)
  assert not outcome.blessed
  assert outcome.reason == (f"not a complete SavedModel: {graph} lacks saved_model.pb "
                            "(does not parse yet)")
  # A model that loads but can't answer its own warmup request (price sent as text).
  logs = warmup_requests.build_requests(ROWS, TINY_RAW)
  logs[-1].predict_log.request.inputs["price"].CopyFrom(tf.make_tensor_proto([b"1"] * 3))
  outcome = validate(_candidate(tiny_model_base, str(tmp_path / "wrong"), logs), "tiny", 180)
  assert not outcome.blessed
  assert outcome.reason == (
      "failed to load in the model server: WarmupError: warmup record 4 of 4 "
      "(serving_raw) failed: INVALID_ARGUMENT: input 'price': expects int64 but got string")


def _artifact(kind, uri, **properties):
  artifact = getattr(standard_artifacts, kind)()
  artifact.uri = uri
  os.makedirs(uri, exist_ok=True)
  for key, value in properties.items():
    artifact.set_int_custom_property(key, value)
  return artifact


def test_an_unblessed_model_is_not_started_and_tfx_s_pusher_honours_the_verdict(tmp_path):
  model = _artifact("Model", str(tmp_path / "model"))
  blessing = _artifact("InfraBlessing", str(tmp_path / "blessing"))
  evaluator = _artifact("ModelBlessing", str(tmp_path / "evaluator"), blessed=0)
  local_infra_validator.Executor().Do(
      {"model": [model], "model_blessing": [evaluator]}, {"blessing": [blessing]},
      {"model_name": "aitm", "max_loading_seconds": 5})
  reason = "the Evaluator did not bless the model, so it was not started"
  assert custom_property(blessing.mlmd_artifact, "reason") == reason
  with open(tmp_path / "blessing" / "INFRA_NOT_BLESSED") as f:
    assert f.read() == reason
  assert not model_utils.is_infra_validated(blessing)
  # Our Pusher's executor keeps TFX's check: a model the Evaluator blessed but the
  # infra validator did not is not pushed.
  pusher = serving_pusher.Executor()
  evaluated = _artifact("ModelBlessing", str(tmp_path / "blessed"), blessed=1)
  assert pusher.CheckBlessing({"model_blessing": [evaluated]})
  assert not pusher.CheckBlessing({"model_blessing": [evaluated], "infra_blessing": [blessing]})
  blessing.set_int_custom_property("blessed", 1)
  assert pusher.CheckBlessing({"model_blessing": [evaluated], "infra_blessing": [blessing]})


def test_in_a_pipeline_the_pusher_pushes_the_good_candidate_and_not_the_broken_one(
    tiny_model_base, tmp_path):
  """Importer -> LocalInfraValidator -> our Pusher, twice in one LocalDagRunner run:
  a good tiny candidate and one whose variables shard is cut short."""
  nodes = []
  for name in ("good", "broken"):
    model = _candidate(tiny_model_base, str(tmp_path / "models" / name / "Format-Serving"))
    if name == "broken":
      _truncate(_shard(model))
    importer = tfx.dsl.Importer(
        source_uri=str(tmp_path / "models" / name), artifact_type=standard_artifacts.Model,
        custom_properties={"tfx_version": "1.16.0"}).with_id(f"{name}_model")
    validator = LocalInfraValidator(model=importer.outputs["result"], model_name="tiny",
                                    max_loading_seconds=180).with_id(f"{name}_validator")
    pusher = serving_pusher.Pusher(
        model=importer.outputs["result"], infra_blessing=validator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=str(tmp_path / "serving" / name)))).with_id(f"{name}_pusher")
    nodes += [importer, validator, pusher]
  root = str(tmp_path / "root")
  run_dag(tfx.dsl.Pipeline(
      pipeline_name="infra", pipeline_root=root, components=nodes,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          configs.metadata_path(root))))
  run = read_run(configs.metadata_path(root))
  good = run.output("good_validator", "InfraBlessing")
  broken = run.output("broken_validator", "InfraBlessing")
  assert custom_property(good, "blessed") == 1
  assert custom_property(broken, "blessed") == 0
  assert custom_property(broken, "reason").startswith("failed to load in the model server")
  assert len(os.listdir(tmp_path / "serving" / "good")) == 1
  assert not os.path.exists(tmp_path / "serving" / "broken")
  assert custom_property(run.output("broken_pusher", "PushedModel"), "pushed") == 0


@pytest.mark.e2e
def test_the_session_run_validated_its_model_before_the_push(pipeline_run):
  """The first run's InfraValidator loaded the candidate and sent it its 4 warmup
  requests; the rerun reused it from the cache, as it did the Pusher."""
  first, second = pipeline_run.first, pipeline_run.second
  assert first.component_states[INFRA_VALIDATOR_ID] == "COMPLETE"
  assert second.component_states[INFRA_VALIDATOR_ID] == "CACHED"
  assert first.infra_blessed is True and first.pushed_dir
  assert first.infra_reason.endswith("; 4 warmup requests answered over gRPC")
  assert f"infra validated       yes: {first.infra_reason}" in first.table()
