"""The AITM component graph, built from plain arguments (one factory, any runner)."""

import os
from typing import Any, Dict, Optional, Sequence

from tfx import v1 as tfx
from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components.anomalies_gate import AnomaliesGate
from components.csv_example_gen import executor as csv_executor
from models import preprocessing
from models import trainer as trainer_module
from models.config import PipelineConfig
from models.eval_config import make_eval_config
from pipeline import configs


def create_pipeline(
    *,
    config: PipelineConfig,
    pipeline_root: str,
    data_root: str,
    serving_dir: str,
    pipeline_name: str = configs.PIPELINE_NAME,
    model_name: str = configs.MODEL_NAME,
    schema_path: str = configs.SCHEMA_PATH,
    training: Optional[Dict[str, Any]] = None,
    min_auc: Optional[Dict[str, float]] = None,
    push: bool = True,
    beam_pipeline_args: Sequence[str] = configs.BEAM_PIPELINE_ARGS,
    metadata_connection_config=None,
    enable_cache: bool = True,
) -> tfx.dsl.Pipeline:
  """ExampleGen -> StatisticsGen / schema -> ExampleValidator -> gate -> Transform
  -> Trainer -> Evaluator -> Pusher (to `<serving_dir>/<model_name>/<version>`).

  `config` is the checked EasyRec config: ExampleGen and Transform get its data
  part (so a model-only change reuses their cached outputs), the Trainer all
  of it, the Evaluator its task towers. Without `push`, the graph ends at the
  Evaluator (`aitm compare`). Callers check the config against the schema
  first (pipeline.schema_check), where the schema file is readable.
  """
  example_gen = FileBasedExampleGen(
      input_base=data_root,
      custom_config=csv_executor.example_gen_custom_config(config),
      custom_executor_spec=executor_spec.BeamExecutorSpec(csv_executor.Executor),
      output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
          example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=configs.TRAIN_BUCKETS),
          example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=configs.EVAL_BUCKETS),
      ])))
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
  schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
  gate = AnomaliesGate(anomalies=example_validator.outputs["anomalies"])

  transform = tfx.components.Transform(
      examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
      preprocessing_fn="models.preprocessing.preprocessing_fn",
      custom_config={preprocessing.CONFIG_KEY: config.data_text()})
  transform.add_upstream_node(gate)

  trainer = tfx.components.Trainer(
      run_fn="models.trainer.run_fn",
      examples=transform.outputs["transformed_examples"],
      transform_graph=transform.outputs["transform_graph"],
      schema=schema_gen.outputs["schema"],
      train_args=tfx.proto.TrainArgs(splits=["train"]),
      eval_args=tfx.proto.EvalArgs(splits=["eval"]),
      custom_config={trainer_module.CONFIG_KEY: config.text,
                     trainer_module.TRAINING_KEY: dict(training or {})})

  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
      eval_config=make_eval_config(config, min_auc))
  components = [example_gen, statistics_gen, schema_gen, example_validator, gate,
                transform, trainer, evaluator]
  if push:
    components.append(tfx.components.Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.path.join(serving_dir, model_name)))))

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=components,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=list(beam_pipeline_args))
