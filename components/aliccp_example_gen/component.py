"""The Ali-CCP ExampleGen as a pipeline node, and the columns it writes."""

from typing import Mapping, Optional, Sequence, Tuple

from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components.aliccp_example_gen import executor, raw_format
from components.label_blind_split import EVAL_BUCKETS, TRAIN_BUCKETS, Split
from components.split_executor import output_config as split_output_config
from models.config import ConfigError, PipelineConfig
from models.features import Column, ColumnType

# Matches both kinds of raw file of every pair, as Tianchi ships them.
DEFAULT_PATTERN = "*.csv"


def emitted_columns(fields: Sequence[Tuple[str, str]] = raw_format.PAPER_FIELDS
                    ) -> Tuple[Column, ...]:
  """The tf.Example features the ExampleGen writes: the two int64 labels, then one
  bytes column per field (ids joined by raw_format.SEPARATOR)."""
  return ((Column(raw_format.CLICK_LABEL, ColumnType.INT),
           Column(raw_format.BUY_LABEL, ColumnType.INT))
          + tuple(Column(column, ColumnType.STRING) for _, column in fields))


def check_config(config: PipelineConfig,
                 fields: Sequence[Tuple[str, str]] = raw_format.PAPER_FIELDS) -> None:
  """A config for this ExampleGen declares exactly its columns, typed as written,
  and the labels in funnel order (click, buy); else ConfigError naming the gap."""
  expected = {c.name: c.type for c in emitted_columns(fields)}
  declared = config.column_types
  problems = [f"'{name}' is not written by the ExampleGen" for name in declared
              if name not in expected]
  problems += [f"'{name}' ({kind.value}) is missing" for name, kind in expected.items()
               if name not in declared]
  problems += [f"'{name}' is {declared[name].value} but the ExampleGen writes "
               f"{kind.value}" for name, kind in expected.items()
               if name in declared and declared[name] is not kind]
  labels = (raw_format.CLICK_LABEL, raw_format.BUY_LABEL)
  if tuple(config.labels) != labels:
    problems.append(f"label_fields are {list(config.labels)}, the ExampleGen's are "
                    f"{list(labels)}")
  if problems:
    raise ConfigError(f"{config.source}: data_config doesn't match the Ali-CCP ExampleGen: "
                      + "; ".join(problems))


def aliccp_example_gen(
    input_base: str,
    *,
    pattern: str = DEFAULT_PATTERN,
    input_splits: Optional[Mapping[str, str]] = None,
    fields: Sequence[Tuple[str, str]] = raw_format.PAPER_FIELDS,
    chunk_bytes: int = executor.DEFAULT_CHUNK_BYTES,
    split: Split = Split(),
    buckets: Tuple[int, int] = (TRAIN_BUCKETS, EVAL_BUCKETS),
) -> FileBasedExampleGen:
  """FileBasedExampleGen over Ali-CCP's raw files under `input_base`.

  By default every pair `pattern` matches is read as one input and split
  train:eval = `buckets` (4:1) without reading the labels, as the CSV ExampleGen
  does: by `split` (components/label_blind_split.py; by row: the skeleton
  file's name and the sample_id).
  `input_splits` (split name -> pattern) keeps Ali-CCP's own split instead, e.g.
  {"train": "*_train.csv", "eval": "*_test.csv"}; the Trainer reads the splits
  named "train" and "eval". A pattern must match the skeleton files and their
  common_features files (see executor). `fields` (field id, column name) are the
  fields kept, in column order; the config must declare them (check_config).
  """
  if input_splits:
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=name, pattern=split_pattern)
        for name, split_pattern in input_splits.items()])
    output_config = None  # one output split per input split
  else:
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name="single_split", pattern=pattern)])
    output_config = split_output_config(*buckets)
  return FileBasedExampleGen(
      input_base=input_base,
      input_config=input_config,
      output_config=output_config,
      custom_config=executor.custom_config(fields, chunk_bytes, split),
      custom_executor_spec=executor_spec.BeamExecutorSpec(executor.Executor))
