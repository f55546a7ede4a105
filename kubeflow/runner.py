"""Compiles the pipeline into a Kubeflow Pipelines (v2) spec with KubeflowV2DagRunner.

The graph is the one `aitm run` executes locally (pipeline.create_pipeline);
only the places change: data, pipeline root and serving dir become cluster
paths (gs://, s3:// or a mounted volume), the schema path is the one inside the
container image, and ML Metadata is the cluster's.
"""

import os

from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from models.config import PipelineConfig
from pipeline import configs
from pipeline.pipeline import create_pipeline
from pipeline.schema_check import check_schema

# Where the Dockerfile puts the project inside the image.
IMAGE_PROJECT_DIR = "/aitm"
IMAGE_SCHEMA_PATH = f"{IMAGE_PROJECT_DIR}/schemas/{os.path.basename(configs.SCHEMA_PATH)}"


def compile_pipeline(*, config: PipelineConfig, output_file: str, image: str,
                     pipeline_root: str, data_root: str, serving_dir: str,
                     model_name: str = configs.MODEL_NAME,
                     schema_path: str = IMAGE_SCHEMA_PATH, training=None) -> str:
  """Writes the pipeline spec (JSON or YAML by extension) and returns its path.

  The config travels inside the spec (component custom_config); the schema is
  read in the image, and checked here against this checkout's copy of it.
  """
  check_schema(config, os.path.join(configs.PROJECT_DIR, "schemas",
                                    os.path.basename(schema_path)))
  pipeline = create_pipeline(
      config=config,
      pipeline_root=pipeline_root, data_root=data_root, serving_dir=serving_dir,
      model_name=model_name, schema_path=schema_path, training=training,
      # Beam runs inside each component's pod; Dataflow/Flink/Spark args go here.
      beam_pipeline_args=("--direct_running_mode=in_memory", "--direct_num_workers=1"))
  runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
      config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=image),
      output_dir=os.path.dirname(os.path.abspath(output_file)),
      output_filename=os.path.basename(output_file))
  runner.run(pipeline, write_out=True)
  return output_file
