"""The config's input fields and the curated schema must describe the same columns.

ExampleValidator checks data against `schemas/*.pbtxt`, ExampleGen types it
by the config's `data_config.input_fields`. If the two disagree, every run
would fail in ExampleValidator with an anomaly that points at the data, not
at the mismatch; this check says it before any work.
"""

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from models.config import ConfigError, PipelineConfig
from models.features import ColumnType

_SCHEMA_TYPES = {ColumnType.INT: schema_pb2.INT, ColumnType.FLOAT: schema_pb2.FLOAT,
                 ColumnType.STRING: schema_pb2.BYTES}


def check_schema(config: PipelineConfig, schema_path: str) -> None:
  """ConfigError naming every column that is in only one of the config's input fields
  and the schema at `schema_path`, or typed differently in the two."""
  schema = schema_pb2.Schema()
  with open(schema_path) as f:
    text_format.Parse(f.read(), schema)
  in_schema = {f.name: f.type for f in schema.feature}
  problems = []
  for column in config.columns:
    if column.name not in in_schema:
      problems.append(f"'{column.name}' is not in the schema")
    elif in_schema[column.name] != _SCHEMA_TYPES[column.type]:
      problems.append(f"'{column.name}' is {column.type.value} in the config but "
                      f"{schema_pb2.FeatureType.Name(in_schema[column.name])} in the schema")
  names = {c.name for c in config.columns}
  problems += [f"'{name}' is in the schema but not in data_config.input_fields"
               for name in in_schema if name not in names]
  if problems:
    raise ConfigError(f"{config.source}: data_config.input_fields don't match the schema "
                      f"{schema_path}: " + "; ".join(problems))
