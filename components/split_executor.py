"""The ExampleGen executor base that splits train/eval without reading the labels.

Subclasses (the CSV and Ali-CCP ExampleGens) read their input into
`label_blind_split.KeyedExample`s; this base class replaces
BaseExampleGenExecutor's split, which hashes whole examples, labels included,
with `label_blind_split.partition`.
"""

import os
from typing import Any, Dict

import apache_beam as beam
from tfx.components.example_gen import utils
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components.label_blind_split import (EVAL, EVAL_BUCKETS, READ_SPANS_KEY, TRAIN,
                                          TRAIN_BUCKETS, Split, check_split_names, partition,
                                          spans_to_read)


def output_config(train_buckets: int = TRAIN_BUCKETS, eval_buckets: int = EVAL_BUCKETS
                  ) -> example_gen_pb2.Output:
  """ExampleGen's output splits, train and eval, in proportion train:eval."""
  return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
      example_gen_pb2.SplitConfig.Split(name=TRAIN, hash_buckets=train_buckets),
      example_gen_pb2.SplitConfig.Split(name=EVAL, hash_buckets=eval_buckets)]))


class LabelBlindSplitExecutor(BaseExampleGenExecutor):
  """An ExampleGen executor whose reading PTransform yields KeyedExamples.

  Subclasses give `split_of(exec_properties)` (from their custom_config) and, for
  a split by span, their PTransform reads only the spans `spans_to_read` names."""

  def split_of(self, exec_properties: Dict[str, Any]) -> Split:
    """The Split the subclass's custom_config asks for."""
    raise NotImplementedError

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline, exec_properties: Dict[str, Any]
                             ) -> Dict[str, beam.pvalue.PCollection]:
    """The output splits' tf.Examples, by split name.

    With output splits configured, the single input split's KeyedExamples are
    partitioned by `partition` (row key, columns or span; never the labels);
    without, each input split is read as an output split of its own.
    """
    input_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
    output_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output())
    names = utils.generate_output_split_names(input_config, output_config)
    exec_properties["_beam_pipeline_args"] = self._beam_pipeline_args or []
    to_records = self.GetInputSourceToExamplePTransform()
    if not output_config.split_config.splits:
      # The input's own splits (e.g. Ali-CCP's train and test files): nothing to decide.
      return {name: (pipeline
                     | f"InputToRecord[{name}]" >> to_records(exec_properties, split.pattern)
                     | f"DropKeys[{name}]" >> beam.Map(lambda keyed: keyed.example))
              for name, split in zip(names, input_config.splits)}
    if len(input_config.splits) != 1:
      raise ValueError("ExampleGen: output splits are cut from a single input split")
    split = self.split_of(exec_properties)
    check_split_names(names, split)
    pattern = input_config.splits[0].pattern
    eval_span = None
    if split.kind == "span":
      base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
      files = [os.path.relpath(path, base) for path in fileio.glob(os.path.join(base, pattern))]
      eval_span, train_spans = spans_to_read(files, split)
      # The reading PTransform reads these spans' files only.
      exec_properties[READ_SPANS_KEY] = [eval_span] + train_spans
      print(f"  [ExampleGen] split by span: span {eval_span} evaluates, span(s) "
            f"{', '.join(map(str, train_spans))} train", flush=True)
    buckets, total = [], 0
    for output in output_config.split_config.splits:
      total += output.hash_buckets
      buckets.append(total)
    parts = (pipeline
             | "InputToRecord" >> to_records(exec_properties, pattern)
             | "SplitWithoutLabels" >> beam.Partition(partition, len(buckets), buckets, split,
                                                      names, eval_span))
    return {name: part | f"DropKeys[{name}]" >> beam.Map(lambda keyed: keyed.example)
            for name, part in zip(names, parts)}


