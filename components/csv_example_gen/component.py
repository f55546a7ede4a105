"""The typed CSV ExampleGen as a pipeline node."""

from typing import Optional

from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2

from components.csv_example_gen import executor
from components.label_blind_split import (ALL_SPANS_PATTERN, EVAL_BUCKETS, SPAN_PATTERN,
                                          TRAIN_BUCKETS, Split)
from components.split_executor import output_config as split_output_config
from models.config import PipelineConfig


def csv_example_gen(input_base, config: PipelineConfig, *, split: Split = Split(),
                    one_span: bool = False, span: Optional[int] = None,
                    range_bytes: Optional[int] = None,
                    candidates: Optional[str] = None) -> FileBasedExampleGen:
  """FileBasedExampleGen over the CSV files under `input_base` (a path, or a Kubeflow
  RuntimeParameter), typed by the config's columns and split train:eval 4:1 by
  `split` without reading the labels (components/label_blind_split.py).

  Files: every file under input_base; with a split by span, every `span-N/` directory's;
  with `one_span`, one span's: `span` or, None, the newest (ExampleGen's {SPAN} pattern).
  Each file is read in byte ranges of about `range_bytes` (None: 64 MiB), one worker
  each (csv_ranges.py).

  `candidates`: rows to score rather than train on, every one into the one split of
  that name, the labels optional (a file may lack them; those it has are checked).
  """
  if candidates is not None:
    if one_span or split != Split():
      raise ValueError("a candidate set is one split of every file under input_base: no "
                       "spans, no train/eval split")
    return FileBasedExampleGen(
        input_base=input_base,
        custom_config=executor.example_gen_custom_config(config, split, range_bytes,
                                                         labels_optional=True),
        custom_executor_spec=executor_spec.BeamExecutorSpec(executor.Executor),
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
            splits=[example_gen_pb2.SplitConfig.Split(name=candidates, hash_buckets=1)])))
  if span is not None and not one_span:
    raise ValueError("span needs one_span=True (input_base holding span-N directories)")
  if split.kind == "span" and one_span:
    raise ValueError("a split by span reads every span in one run; spans=True ingests one "
                     "span per run: use one or the other")
  pattern = SPAN_PATTERN if one_span else ALL_SPANS_PATTERN if split.kind == "span" else None
  span_args = {}
  if pattern:
    span_args["input_config"] = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name="single_split", pattern=pattern)])
  if span is not None:
    span_args["range_config"] = range_config_pb2.RangeConfig(
        static_range=range_config_pb2.StaticRange(start_span_number=span,
                                                  end_span_number=span))
  return FileBasedExampleGen(
      input_base=input_base, **span_args,
      custom_config=executor.example_gen_custom_config(config, split, range_bytes),
      custom_executor_spec=executor_spec.BeamExecutorSpec(executor.Executor),
      output_config=split_output_config(TRAIN_BUCKETS, EVAL_BUCKETS))
