"""The AITM component graph, built from plain arguments (one factory, any runner).

`create_pipeline` composes one part per stage, each building that stage's nodes:

  _example_gen   ExampleGen: CSV files or Ali-CCP's raw files, split without the labels
  _validation    StatisticsGen, the curated schema, ExampleValidator, the drift check
                 over spans, and the gate that stops the run on an anomaly
  _transform     the training examples (this span or a window of spans) -> Transform
  _training      the warm-start resolver -> Trainer (in its own pod, or Vertex AI)
  _evaluation    Evaluator: gating against the latest blessed model when the run pushes
  _infra_validator the candidate loaded by a model server, answering its warmup requests
  _pusher        Pusher to `<serving_dir>/<model_name>/<version>`, once both blessed it
  _bulk_inference  with `bulk_infer`: a candidate set's ExampleGen -> BulkInferrer,
                 which scores it with the model only when the Evaluator blessed it
"""

import enum
import os
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Union

from tfx import v1 as tfx
from tfx.components.distribution_validator.component import DistributionValidator
from tfx.orchestration.data_types import RuntimeParameter
from tfx.types import Channel
from tfx.types.standard_artifacts import Examples, ExampleStatistics

from components import local_infra_validator, serving_pusher
from components.aliccp_example_gen import aliccp_example_gen
from components.aliccp_example_gen import check_config as check_aliccp_config
from components.anomalies_gate import AnomaliesGate
from components.csv_example_gen import csv_example_gen
from components.kubernetes_infra_validator import InfraValidator
from components.label_blind_split import Split
from components.trainer import Trainer
from models import preprocessing
from models import trainer as trainer_module
from models.config import PipelineConfig
from models.eval_config import EXTRACTORS_MODULE, make_eval_config
from models.training import TrainingConfig
from pipeline import configs
from pipeline.resolvers import (LatestBlessedModelOnOtherDataStrategy,
                                LatestBlessedOtherModelStrategy, blessed_model_resolver)
from pipeline.spans import (PREVIOUS_SPAN_ID, SPAN_WINDOW_ID, PreviousSpanStrategy,
                            SpanSettings, SpanWindowStrategy, drift_config)
from serving import defaults as serving_defaults

if TYPE_CHECKING:
  from pipeline.vertex_training import VertexTraining

RESOLVER_ID = "latest_blessed_model_resolver"
CANDIDATE_EXAMPLE_GEN_ID = "CandidateExampleGen"
BULK_INFERRER_ID = "BulkInferrer"
# The candidate ExampleGen's one split, which BulkInferrer's output examples keep.
CANDIDATES_SPLIT = "candidates"
WARM_START_ID = "warm_start_model_resolver"
INFRA_VALIDATOR_ID = "InfraValidator"
DATA_FORMATS = ("csv", "aliccp")


class InfraValidation(enum.Enum):
  """Where the candidate is loaded and queried before the Pusher may push it."""
  LOCAL = "local"            # a fresh `aitm serve` process (components/local_infra_validator.py)
  KUBERNETES = "kubernetes"  # TFX's InfraValidator: tensorflow/serving on the cluster


class Extent(enum.IntEnum):
  """How far a run's graph goes; each extent includes the stages before it."""
  TRANSFORM = 1  # ExampleGen .. Transform: the Beam stages alone (benchmarks)
  TRAIN = 2      # .. Trainer: benchmarks that score models on their own test rows
  EVALUATE = 3   # .. an Evaluator without thresholds or baseline (`aitm compare`): such
                 # a model is never blessed, so never a later run's baseline
  PUSH = 4       # .. an Evaluator gating against the latest blessed model -> Pusher


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
    extent: Extent = Extent.PUSH,
    rerun_safe_resolvers: bool = False,
    beam_pipeline_args: Sequence[str] = configs.BEAM_PIPELINE_ARGS,
    metadata_connection_config=None,
    enable_cache: bool = True,
    data_format: str = "csv",
    train_args: Union[None, tfx.proto.TrainArgs, RuntimeParameter] = None,
    push_destination: Union[None, tfx.proto.PushDestination, RuntimeParameter] = None,
    vertex_training: Optional["VertexTraining"] = None,
    keep_versions: Optional[int] = configs.KEEP_VERSIONS,
    spans: Optional[SpanSettings] = None,
    warm_start: bool = configs.WARM_START,
    split: Split = configs.SPLIT,
    infra_validation: Optional[InfraValidation] = InfraValidation.LOCAL,
    bulk_infer: Union[None, str, RuntimeParameter] = None,
) -> tfx.dsl.Pipeline:
  """ExampleGen -> StatisticsGen / schema -> ExampleValidator -> gate -> Transform
  -> Trainer -> Evaluator -> Pusher, up to `extent`.

  `config` is the checked EasyRec config; each component gets the part it reads
  (ExampleGen the columns, Transform the encodings, the Trainer all of it, the
  Evaluator the task towers), so a model-only change keeps ExampleGen .. Transform
  cached. Callers check the config against the schema first (pipeline.schema_check).

  With Extent.PUSH the Evaluator gates (models.eval_config): per task an AUC floor
  (`min_auc`) and at most `max_auc_drop` below the baseline, the latest blessed
  model of this pipeline (none on the first run: the floors alone decide); Pusher
  pushes only a blessed model, whole (components.serving_pusher), then keeps the
  newest `keep_versions` (None: all). `rerun_safe_resolvers` resolves the baseline
  and the warm-start base by pipeline.resolvers' strategies, which give a rerun its
  first run's inputs, so it is served from the cache (LocalDagRunner);
  KubeflowV2DagRunner compiles only TFX's stock strategy.

  `data_format`: "csv" (components/csv_example_gen) or "aliccp" (Ali-CCP's raw files,
  components/aliccp_example_gen; the config must declare its columns). `split`:
  ExampleGen's train/eval split without the labels (components/label_blind_split.py).
  `spans` (pipeline.spans.SpanSettings): `data_root` holds `span-N/` directories and a
  run ingests one; Transform and the Trainer take a window of spans, and the span's
  statistics are checked for drift against the previous span's.
  `data_root`, `train_args` and `push_destination` may be RuntimeParameters (Kubeflow;
  the last two as JSON of their protos). `warm_start`: the Trainer starts from the
  latest blessed model's weights when the architecture matches (models/warm_start.py).
  `vertex_training`: the Trainer runs as a Vertex AI custom job (pipeline.vertex_training).
  `infra_validation` (with Extent.PUSH): the Pusher also needs the candidate to load in a
  model server and answer its warmup requests (InfraValidation; None: no such check).
  `bulk_infer`: a directory of candidate CSV files (labels optional) that BulkInferrer
  scores with the Trainer's model once the Evaluator blessed it (Extent.PUSH only).
  """
  example_gen = _example_gen(config, data_root, data_format, split, spans)
  validation = _validation(example_gen, schema_path, spans)
  transform_nodes = _transform(config, example_gen, validation, spans)
  nodes = [example_gen, *validation.nodes, *transform_nodes]
  if extent >= Extent.TRAIN:
    nodes += _training(config, transform_nodes[-1], validation.schema, training, train_args,
                       warm_start, rerun_safe_resolvers, vertex_training,
                       raw_examples=example_gen.outputs["examples"])
    trainer = nodes[-1]
  if extent >= Extent.EVALUATE:
    nodes += _evaluation(config, example_gen, trainer, extent, min_auc, max_auc_drop,
                         rerun_safe_resolvers)
  if extent >= Extent.PUSH:
    evaluator = nodes[-1]
    infra = _infra_validator(infra_validation, trainer, evaluator, example_gen, model_name)
    nodes += [infra] if infra else []
    nodes.append(_pusher(trainer, evaluator, infra, serving_dir, model_name, push_destination,
                         keep_versions))
  if bulk_infer is not None:
    if extent < Extent.PUSH:
      raise ValueError("bulk_infer scores with the blessed model: it needs Extent.PUSH")
    nodes += _bulk_inference(config, bulk_infer, trainer, nodes)
  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name, pipeline_root=pipeline_root, components=nodes,
      enable_cache=enable_cache, metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=list(beam_pipeline_args))


def _example_gen(config, data_root, data_format, split, spans):
  """The ExampleGen of `data_format`, reading `data_root` (one span with `spans`)."""
  if data_format == "aliccp":
    if spans is not None:
      raise ValueError("spans are read from CSV data only")
    check_aliccp_config(config)
    return aliccp_example_gen(data_root, split=split)
  if data_format == "csv":
    return csv_example_gen(data_root, config, split=split, one_span=spans is not None,
                           span=spans.span if spans else None)
  raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")


class _Validation(NamedTuple):
  nodes: List[Any]   # in graph order, the gate last
  schema: Channel    # the curated schema
  gate: Any          # AnomaliesGate: Transform runs only after it passes


def _validation(example_gen, schema_path, spans) -> _Validation:
  """Statistics, the curated schema, ExampleValidator, with spans the drift check
  against the previous span, and the gate over their anomalies."""
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
  schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
  nodes, drift_inputs = [statistics_gen, schema_gen, example_validator], {}
  drift = drift_config(schema_path) if spans is not None and spans.drift_check else None
  if drift is not None:
    previous = tfx.dsl.Resolver(
        strategy_class=PreviousSpanStrategy, config=spans.resolver_config(),
        statistics=Channel(type=ExampleStatistics, producer_component_id=statistics_gen.id,
                           output_key="statistics"),
        examples=Channel(type=Examples, producer_component_id=example_gen.id,
                         output_key="examples")).with_id(PREVIOUS_SPAN_ID)
    previous.add_upstream_node(statistics_gen)
    distribution_validator = DistributionValidator(
        statistics=statistics_gen.outputs["statistics"],
        baseline_statistics=previous.outputs["statistics"], config=drift)
    nodes += [previous, distribution_validator]
    drift_inputs = dict(drift_anomalies=distribution_validator.outputs["anomalies"],
                        examples=example_gen.outputs["examples"],
                        baseline_examples=previous.outputs["examples"])
  gate = AnomaliesGate(anomalies=example_validator.outputs["anomalies"], **drift_inputs)
  return _Validation(nodes + [gate], schema_gen.outputs["schema"], gate)


def _transform(config, example_gen, validation: _Validation, spans) -> list:
  """Transform over this run's examples, or with `spans.train_spans` > 1 over the
  window of the last spans ingested (a resolver); Transform last."""
  nodes, examples = [], example_gen.outputs["examples"]
  if spans is not None and spans.train_spans > 1:
    window = tfx.dsl.Resolver(
        strategy_class=SpanWindowStrategy,
        config={"num_spans": spans.train_spans, **spans.resolver_config()},
        examples=Channel(type=Examples, producer_component_id=example_gen.id,
                         output_key="examples")).with_id(SPAN_WINDOW_ID)
    window.add_upstream_node(example_gen)
    nodes.append(window)
    examples = window.outputs["examples"]
  transform = tfx.components.Transform(
      examples=examples, schema=validation.schema,
      preprocessing_fn="models.preprocessing.preprocessing_fn",
      custom_config={preprocessing.CONFIG_KEY: config.transform_text()})
  transform.add_upstream_node(validation.gate)
  return nodes + [transform]


def _training(config, transform, schema, training, train_args, warm_start, rerun_safe,
              vertex_training, raw_examples) -> list:
  """The Trainer on Transform's output (train split; eval split for early stopping),
  after the warm-start resolver when `warm_start`; the Trainer last. `raw_examples`
  (ExampleGen's): the eval rows of the model's warmup requests (components/trainer.py)."""
  trainer_class = Trainer
  trainer_config = {trainer_module.CONFIG_KEY: config.text,
                    trainer_module.TRAINING_KEY: dict(training or {})}
  nodes, inputs = [], {}
  if warm_start:
    resolver = blessed_model_resolver(
        WARM_START_ID, rerun_safe, LatestBlessedModelOnOtherDataStrategy,
        examples=transform.outputs["transformed_examples"])
    nodes.append(resolver)
    inputs["base_model"] = resolver.outputs["model"]
    # Only then: a run without warm start keeps the Trainer's cache key it had.
    trainer_config[trainer_module.WARM_START_KEY] = True
  if vertex_training is not None:
    vertex_training.check_strategy(
        TrainingConfig.from_config(config.proto, training).distribute)
    # Imported here: only a compile for Vertex AI needs Google Cloud's client.
    from components.vertex_trainer import VertexTrainer as trainer_class
    trainer_config.update(vertex_training.custom_config())
  trainer = trainer_class(
      run_fn="models.trainer.run_fn",
      examples=transform.outputs["transformed_examples"],
      transform_graph=transform.outputs["transform_graph"],
      schema=schema,
      train_args=train_args or tfx.proto.TrainArgs(splits=["train"]),
      eval_args=tfx.proto.EvalArgs(splits=["eval"]),
      custom_config=trainer_config, raw_examples=raw_examples, **inputs).with_id("Trainer")
  return nodes + [trainer]


def _evaluation(config, example_gen, trainer, extent, min_auc, max_auc_drop, rerun_safe
                ) -> list:
  """The Evaluator of the Trainer's model on ExampleGen's eval split (raw examples,
  through the model's own preprocessing); when the run pushes, gated by the AUC
  floors and against the latest blessed model. The Evaluator last."""
  gate = extent >= Extent.PUSH
  eval_config = make_eval_config(config, min_auc, max_auc_drop, gate=gate)
  if not gate:
    return [tfx.components.Evaluator(examples=example_gen.outputs["examples"],
                                     model=trainer.outputs["model"], eval_config=eval_config,
                                     module_path=EXTRACTORS_MODULE)]
  resolver = blessed_model_resolver(RESOLVER_ID, rerun_safe, LatestBlessedOtherModelStrategy,
                                    candidate=trainer.outputs["model"])
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
      baseline_model=resolver.outputs["model"], eval_config=eval_config,
      module_path=EXTRACTORS_MODULE)
  return [resolver, evaluator]


def _infra_validator(infra_validation, trainer, evaluator, example_gen, model_name):
  """After the Evaluator, the check that the candidate loads in a model server and
  answers requests (None without one): locally in a fresh `aitm serve` process, on
  Kubeflow TFX's InfraValidator running tensorflow/serving on the cluster with
  requests from the eval examples (serving_default; TFX's request builder makes
  requests for signatures of serialized tf.Examples only), written into a warmup
  copy of the model too (`make_warmup`)."""
  if infra_validation is None:
    return None
  if infra_validation is InfraValidation.LOCAL:
    return local_infra_validator.LocalInfraValidator(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        model_name=model_name).with_id(INFRA_VALIDATOR_ID)
  validator = InfraValidator(
      model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
      serving_spec=tfx.proto.ServingSpec(
          tensorflow_serving=tfx.proto.TensorFlowServing(image_name=configs.TF_SERVING_IMAGE,
                                                         tags=[configs.TF_SERVING_TAG]),
          kubernetes=tfx.proto.KubernetesConfig(), model_name=model_name),
      validation_spec=tfx.proto.ValidationSpec(
          max_loading_time_seconds=local_infra_validator.DEFAULT_MAX_LOADING_SECONDS,
          num_tries=3),
      request_spec=tfx.proto.RequestSpec(
          tensorflow_serving=tfx.proto.TensorFlowServingRequestSpec(
              signature_names=["serving_default"]),
          split_name="eval", num_examples=8, make_warmup=True)).with_id(INFRA_VALIDATOR_ID)
  # Its inputs don't include the Evaluator's blessing: after it all the same.
  validator.add_upstream_node(evaluator)
  return validator


def _pusher(trainer, evaluator, infra, serving_dir, model_name, push_destination,
            keep_versions):
  """Pusher of the Trainer's model once the Evaluator blessed it (and the infra
  validator, when there is one): whole, to `<serving_dir>/<model_name>` unless
  `push_destination` says otherwise; the newest `keep_versions` kept."""
  return serving_pusher.Pusher(
      model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
      infra_blessing=infra.outputs["blessing"] if infra else None,
      push_destination=push_destination or tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=os.path.join(serving_dir, model_name))),
      custom_config={serving_pusher.KEEP_VERSIONS_KEY: keep_versions})


def _bulk_inference(config, candidates_root, trainer, nodes) -> list:
  """The candidate set's ExampleGen (every row into one split, labels optional) and
  BulkInferrer, which scores it with the Trainer's model through `serving_default` only
  when the Evaluator (found in `nodes`) blessed that model, writing each candidate's
  tf.Example with one float feature per task tower (`ctr`, `cvr`) added."""
  evaluator = next(n for n in nodes if isinstance(n, tfx.components.Evaluator))
  candidates = csv_example_gen(candidates_root, config, candidates=CANDIDATES_SPLIT
                               ).with_id(CANDIDATE_EXAMPLE_GEN_ID)
  columns = [tfx.proto.PredictOutputCol(output_key=task.name, output_column=task.name)
             for task in config.tasks]
  bulk_inferrer = tfx.components.BulkInferrer(
      examples=candidates.outputs["examples"], model=trainer.outputs["model"],
      model_blessing=evaluator.outputs["blessing"],
      model_spec=tfx.proto.ModelSpec(model_signature_name=[serving_defaults.EXAMPLES_SIGNATURE]),
      output_example_spec=tfx.proto.OutputExampleSpec(output_columns_spec=[
          tfx.proto.OutputColumnsSpec(predict_output=tfx.proto.PredictOutput(
              output_columns=columns))])).with_id(BULK_INFERRER_ID)
  return [candidates, bulk_inferrer]
