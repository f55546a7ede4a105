"""The pipeline compiles into a Kubeflow Pipelines v2 spec with our components."""

import json

from kubeflow.runner import IMAGE_SCHEMA_PATH, compile_pipeline
from models.config import load_config
from pipeline import configs


def test_compiles_a_pipeline_spec(tmp_path):
  config = load_config(configs.CONFIG_PATH)
  path = compile_pipeline(
      config=config,
      output_file=str(tmp_path / "aitm_pipeline.json"), image="registry.example/aitm-tfx:0.1.0",
      pipeline_root="gs://bucket/aitm/root", data_root="gs://bucket/aitm/data",
      serving_dir="gs://bucket/aitm/serving")
  with open(path) as f:
    job = json.load(f)
  spec = job["pipelineSpec"]
  tasks = spec["root"]["dag"]["tasks"]
  for component in ("FileBasedExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                    "AnomaliesGate", "Transform", "Trainer", "Evaluator", "Pusher"):
    assert component in tasks, sorted(tasks)
  text = json.dumps(spec)
  assert "registry.example/aitm-tfx:0.1.0" in text
  assert "models.trainer.run_fn" in text and "models.preprocessing.preprocessing_fn" in text
  assert IMAGE_SCHEMA_PATH in text
  # The config travels in the spec: all of it to the Trainer, its data part to Transform.
  trainer, transform = json.dumps(tasks["Trainer"]), json.dumps(tasks["Transform"])
  assert "cvr_aitm" in trainer and "compute_vocabulary" in trainer
  assert "compute_vocabulary" in transform and "cvr_aitm" not in transform
  assert "gs://bucket/aitm/serving/aitm" in text
  assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/aitm/root"
  # Transform waits for the anomalies gate even though it reads none of its outputs.
  assert "AnomaliesGate" in tasks["Transform"].get("dependentTasks", [])
