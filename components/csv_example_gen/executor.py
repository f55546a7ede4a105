"""Executor of the typed CSV ExampleGen: FileBasedExampleGen(custom_executor_spec=...).

The columns and labels come from the config's data_config, handed over as
`custom_config` (see `example_gen_custom_config`).
"""

import io
import os
import time
from typing import Any, Dict

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs

from components.csv_example_gen.csv_parser import BadInputError, read_examples
from components.example_gen_settings import pack_text, unpack_text
from models.config import PipelineConfig, parse_config

_PROGRESS_EVERY = 50_000


def example_gen_custom_config(config: PipelineConfig) -> example_gen_pb2.CustomConfig:
  """The config's data part, packed for FileBasedExampleGen(custom_config=...)."""
  return pack_text(config.data_text())


def _config_from(exec_properties: Dict[str, Any]) -> PipelineConfig:
  text = unpack_text(exec_properties, "the CSV ExampleGen needs the config: "
                     "custom_config=example_gen_custom_config(config)")
  return parse_config(text, source="ExampleGen custom_config", require_model=False)


class _ReadCsvFile(beam.DoFn):
  """One CSV file path -> its tf.Examples, in order, with progress lines."""

  def __init__(self, columns, labels):
    super().__init__()
    self.columns, self.labels = columns, labels

  def process(self, path: str):
    start, count = time.time(), 0
    with beam.io.filesystems.FileSystems.open(path) as raw:
      text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
      for example in read_examples(path, text, self.columns, self.labels):
        count += 1
        if count % _PROGRESS_EVERY == 0:
          print(f"  [ExampleGen] {os.path.basename(path)}: {count:,} rows "
                f"({count / (time.time() - start):,.0f} rows/s)", flush=True)
        yield example
    print(f"  [ExampleGen] {os.path.basename(path)}: {count:,} rows read", flush=True)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _CsvToTypedExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                       split_pattern: str) -> beam.pvalue.PCollection:
  pattern = os.path.join(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                         split_pattern)
  files = sorted(fileio.glob(pattern))
  if not files:
    raise BadInputError(f"Bad input: no CSV files match {pattern}")
  config = _config_from(exec_properties)
  return (pipeline
          | "CsvFiles" >> beam.Create(files)
          | "ParseRows" >> beam.ParDo(_ReadCsvFile(config.columns, config.labels)))


class Executor(BaseExampleGenExecutor):
  """Reads CSV with a header into typed tf.Examples; see csv_parser."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _CsvToTypedExample
