"""TFX's Trainer, also given ExampleGen's raw examples for the model's warmup requests.

The stock Trainer hands run_fn the examples it trains on, Transform's output,
in which the raw values are gone; the SavedModel's warmup requests
(models/warmup_requests.py) are raw rows. This Trainer has the stock one's
inputs, outputs, parameters and node id, plus an optional `raw_examples`
channel (ExampleGen's examples). Its executor, TFX's GenericExecutor, puts the
file patterns of their eval splits (the Trainer's `eval_args` splits) into
run_fn's custom_config under models.warmup_requests.RAW_EVAL_FILES_KEY. The
channel is an input, so on Kubeflow and Vertex AI it is resolved and mounted
like the others.

components/vertex_trainer.py is TFX's Vertex AI Trainer with the same input.
"""

from typing import Any, Dict, List, Optional, Union

from tfx import types
from tfx.components.trainer import component as trainer_component
from tfx.components.trainer import executor as trainer_executor
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2, trainer_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import io_utils, json_utils, proto_utils

from models.warmup_requests import RAW_EVAL_FILES_KEY

RAW_EXAMPLES_KEY = "raw_examples"


class TrainerSpec(standard_component_specs.TrainerSpec):
  """TFX's TrainerSpec with the optional `raw_examples` input."""
  INPUTS = {**standard_component_specs.TrainerSpec.INPUTS,
            RAW_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples,
                                               optional=True)}


def raw_eval_file_patterns(raw_examples: List[types.Artifact],
                           exec_properties: Dict[str, Any]) -> List[str]:
  """The file patterns of the raw examples' eval splits (`eval_args` splits, default
  'eval'). ValueError when they are not tf.Examples."""
  for artifact in raw_examples:
    payload = examples_utils.get_payload_format(artifact)
    if payload != example_gen_pb2.FORMAT_TF_EXAMPLE:
      raise ValueError(f"raw_examples at {artifact.uri} hold "
                       f"{example_gen_pb2.PayloadFormat.Name(payload)}; the warmup "
                       "requests are built from tf.Examples")
  eval_args = trainer_pb2.EvalArgs()
  proto_utils.json_to_proto(exec_properties[standard_component_specs.EVAL_ARGS_KEY],
                            eval_args)
  return [io_utils.all_files_pattern(uri)
          for split in (eval_args.splits or ["eval"])
          for uri in artifact_utils.get_split_uris(raw_examples, split)]


class Executor(trainer_executor.GenericExecutor):
  """TFX's GenericExecutor; run_fn's custom_config also names the raw eval files."""

  def _GetFnArgs(self, input_dict, output_dict, exec_properties):
    fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
    raw_examples = input_dict.get(RAW_EXAMPLES_KEY)
    if raw_examples:
      fn_args.custom_config = {
          **(fn_args.custom_config or {}),
          RAW_EVAL_FILES_KEY: raw_eval_file_patterns(raw_examples, exec_properties)}
    return fn_args


class Trainer(trainer_component.Trainer):
  """tfx.components.Trainer (run_fn form) with the optional `raw_examples` input."""

  SPEC_CLASS = TrainerSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

  def __init__(self, *, examples: types.BaseChannel, run_fn: str,
               transform_graph: Optional[types.BaseChannel] = None,
               schema: Optional[types.BaseChannel] = None,
               base_model: Optional[types.BaseChannel] = None,
               raw_examples: Optional[types.BaseChannel] = None,
               train_args: Union[None, trainer_pb2.TrainArgs, data_types.RuntimeParameter] = None,
               eval_args: Optional[trainer_pb2.EvalArgs] = None,
               custom_config: Optional[Dict[str, Any]] = None):
    """As tfx.components.Trainer's arguments; `raw_examples`: ExampleGen's examples,
    whose eval split the warmup requests come from."""
    spec = TrainerSpec(
        examples=examples, transform_graph=transform_graph, schema=schema,
        base_model=base_model, hyperparameters=None, raw_examples=raw_examples,
        train_args=train_args or trainer_pb2.TrainArgs(),
        eval_args=eval_args or trainer_pb2.EvalArgs(),
        module_file=None, run_fn=run_fn, custom_config=json_utils.dumps(custom_config),
        model=types.Channel(type=standard_artifacts.Model),
        model_run=types.Channel(type=standard_artifacts.ModelRun))
    # The stock __init__ builds the stock spec; the rest of its work is this.
    base_component.BaseComponent.__init__(self, spec=spec)

