"""Compiles the pipeline into a Kubeflow Pipelines (v2) spec with KubeflowV2DagRunner.

The graph is the one `aitm run` executes locally (pipeline.create_pipeline);
only the places change: data, pipeline root and serving dir become cluster
paths (gs://, s3:// or a mounted volume), the schema path is the one inside the
container image, and ML Metadata is the cluster's.

Three runtime parameters can be set when a run is submitted (the KFP UI, or
`kfp.Client().create_run_from_pipeline_package(..., arguments={...})`):

* `data_root`: the directory of CSV files ExampleGen reads;
* `train_args`: the Trainer's TrainArgs as JSON, e.g.
  `{"splits": ["train"], "num_steps": 20000}` (no num_steps: the config's
  budget and early stopping);
* `push_destination`: the Pusher's PushDestination as JSON, e.g.
  `{"filesystem": {"base_directory": "gs://bucket/serving/aitm"}}`.

Compiled with `bulk_infer`, a fourth, `candidates_root`: the directory of candidate
CSV files that BulkInferrer scores with the blessed model.
"""

import json
import os
from typing import Optional, Sequence

import yaml

from tfx.orchestration.data_types import RuntimeParameter
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

from components.label_blind_split import Split
from models.config import PipelineConfig
from pipeline import beam_options, configs
from pipeline.pipeline import InfraValidation, create_pipeline
from pipeline.schema_check import check_schema
from pipeline.spans import SpanSettings
from pipeline.vertex_training import VertexTraining

# Where the Dockerfile puts the project inside the image.
IMAGE_PROJECT_DIR = "/aitm"
IMAGE_SCHEMA_PATH = f"{IMAGE_PROJECT_DIR}/schemas/{os.path.basename(configs.SCHEMA_PATH)}"
RUNTIME_PARAMETERS = ("data_root", "train_args", "push_destination")
CANDIDATES_PARAMETER = "candidates_root"


def compile_pipeline(*, config: PipelineConfig, output_file: str, pipeline_root: str,
                     image: str = configs.KUBEFLOW_IMAGE, data_root: Optional[str] = None,
                     serving_dir: Optional[str] = None,
                     model_name: str = configs.MODEL_NAME,
                     schema_path: str = IMAGE_SCHEMA_PATH, training=None,
                     train_steps: Optional[int] = None,
                     beam_pipeline_args: Sequence[str] = configs.BEAM_PIPELINE_ARGS,
                     vertex_training: Optional[VertexTraining] = None,
                     keep_versions: Optional[int] = configs.KEEP_VERSIONS,
                     spans: bool = False, warm_start: bool = configs.WARM_START,
                     split: Split = configs.SPLIT, infra_validation: bool = True,
                     bulk_infer: Optional[str] = None) -> str:
  """Writes the pipeline spec (JSON or YAML by extension) and returns its path.

  `data_root` (default `<pipeline_root>/data`), `train_steps` (default: none,
  the config decides) and `serving_dir` (default `<pipeline_root>/serving`) are
  the runtime parameters' defaults. `beam_pipeline_args` are checked with Beam
  (pipeline.beam_options.parse) before anything is written. `vertex_training`:
  the Trainer runs as a Vertex AI custom job on several workers
  (pipeline.vertex_training); its outputs go under `pipeline_root`, which
  every worker must reach. `spans`: `data_root` holds `span-N/` directories and
  each run reads the newest (ExampleGen's {SPAN} pattern); the drift check and
  the training window need custom resolver strategies, which KubeflowV2DagRunner
  does not compile, so a Kubeflow run trains on its own span, unchecked for drift.
  `warm_start`: the Trainer's base_model is the latest blessed model (TFX's
  stock LatestBlessedModelStrategy, which KubeflowV2DagRunner compiles); unlike
  a local run's, it may be a model trained on the same data, when a run is
  repeated on a span. `split`: ExampleGen's train/eval split
  (components/label_blind_split.py); a split by span needs no resolver, so it
  compiles: each run reads every span under data_root, the newest evaluates.
  `infra_validation`: between the Evaluator and the Pusher, TFX's InfraValidator loads
  the candidate in `tensorflow/serving` on the cluster and sends it requests; the
  Pusher needs its blessing (components/kubernetes_infra_validator.py).
  `bulk_infer`: the default of a fourth runtime parameter, `candidates_root`, a
  directory of candidate CSV files; a candidate ExampleGen reads it and TFX's
  BulkInferrer scores it with the Trainer's model once the Evaluator blessed it,
  as `aitm run --bulk-infer` does.

  The config travels inside the spec (component custom_config); the schema is
  read in the image, and checked here against this checkout's copy of it.
  """
  check_schema(config, os.path.join(configs.PROJECT_DIR, "schemas",
                                    os.path.basename(schema_path)))
  beam_options.parse(beam_pipeline_args)
  pipeline_root = pipeline_root.rstrip("/")
  serving_dir = serving_dir or f"{pipeline_root}/serving"
  train_args = {"splits": ["train"]}
  if train_steps:
    train_args["num_steps"] = int(train_steps)
  defaults = {
      "data_root": data_root or f"{pipeline_root}/data",
      "train_args": json.dumps(train_args),
      "push_destination": json.dumps(
          {"filesystem": {"base_directory": f"{serving_dir.rstrip('/')}/{model_name}"}}),
  }
  if bulk_infer is not None:
    defaults[CANDIDATES_PARAMETER] = bulk_infer
  parameters = {name: RuntimeParameter(name=name, ptype=str, default=value)
                for name, value in defaults.items()}
  pipeline = create_pipeline(
      config=config, pipeline_root=pipeline_root, data_root=parameters["data_root"],
      serving_dir=serving_dir, model_name=model_name, schema_path=schema_path,
      training=training, train_args=parameters["train_args"],
      push_destination=parameters["push_destination"], beam_pipeline_args=beam_pipeline_args,
      vertex_training=vertex_training, keep_versions=keep_versions,
      spans=SpanSettings(drift_check=False) if spans else None, warm_start=warm_start,
      split=split, infra_validation=InfraValidation.KUBERNETES if infra_validation else None,
      bulk_infer=parameters.get(CANDIDATES_PARAMETER))
  # Schema 2.1: what KFP 2.x servers read.
  runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
      config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(default_image=image,
                                                            use_pipeline_spec_2_1=True))
  job = runner.run(pipeline, parameter_values=defaults, write_out=False)
  _write_spec(job, defaults, output_file)
  return output_file


def _write_spec(job, defaults, output_file):
  """`.yaml`: the PipelineSpec that KFP's client uploads (kfp.Client().upload_pipeline /
  create_run_from_pipeline_package); `.json`: the PipelineJob that Vertex AI
  Pipelines runs. Either way the runtime parameters' defaults are in the spec
  (`defaultValue`, optional), so a run may leave any of them out; TFX's writer
  keeps them only in the PipelineJob's runtimeConfig, which the YAML lacks."""
  spec = job["pipelineSpec"]
  for name, value in defaults.items():
    parameter = spec["root"]["inputDefinitions"]["parameters"][name]
    parameter.update(defaultValue=value, isOptional=True)
  with open(output_file, "w") as f:
    if output_file.endswith((".yaml", ".yml")):
      yaml.safe_dump(spec, f, sort_keys=True)
    else:
      json.dump(job, f, sort_keys=True, indent=1)
