"""The pipeline compiles into a Kubeflow Pipelines v2 spec with our components."""

import json

from kubeflow.runner import IMAGE_SCHEMA_PATH, compile_pipeline


def test_compiles_a_pipeline_spec(tmp_path):
  path = compile_pipeline(
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
  assert "gs://bucket/aitm/serving/aitm" in text
  assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/aitm/root"
  # Transform waits for the anomalies gate even though it reads none of its outputs.
  assert "AnomaliesGate" in tasks["Transform"].get("dependentTasks", [])
