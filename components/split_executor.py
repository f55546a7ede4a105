"""The ExampleGen executor base that splits train/eval without reading the labels.

Subclasses (the CSV and Ali-CCP ExampleGens) read their input into
`label_blind_split.KeyedExample`s; this base class replaces
BaseExampleGenExecutor's split, which hashes whole examples, labels included,
with `label_blind_split.partition`, writes the splits without TFX's reshuffle of
every example (memory: see Do), and reads the subclass's Beam counters back
in the submitting process once the Beam pipeline is done. What a DoFn prints goes
to the process it runs in: in-process on the DirectRunner, but into an SDK
worker's own output on a portable runner (Flink, Spark, Dataflow, Beam's local
worker pool), so what the user should see travels as counters.
"""

import os
from typing import Any, Dict, Optional

import apache_beam as beam
from tfx.components.example_gen import utils, write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.util import examples_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
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


def beam_counters(result, namespace: str) -> Dict[str, int]:
  """The Beam counters of `namespace` in a finished pipeline's result, by name, summed
  over steps. NotImplementedError from a runner that reports no metrics."""
  query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(namespace))
  totals: Dict[str, int] = {}
  for counter in query["counters"]:
    # Committed where the runner has them; DirectRunner reports attempted only.
    value = counter.committed if counter.committed is not None else counter.attempted
    totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (value or 0)
  return totals


class LabelBlindSplitExecutor(BaseExampleGenExecutor):
  """An ExampleGen executor whose reading PTransform yields KeyedExamples.

  Subclasses give `split_of(exec_properties)` (from their custom_config) and, for
  a split by span, their PTransform reads only the spans `spans_to_read` names.
  After Do(), `counters` holds the run's Beam counters in the subclass's
  COUNTER_NAMESPACE (beam_counters; empty when the runner reports none)."""

  COUNTER_NAMESPACE: Optional[str] = None

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    """Writes each output split's examples as gzipped TFRecords in the input's order (TFX's
    layout and file names), then reads the Beam counters of COUNTER_NAMESPACE into
    `counters` when the runner reports metrics.

    BaseExampleGenExecutor.Do, less the Reshuffle of every example its WriteSplit does
    before writing: a GroupByKey of the whole dataset, which Beam's DirectRunner holds in
    memory (a 1 GB CSV needed more than 24 GB). The reading already spreads byte ranges
    over the workers, and the Trainer shuffles its input (`shuffle_buffer_size`). Only
    TFRecords of tf.Examples are written: the formats these ExampleGens produce."""
    self.counters: Dict[str, int] = {}
    self._log_startup(input_dict, output_dict, exec_properties)
    input_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
    output_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output())
    examples = output_dict[standard_component_specs.EXAMPLES_KEY]
    artifact_utils.get_single_instance(examples).split_names = (
        artifact_utils.encode_split_names(
            utils.generate_output_split_names(input_config, output_config)))
    pipeline = self._make_beam_pipeline()
    with pipeline:
      for name, split in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
        _ = (split
             | f"Serialize[{name}]" >> beam.Map(lambda example: example.SerializeToString())
             | f"Write[{name}]" >> beam.io.WriteToTFRecord(
                 os.path.join(artifact_utils.get_split_uri(examples, name),
                              write_split.DEFAULT_TF_RECORD_FILE_NAME),
                 file_name_suffix=".gz"))
    for artifact in examples:
      examples_utils.set_payload_format(artifact, example_gen_pb2.FORMAT_TF_EXAMPLE)
      examples_utils.set_file_format(artifact, write_split.to_file_format_str(
          example_gen_pb2.FORMAT_TFRECORDS_GZIP))
    if not self.COUNTER_NAMESPACE:
      return
    try:
      self.counters = beam_counters(pipeline.result, self.COUNTER_NAMESPACE)
    except NotImplementedError:  # a runner without metrics
      pass

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


