"""The AITM component graph, built from plain arguments (one factory, any runner)."""

import os
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence, Set, Union

from tfx import v1 as tfx
from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy)
from tfx.orchestration.data_types import RuntimeParameter
from tfx.components.distribution_validator.component import DistributionValidator
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import Channel
from tfx.types.standard_artifacts import Examples, ExampleStatistics, Model, ModelBlessing

from components.aliccp_example_gen import aliccp_example_gen
from components.aliccp_example_gen import check_config as check_aliccp_config
from components.anomalies_gate import AnomaliesGate
from components import serving_pusher
from components.csv_example_gen import executor as csv_executor
from components.label_blind_split import Split
from components.split_executor import output_config as split_output_config
from models import preprocessing
from models import trainer as trainer_module
from models.config import PipelineConfig
from models.eval_config import make_eval_config
from models.training import TrainingConfig
from pipeline import configs
from pipeline.spans import (ALL_SPANS_PATTERN, SPAN_PATTERN, PreviousSpanStrategy,
                            SpanWindowStrategy, drift_config)

if TYPE_CHECKING:
  from pipeline.vertex_training import VertexTraining

RESOLVER_ID = "latest_blessed_model_resolver"
WARM_START_ID = "warm_start_model_resolver"
PREVIOUS_SPAN_ID = "previous_span_statistics"
SPAN_WINDOW_ID = "span_window"
DATA_FORMATS = ("csv", "aliccp")


class LatestBlessedOtherModelStrategy(LatestBlessedModelStrategy):
  """The latest blessed model that is not the candidate itself.

  Inputs `model` and `model_blessing` as for LatestBlessedModelStrategy, plus
  `candidate` (the Trainer's model, passed through). When the Trainer comes
  from the cache its model is the one blessed last time; the stock strategy
  would make it its own baseline, so the Evaluator's inputs would differ from
  the first run's, and it would re-evaluate the model against itself and push
  a copy. Leaving the candidate out gives the first run's inputs back, and the
  rerun is served from the cache.
  """

  def resolve_artifacts(self, store, input_dict):
    candidate = list(input_dict.get("candidate", []))
    exclude = {artifact.id for artifact in candidate}
    others = [m for m in input_dict.get("model", []) if m.id not in exclude]
    result = self._resolve({"model": others,
                            "model_blessing": list(input_dict.get("model_blessing", []))},
                           "model", "model_blessing")
    result["candidate"] = candidate
    return result


class LatestBlessedModelOnOtherDataStrategy(LatestBlessedModelStrategy):
  """The latest blessed model that was not trained on this run's training data.

  Inputs `model` and `model_blessing` as for LatestBlessedModelStrategy, plus
  `examples` (Transform's transformed examples, passed through). A rerun on
  the same data would otherwise warm-start from the model its first run
  trained and blessed: the Trainer's inputs would differ from the first run's,
  so it would train again, on the same rows, instead of coming from the cache.
  Leaving out the models trained on these examples gives the first run's base
  model back; models trained on other data (an earlier span or window) are
  what a warm start is for.
  """

  def resolve_artifacts(self, store, input_dict):
    examples = list(input_dict.get("examples", []))
    models = list(input_dict.get("model", []))
    same_data = _trained_on(store, models, {a.id for a in examples})
    result = self._resolve({"model": [m for m in models if m.id not in same_data],
                            "model_blessing": list(input_dict.get("model_blessing", []))},
                           "model", "model_blessing")
    result["examples"] = examples
    return result


def _trained_on(store, models, examples_ids: Set[int]) -> Set[int]:
  """The ids of `models` whose producing execution read one of `examples_ids`: a
  Trainer's (a resolver that passed a model on records it as an output only)."""
  if not models or not examples_ids:
    return set()
  produced: Dict[int, Set[int]] = {}
  for event in store.get_events_by_artifact_ids([m.id for m in models]):
    if event.type == event.OUTPUT:
      produced.setdefault(event.execution_id, set()).add(event.artifact_id)
  found: Set[int] = set()
  for event in store.get_events_by_execution_ids(sorted(produced)):
    if event.type == event.INPUT and event.artifact_id in examples_ids:
      found |= produced[event.execution_id]
  return found


def _blessed_model_resolver(node_id: str, rerun_safe: bool, strategy, **inputs
                            ) -> tfx.dsl.Resolver:
  """The latest blessed Model (and its ModelBlessing) of this pipeline, from ML
  Metadata: with `rerun_safe` by `strategy`, one of the strategies above, which
  also reads `inputs`; else by TFX's stock LatestBlessedModelStrategy (what
  KubeflowV2DagRunner compiles)."""
  if not rerun_safe:
    strategy, inputs = tfx.dsl.experimental.LatestBlessedModelStrategy, {}
  return tfx.dsl.Resolver(
      strategy_class=strategy, model=Channel(type=Model),
      model_blessing=Channel(type=ModelBlessing), **inputs).with_id(node_id)


def create_pipeline(
    *,
    config: PipelineConfig,
    pipeline_root: str,
    data_root: Union[str, RuntimeParameter],
    serving_dir: str,
    pipeline_name: str = configs.PIPELINE_NAME,
    model_name: str = configs.MODEL_NAME,
    schema_path: str = configs.SCHEMA_PATH,
    training: Optional[Dict[str, Any]] = None,
    min_auc: Optional[Mapping[str, float]] = None,
    max_auc_drop: Optional[Mapping[str, float]] = None,
    push: bool = True,
    evaluate: bool = True,
    train: bool = True,
    rerun_safe_resolvers: bool = False,
    beam_pipeline_args: Sequence[str] = configs.BEAM_PIPELINE_ARGS,
    metadata_connection_config=None,
    enable_cache: bool = True,
    data_format: str = "csv",
    train_args: Union[None, tfx.proto.TrainArgs, RuntimeParameter] = None,
    push_destination: Union[None, tfx.proto.PushDestination, RuntimeParameter] = None,
    vertex_training: Optional["VertexTraining"] = None,
    keep_versions: Optional[int] = configs.KEEP_VERSIONS,
    spans: bool = False,
    span: Optional[int] = None,
    train_spans: int = 1,
    drift_check: bool = True,
    warm_start: bool = configs.WARM_START,
    split: Split = configs.SPLIT,
) -> tfx.dsl.Pipeline:
  """ExampleGen -> StatisticsGen / schema -> ExampleValidator -> gate -> Transform
  -> Trainer -> Evaluator -> Pusher (to `<serving_dir>/<model_name>/<version>`).

  `config` is the checked EasyRec config: ExampleGen and Transform get its data
  part (so a model-only change reuses their cached outputs), the Trainer all
  of it, the Evaluator its task towers. Callers check the config against the
  schema first (pipeline.schema_check), where the schema file is readable.

  With `push`, the Evaluator gates (models.eval_config): per task an AUC floor
  (`min_auc`) and at most `max_auc_drop` below the baseline, the latest blessed
  model of this pipeline (resolved from ML Metadata by `RESOLVER_ID`; none on
  the first run, when the floors alone decide), and Pusher pushes only a
  blessed model, whole (components.serving_pusher), then deletes the versions
  beyond the newest `keep_versions` (None: keeps all).
  `rerun_safe_resolvers` resolves the baseline with
  LatestBlessedOtherModelStrategy and the warm-start base with
  LatestBlessedModelOnOtherDataStrategy, which give a rerun its first run's
  inputs, so it is served from the cache (what LocalDagRunner runs use);
  KubeflowV2DagRunner compiles only the stock LatestBlessedModelStrategy. Without `push` (`aitm compare`) the graph ends
  at an Evaluator with no thresholds and no baseline, so such a model never
  becomes one; without `evaluate` too, it ends at the Trainer (benchmarks
  that score models on their own test rows), and without `train` too at
  Transform (the Beam stages alone, for benchmarks).

  `data_format`: "csv" (CSV files with a header, components/csv_example_gen) or
  "aliccp" (Ali-CCP's raw skeleton and common-features files,
  components/aliccp_example_gen; the config must declare its columns).

  `split` (components/label_blind_split.py): how ExampleGen cuts train and eval
  without reading the labels: by row (4:1, the default), by columns, or by span
  (`data_root` holds span-N/ directories, ExampleGen reads them all, the newest
  evaluates, the ones before it train; not with `spans`, whose runs ingest one
  span each).

  `data_root`, `train_args` and `push_destination` may be RuntimeParameters
  (Kubeflow: set when a run is submitted; the last two as JSON of their
  protos). By default the Trainer gets the train split, the step budget of the
  config, and the Pusher `<serving_dir>/<model_name>`.

  `spans` (pipeline.spans): `data_root` holds `span-N/` directories; ExampleGen
  reads span `span`, or the newest. Transform and the Trainer then take the last
  `train_spans` ingested spans up to it (a resolver over ML Metadata), and with
  `drift_check` the span's statistics are compared with the previous span's by
  DistributionValidator, with the thresholds of the schema's drift comparators;
  the gate stops the run on drift as on a schema anomaly. The evaluation uses
  this span's eval split.

  `warm_start`: the Trainer gets the latest blessed model as its `base_model`
  (resolved by `WARM_START_ID`) and starts from its weights when the
  architecture matches (models/warm_start.py); none yet, or another
  architecture, is a fresh start, and the Trainer says why.

  `vertex_training` (pipeline.vertex_training): the Trainer runs as a Vertex AI
  custom job on that many workers (TFX's Vertex AI Trainer) instead of in its
  own pod.
  """
  if span is not None and not spans:
    raise ValueError("span needs spans=True (data_root holding span-N directories)")
  if train_spans < 1 or (train_spans > 1 and not spans):
    raise ValueError(f"train_spans {train_spans}: at least 1, and more only with spans")
  if split.kind == "span" and spans:
    raise ValueError("a split by span reads every span in one run; spans=True ingests one "
                     "span per run: use one or the other")
  if data_format == "aliccp":
    if spans:
      raise ValueError("spans are read from CSV data only")
    check_aliccp_config(config)
    example_gen = aliccp_example_gen(data_root, split=split)
  elif data_format == "csv":
    span_args = {}
    if split.kind == "span":
      span_args["input_config"] = example_gen_pb2.Input(splits=[
          example_gen_pb2.Input.Split(name="single_split", pattern=ALL_SPANS_PATTERN)])
    if spans:
      span_args["input_config"] = example_gen_pb2.Input(splits=[
          example_gen_pb2.Input.Split(name="single_split", pattern=SPAN_PATTERN)])
      if span is not None:
        span_args["range_config"] = range_config_pb2.RangeConfig(
            static_range=range_config_pb2.StaticRange(start_span_number=span,
                                                      end_span_number=span))
    example_gen = FileBasedExampleGen(
        input_base=data_root, **span_args,
        custom_config=csv_executor.example_gen_custom_config(config, split),
        custom_executor_spec=executor_spec.BeamExecutorSpec(csv_executor.Executor),
        output_config=split_output_config(configs.TRAIN_BUCKETS, configs.EVAL_BUCKETS))
  else:
    raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
  schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
  def _pipeline(components):
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=components,
        enable_cache=enable_cache, metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args))

  span_nodes = []
  drift_inputs = {}
  # The run's span for the resolvers; left out, they take the newest (a resolver's
  # config can't hold None).
  span_config = {} if span is None else {"span": span}
  drift = drift_config(schema_path) if spans and drift_check else None
  if drift is not None:
    previous = tfx.dsl.Resolver(
        strategy_class=PreviousSpanStrategy, config=span_config,
        statistics=Channel(type=ExampleStatistics, producer_component_id=statistics_gen.id,
                           output_key="statistics"),
        examples=Channel(type=Examples, producer_component_id=example_gen.id,
                         output_key="examples")).with_id(PREVIOUS_SPAN_ID)
    previous.add_upstream_node(statistics_gen)
    distribution_validator = DistributionValidator(
        statistics=statistics_gen.outputs["statistics"],
        baseline_statistics=previous.outputs["statistics"], config=drift)
    span_nodes += [previous, distribution_validator]
    drift_inputs = dict(drift_anomalies=distribution_validator.outputs["anomalies"],
                        examples=example_gen.outputs["examples"],
                        baseline_examples=previous.outputs["examples"])
  gate = AnomaliesGate(anomalies=example_validator.outputs["anomalies"], **drift_inputs)

  train_examples = example_gen.outputs["examples"]
  if train_spans > 1:
    window = tfx.dsl.Resolver(
        strategy_class=SpanWindowStrategy, config={"num_spans": train_spans, **span_config},
        examples=Channel(type=Examples, producer_component_id=example_gen.id,
                         output_key="examples")).with_id(SPAN_WINDOW_ID)
    window.add_upstream_node(example_gen)
    span_nodes.append(window)
    train_examples = window.outputs["examples"]

  transform = tfx.components.Transform(
      examples=train_examples, schema=schema_gen.outputs["schema"],
      preprocessing_fn="models.preprocessing.preprocessing_fn",
      custom_config={preprocessing.CONFIG_KEY: config.data_text()})
  transform.add_upstream_node(gate)
  stages = [example_gen, statistics_gen, schema_gen, example_validator, *span_nodes, gate,
            transform]
  if not train:
    if push or evaluate:
      raise ValueError("train=False needs push=False and evaluate=False")
    return _pipeline(stages)

  trainer_class = tfx.components.Trainer
  trainer_config = {trainer_module.CONFIG_KEY: config.text,
                    trainer_module.TRAINING_KEY: dict(training or {})}
  trainer_inputs, warm_start_nodes = {}, []
  if warm_start:
    warm_start_resolver = _blessed_model_resolver(
        WARM_START_ID, rerun_safe_resolvers, LatestBlessedModelOnOtherDataStrategy,
        examples=transform.outputs["transformed_examples"])
    warm_start_nodes.append(warm_start_resolver)
    trainer_inputs["base_model"] = warm_start_resolver.outputs["model"]
    # Only then: a run without warm start keeps the Trainer's cache key it had.
    trainer_config[trainer_module.WARM_START_KEY] = True
  if vertex_training is not None:
    vertex_training.check_strategy(
        TrainingConfig.from_config(config.proto, training).distribute)
    # Imported here: only a compile for Vertex AI needs Google Cloud's client.
    from tfx.v1.extensions.google_cloud_ai_platform import Trainer as trainer_class
    trainer_config.update(vertex_training.custom_config())
  trainer = trainer_class(
      run_fn="models.trainer.run_fn",
      examples=transform.outputs["transformed_examples"],
      transform_graph=transform.outputs["transform_graph"],
      schema=schema_gen.outputs["schema"],
      train_args=train_args or tfx.proto.TrainArgs(splits=["train"]),
      eval_args=tfx.proto.EvalArgs(splits=["eval"]),
      custom_config=trainer_config, **trainer_inputs)

  components = stages + warm_start_nodes + [trainer]
  if push and not evaluate:
    raise ValueError("a pushed model must be evaluated: evaluate=False needs push=False")
  eval_config = make_eval_config(config, min_auc, max_auc_drop, gate=push)
  if not push:
    if evaluate:
      components.append(tfx.components.Evaluator(
          examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
          eval_config=eval_config))
  else:
    resolver = _blessed_model_resolver(RESOLVER_ID, rerun_safe_resolvers,
                                       LatestBlessedOtherModelStrategy,
                                       candidate=trainer.outputs["model"])
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
        baseline_model=resolver.outputs["model"], eval_config=eval_config)
    pusher = serving_pusher.Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=push_destination or tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.path.join(serving_dir, model_name))),
        custom_config={serving_pusher.KEEP_VERSIONS_KEY: keep_versions})
    components += [resolver, evaluator, pusher]
  return _pipeline(components)
