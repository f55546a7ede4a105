"""The pipeline compiles into a Kubeflow Pipelines v2 spec with our components."""

import json
import os

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from cli.main import main as aitm
from pipeline.kubeflow_runner import IMAGE_SCHEMA_PATH, RUNTIME_PARAMETERS, compile_pipeline
from models.config import load_config
from pipeline import configs

IMAGE = "registry.example/aitm-tfx:0.1.0"
COMPONENTS = ("FileBasedExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
              "AnomaliesGate", "Transform", "Trainer", "Evaluator", "InfraValidator", "Pusher")
# consumer -> producers of the artifacts it reads
WIRING = {"StatisticsGen": {"FileBasedExampleGen"},
          "ExampleValidator": {"StatisticsGen", "ImportSchemaGen"},
          "AnomaliesGate": {"ExampleValidator"},
          "Transform": {"FileBasedExampleGen", "ImportSchemaGen"},
          "Trainer": {"Transform", "ImportSchemaGen"},
          "Evaluator": {"FileBasedExampleGen", "Trainer"},
          "InfraValidator": {"FileBasedExampleGen", "Trainer", "Evaluator"},
          "Pusher": {"Trainer", "Evaluator", "InfraValidator"}}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
  path = compile_pipeline(
      config=load_config(configs.CONFIG_PATH),
      output_file=str(tmp_path_factory.mktemp("kfp") / "aitm_pipeline.json"), image=IMAGE,
      pipeline_root="gs://bucket/aitm/root", data_root="gs://bucket/aitm/data",
      serving_dir="gs://bucket/aitm/serving", train_steps=3000,
      beam_pipeline_args=["--runner=DataflowRunner", "--project=p", "--region=r",
                          "--temp_location=gs://bucket/tmp"])
  with open(path) as f:
    return json.load(f)


def test_the_spec_is_a_valid_kfp_pipeline_spec(job):
  spec = pipeline_spec_pb2.PipelineSpec()
  json_format.ParseDict(job["pipelineSpec"], spec)   # refuses unknown or mistyped fields
  assert set(COMPONENTS) <= set(spec.root.dag.tasks)
  assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/aitm/root"


def test_every_component_runs_in_the_project_image(job):
  executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
  tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
  components = job["pipelineSpec"]["components"]
  for name in COMPONENTS:
    executor = components[tasks[name]["componentRef"]["name"]]["executorLabel"]
    assert executors[executor]["container"]["image"] == IMAGE, name


def test_wiring_matches_the_local_graph(job):
  tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
  for consumer, producers in WIRING.items():
    artifacts = tasks[consumer].get("inputs", {}).get("artifacts", {})
    read = {a["taskOutputArtifact"]["producerTask"] for a in artifacts.values()
            if "taskOutputArtifact" in a}
    assert producers <= read | set(tasks[consumer].get("dependentTasks", [])), consumer
  # Transform waits for the anomalies gate even though it reads none of its outputs.
  assert "AnomaliesGate" in tasks["Transform"].get("dependentTasks", [])


def test_infra_validator_runs_tf_serving_on_kubernetes_between_evaluator_and_pusher(job):
  """TFX's InfraValidator (its spec and executor, in a class KubeflowV2DagRunner
  compiles): tensorflow/serving on the cluster, requests from the eval examples, a
  warmup copy; after the Evaluator; the Pusher needs its blessing."""
  spec = job["pipelineSpec"]
  tasks = spec["root"]["dag"]["tasks"]
  infra = tasks["InfraValidator"]
  assert "Evaluator" in infra["dependentTasks"]
  assert infra["inputs"]["artifacts"]["model"]["taskOutputArtifact"] == {
      "outputArtifactKey": "model", "producerTask": "Trainer"}
  assert infra["inputs"]["artifacts"]["examples"]["taskOutputArtifact"][
      "producerTask"] == "FileBasedExampleGen"
  parameters = {name: json.loads(value["runtimeValue"]["constant"])
                for name, value in infra["inputs"]["parameters"].items()}
  assert parameters["serving_spec"] == {
      "kubernetes": {}, "model_name": "aitm",
      "tensorflow_serving": {"image_name": "tensorflow/serving", "tags": ["2.16.1"]}}
  assert parameters["request_spec"]["make_warmup"] is True
  assert parameters["request_spec"]["split_name"] == "eval"
  assert parameters["request_spec"]["tensorflow_serving"]["signature_names"] == [
      "serving_default"]
  executor = spec["deploymentSpec"]["executors"][
      spec["components"][infra["componentRef"]["name"]]["executorLabel"]]
  args = executor["container"]["args"]
  assert args[args.index("--executor_class_path") + 1] == (
      "components.kubernetes_infra_validator.Executor")
  pusher = tasks["Pusher"]["inputs"]["artifacts"]
  assert pusher["infra_blessing"]["taskOutputArtifact"] == {
      "outputArtifactKey": "blessing", "producerTask": "InfraValidator"}
  assert pusher["model_blessing"]["taskOutputArtifact"]["producerTask"] == "Evaluator"


def test_no_infra_validation_compiles_the_pusher_on_the_evaluator_s_blessing_alone(tmp_path):
  out = tmp_path / "spec.json"
  aitm(["compile-kfp", "--output", str(out), "--pipeline-root", "gs://b/root",
        "--no-infra-validation"])
  tasks = json.loads(out.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
  assert "InfraValidator" not in tasks
  assert set(tasks["Pusher"]["inputs"]["artifacts"]) == {"model", "model_blessing"}


def test_infra_validator_executor_is_tfx_s_with_the_namespace_of_a_kfp_v2_pod(
    tmp_path, monkeypatch):
  from tfx.components.infra_validator import executor as tfx_executor
  from tfx.utils import kube_utils

  from components import kubernetes_infra_validator as validator
  assert issubclass(validator.Executor, tfx_executor.Executor)
  namespace = tmp_path / "namespace"
  namespace.write_text("kubeflow-user\n")
  monkeypatch.delenv(kube_utils.KFP_NAMESPACE, raising=False)
  validator.set_kfp_namespace(str(tmp_path / "absent"))
  assert kube_utils.KFP_NAMESPACE not in os.environ
  validator.set_kfp_namespace(str(namespace))
  assert os.environ[kube_utils.KFP_NAMESPACE] == "kubeflow-user"
  namespace.write_text("other")
  validator.set_kfp_namespace(str(namespace))   # a KFP v1 pod's own value is kept
  assert os.environ[kube_utils.KFP_NAMESPACE] == "kubeflow-user"


def test_runtime_parameters_for_data_steps_and_serving_dir(job):
  spec = job["pipelineSpec"]
  assert set(spec["root"]["inputDefinitions"]["parameters"]) == set(RUNTIME_PARAMETERS)
  tasks = spec["root"]["dag"]["tasks"]
  assert tasks["FileBasedExampleGen"]["inputs"]["parameters"]["input_base"] == {
      "componentInputParameter": "data_root"}
  assert tasks["Trainer"]["inputs"]["parameters"]["train_args"] == {
      "componentInputParameter": "train_args"}
  assert tasks["Pusher"]["inputs"]["parameters"]["push_destination"] == {
      "componentInputParameter": "push_destination"}
  defaults = {k: v["defaultValue"] for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
  assert defaults == job["runtimeConfig"]["parameterValues"]
  assert defaults["data_root"] == "gs://bucket/aitm/data"
  assert json.loads(defaults["train_args"]) == {"splits": ["train"], "num_steps": 3000}
  assert json.loads(defaults["push_destination"]) == {
      "filesystem": {"base_directory": "gs://bucket/aitm/serving/aitm"}}


def test_config_schema_and_beam_args_travel_in_the_spec(job):
  spec = job["pipelineSpec"]
  tasks = spec["root"]["dag"]["tasks"]
  text = json.dumps(spec)
  assert "models.trainer.run_fn" in text and "models.preprocessing.preprocessing_fn" in text
  assert IMAGE_SCHEMA_PATH in text
  # The config: all of it to the Trainer, its data part to Transform.
  trainer, transform = json.dumps(tasks["Trainer"]), json.dumps(tasks["Transform"])
  assert "cvr_aitm" in trainer and "compute_vocabulary" in trainer
  assert "compute_vocabulary" in transform and "cvr_aitm" not in transform
  # Beam args reach every Beam-powered component's executor.
  executors = spec["deploymentSpec"]["executors"]
  components = spec["components"]
  for name in ("FileBasedExampleGen", "StatisticsGen", "Transform", "Evaluator"):
    executor = executors[components[tasks[name]["componentRef"]["name"]]["executorLabel"]]
    assert "--runner=DataflowRunner" in json.dumps(executor), name


def test_cli_compiles_with_defaults_and_refuses_bad_beam_args(tmp_path, capsys):
  out = tmp_path / "spec.json"
  aitm(["compile-kfp", "--output", str(out), "--pipeline-root", "gs://b/root",
        "--beam-args=--direct_running_mode=multi_processing --direct_num_workers=2"])
  job = json.loads(out.read_text())
  defaults = job["runtimeConfig"]["parameterValues"]
  assert defaults["data_root"] == "gs://b/root/data"
  assert json.loads(defaults["push_destination"])["filesystem"]["base_directory"] == \
      "gs://b/root/serving/aitm"
  assert "--direct_num_workers=2" in json.dumps(job["pipelineSpec"]["deploymentSpec"])
  assert "aitm-tfx:0.1.0" in capsys.readouterr().out
  with pytest.raises(SystemExit, match="does not know"):
    aitm(["compile-kfp", "--output", str(out), "--pipeline-root", "gs://b/root",
          "--beam-args=--direct_num_wrkers=2"])


def test_yaml_spec_is_what_the_kfp_client_uploads_with_the_defaults(tmp_path):
  from kfp.client.client import _extract_pipeline_yaml   # the loader upload/create_run use
  path = compile_pipeline(config=load_config(configs.CONFIG_PATH),
                          output_file=str(tmp_path / "aitm_pipeline.yaml"),
                          pipeline_root="gs://b/root", image=IMAGE)
  spec = _extract_pipeline_yaml(path).pipeline_spec
  assert spec.schema_version == "2.1.0"
  parameters = spec.root.input_definitions.parameters
  assert set(parameters) == set(RUNTIME_PARAMETERS)
  assert all(p.is_optional for p in parameters.values())
  assert parameters["data_root"].default_value.string_value == "gs://b/root/data"
  assert json.loads(parameters["train_args"].default_value.string_value) == {"splits": ["train"]}
  assert set(COMPONENTS) <= set(spec.root.dag.tasks)


def test_the_image_recipe_pins_the_stack_the_spec_refers_to():
  import os
  import re
  from pipeline.kubeflow_runner import IMAGE_PROJECT_DIR
  root = configs.PROJECT_DIR
  with open(os.path.join(root, "kubeflow", "Dockerfile")) as f:
    lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
  with open(os.path.join(root, "requirements.lock")) as f:
    tfx_version = re.search(r"^tfx(?:\[[^\]]*\])?==(\S+)", f.read(), re.M).group(1)
  with open(os.path.join(root, "pyproject.toml")) as f:
    version = re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)
  assert lines[0] == f"FROM tensorflow/tfx:{tfx_version}"
  assert "ENV TF_USE_LEGACY_KERAS=1" in lines
  assert f"WORKDIR {IMAGE_PROJECT_DIR}" in lines
  assert any("pip install" in l and "--no-deps -r requirements.lock" in l for l in lines)
  assert configs.KUBEFLOW_IMAGE == f"aitm-tfx:{version}"
  with open(os.path.join(root, ".dockerignore")) as f:
    ignored = set(f.read().split())
  assert {".venv", "runs"} <= ignored   # generated output never goes into the image


def _multi_worker_config():
  from models.config import parse_config
  with open(configs.CONFIG_PATH) as f:
    text = f.read().replace("train_config {",
                            "train_config {\n  train_distribute: MultiWorkerMirroredStrategy", 1)
  return parse_config(text)


def test_trainer_as_a_vertex_ai_job_on_several_workers(tmp_path):
  """--train-workers 4: TFX's Vertex AI Trainer (with components/trainer.py's raw
  examples input), whose custom job runs TFX's Trainer executor with that input (our
  run_fn) on a chief and 3 workers, all in the image."""
  from unittest import mock

  from tfx.components.trainer import executor as trainer_executor
  from tfx.extensions.google_cloud_ai_platform import training_clients
  from tfx.v1.extensions import google_cloud_ai_platform as vertex

  from pipeline.vertex_training import VertexTraining
  path = compile_pipeline(
      config=_multi_worker_config(), output_file=str(tmp_path / "spec.json"),
      pipeline_root="gs://b/root", image=IMAGE,
      vertex_training=VertexTraining(project="p", region="europe-west4", image=IMAGE,
                                     workers=4, machine_type="n1-highmem-8"))
  spec = json.loads(open(path).read())["pipelineSpec"]
  tasks, components = spec["root"]["dag"]["tasks"], spec["components"]
  executor = spec["deploymentSpec"]["executors"][
      components[tasks["Trainer"]["componentRef"]["name"]]["executorLabel"]]
  assert "components.vertex_trainer.VertexExecutor" in json.dumps(executor)
  assert tasks["Trainer"]["inputs"]["artifacts"]["raw_examples"]["taskOutputArtifact"][
      "producerTask"] == "FileBasedExampleGen"
  parameters = tasks["Trainer"]["inputs"]["parameters"]
  custom_config = json.loads(parameters["custom_config"]["runtimeValue"]["constant"])
  assert custom_config[vertex.ENABLE_VERTEX_KEY] is True
  assert custom_config[vertex.VERTEX_REGION_KEY] == "europe-west4"
  job_args = custom_config[vertex.TRAINING_ARGS_KEY]
  assert job_args["project"] == "p"
  pools = job_args["job_spec"]["worker_pool_specs"]
  assert [p["replica_count"] for p in pools] == [1, 3]
  assert {p["container_spec"]["image_uri"] for p in pools} == {IMAGE}
  assert {p["machine_spec"]["machine_type"] for p in pools} == {"n1-highmem-8"}
  assert "MultiWorkerMirroredStrategy" in custom_config["config"]

  # The CustomJob TFX submits from these arguments: every replica runs TFX's
  # Trainer executor (raw eval files for the warmup requests added) with our run_fn.
  from tfx.utils import name_utils

  from components import trainer as trainer_component
  from components.vertex_trainer import VertexExecutor
  replica_executor = name_utils.get_full_name(VertexExecutor()._GetExecutorClass())
  assert replica_executor == "components.trainer.Executor"
  assert issubclass(trainer_component.Executor, trainer_executor.GenericExecutor)
  with mock.patch.object(training_clients.VertexJobClient, "create_client"):
    client = training_clients.VertexJobClient("europe-west4")
  job = client.create_training_job(
      {}, {}, {"run_fn": "models.trainer.run_fn", "custom_config": json.dumps(custom_config)},
      replica_executor, {k: v for k, v in job_args.items() if k != "project"}, None, {})
  for pool in job["job_spec"]["worker_pool_specs"]:
    command = pool["container_spec"]["command"]
    assert pool["container_spec"]["image_uri"] == IMAGE
    assert command[command.index("--executor_class_path") + 1] == replica_executor
    assert "models.trainer.run_fn" in command[command.index("--exec-properties") + 1]


def test_several_vertex_workers_need_the_multi_worker_strategy(tmp_path):
  base = ["compile-kfp", "--output", str(tmp_path / "spec.json"), "--pipeline-root", "gs://b/r"]
  with pytest.raises(SystemExit, match="train_distribute: MultiWorkerMirroredStrategy"):
    aitm(base + ["--train-workers", "2", "--vertex-project", "p", "--vertex-region", "r"])
  with pytest.raises(SystemExit, match="also needs --vertex-project and --vertex-region"):
    aitm(base + ["--train-workers", "2"])
  assert not (tmp_path / "spec.json").exists()


class _FakeKfpClient:
  """Records what pipeline.kubeflow_schedule asks of kfp.Client."""

  def __init__(self):
    self.calls = []

  def create_experiment(self, name, namespace=None):
    self.calls.append(("create_experiment", name, namespace))
    return type("Experiment", (), {"experiment_id": "exp-1"})()

  def create_recurring_run(self, **kwargs):
    self.calls.append(("create_recurring_run", kwargs))
    return type("RecurringRun", (), {"recurring_run_id": "rr-1"})()


def test_schedule_creates_one_recurring_run_of_the_compiled_package(tmp_path):
  from pipeline.kubeflow_schedule import schedule
  package = compile_pipeline(config=load_config(configs.CONFIG_PATH),
                             output_file=str(tmp_path / "aitm_pipeline.yaml"),
                             pipeline_root="gs://b/root", image=IMAGE)
  client = _FakeKfpClient()
  run = schedule(client, package, cron="0 30 2 * * *", params={"data_root": "gs://b/spans"},
                 namespace="team")
  assert run.recurring_run_id == "rr-1"
  assert client.calls[0] == ("create_experiment", "aitm", "team")
  kwargs = client.calls[1][1]
  assert kwargs == dict(experiment_id="exp-1", job_name="aitm-daily",
                        cron_expression="0 30 2 * * *", max_concurrency=1, no_catchup=True,
                        params={"data_root": "gs://b/spans"}, pipeline_package_path=package,
                        enable_caching=True)

  with pytest.raises(ValueError, match="use '0 30 2 \\* \\* \\*'"):
    schedule(client, package, cron="30 2 * * *")   # a crontab line: KFP wants seconds too
  with pytest.raises(ValueError, match="no runtime parameter data_dir"):
    schedule(client, package, params={"data_dir": "x"})
  assert len(client.calls) == 2   # refused before anything was created


def test_cli_schedule_refuses_before_contacting_kfp(tmp_path):
  base = ["schedule-kfp", "--host", "http://127.0.0.1:9"]
  with pytest.raises(SystemExit, match="does not exist"):
    aitm(base + ["--package", str(tmp_path / "missing.yaml")])
  with pytest.raises(SystemExit, match="write NAME=VALUE"):
    aitm(base + ["--package", str(tmp_path / "missing.yaml"), "--param", "data_root"])


def test_spans_compile_to_the_span_pattern_with_no_custom_resolvers(tmp_path):
  aitm(["compile-kfp", "--output", str(tmp_path / "spec.json"), "--pipeline-root", "gs://b/r",
        "--spans"])
  spec = json.loads((tmp_path / "spec.json").read_text())["pipelineSpec"]
  tasks = spec["root"]["dag"]["tasks"]
  assert "span-{SPAN}/*" in json.dumps(tasks["FileBasedExampleGen"])
  assert not {"previous_span_statistics", "span_window", "DistributionValidator"} & set(tasks)


def test_warm_start_compiles_with_the_stock_latest_blessed_model_resolver(tmp_path):
  out = tmp_path / "spec.json"
  aitm(["compile-kfp", "--output", str(out), "--pipeline-root", "gs://b/root", "--warm-start"])
  tasks = json.loads(out.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
  base = tasks["Trainer"]["inputs"]["artifacts"]["base_model"]["taskOutputArtifact"]
  assert base == {"outputArtifactKey": "model",
                  "producerTask": "warm_start_model_resolver-model-resolver"}
  # The Evaluator's baseline keeps its own resolver.
  assert tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"][
      "producerTask"] == "latest_blessed_model_resolver-model-resolver"


def test_bulk_infer_compiles_tfx_s_bulk_inferrer_on_a_candidates_runtime_parameter(tmp_path,
                                                                                   capsys):
  """`compile-kfp --bulk-infer DIR`: what `aitm run --bulk-infer` adds, in the compiled
  graph: the candidate ExampleGen reads a fourth runtime parameter (DIR its default) and
  BulkInferrer scores its examples with the Trainer's model, gated on the Evaluator."""
  from pipeline.kubeflow_runner import CANDIDATES_PARAMETER
  from pipeline.pipeline import BULK_INFERRER_ID, CANDIDATE_EXAMPLE_GEN_ID
  out = tmp_path / "spec.json"
  aitm(["compile-kfp", "--output", str(out), "--pipeline-root", "gs://b/root",
        "--bulk-infer", "gs://b/candidates/2026-12-06"])
  assert "candidates_root" in capsys.readouterr().out
  job = json.loads(out.read_text())
  spec = job["pipelineSpec"]
  spec_proto = pipeline_spec_pb2.PipelineSpec()
  json_format.ParseDict(spec, spec_proto)
  assert set(spec["root"]["inputDefinitions"]["parameters"]) == {
      *RUNTIME_PARAMETERS, CANDIDATES_PARAMETER}
  assert job["runtimeConfig"]["parameterValues"][CANDIDATES_PARAMETER] == \
      "gs://b/candidates/2026-12-06"
  tasks = spec["root"]["dag"]["tasks"]
  assert set(COMPONENTS) | {CANDIDATE_EXAMPLE_GEN_ID, BULK_INFERRER_ID} <= set(tasks)
  assert tasks[CANDIDATE_EXAMPLE_GEN_ID]["inputs"]["parameters"]["input_base"] == {
      "componentInputParameter": CANDIDATES_PARAMETER}
  assert tasks["FileBasedExampleGen"]["inputs"]["parameters"]["input_base"] == {
      "componentInputParameter": "data_root"}
  inferrer = tasks[BULK_INFERRER_ID]["inputs"]["artifacts"]
  assert {key: a["taskOutputArtifact"]["producerTask"] for key, a in inferrer.items()} == {
      "examples": CANDIDATE_EXAMPLE_GEN_ID, "model": "Trainer", "model_blessing": "Evaluator"}
  parameters = json.dumps(tasks[BULK_INFERRER_ID]["inputs"]["parameters"])
  assert "serving_default" in parameters and '\\"ctr\\"' in parameters
  # Without the flag the spec is unchanged: no candidates, three parameters.
  aitm(["compile-kfp", "--output", str(out), "--pipeline-root", "gs://b/root"])
  plain = json.loads(out.read_text())["pipelineSpec"]
  assert set(plain["root"]["inputDefinitions"]["parameters"]) == set(RUNTIME_PARAMETERS)
  assert set(plain["root"]["dag"]["tasks"]) == set(tasks) - {CANDIDATE_EXAMPLE_GEN_ID,
                                                              BULK_INFERRER_ID}
