"""Settings text carried to a custom ExampleGen executor in its custom_config.

FileBasedExampleGen(custom_config=...) takes an ExampleGen CustomConfig, whose
`custom_config` is an Any: our ExampleGens pack one StringValue into it (the
config's data part, or JSON settings), which reaches the executor either as the
proto or, on some orchestrators, as its JSON form.
"""

from typing import Any, Dict

from google.protobuf import wrappers_pb2
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils


def pack_text(text: str) -> example_gen_pb2.CustomConfig:
  """`text` as an ExampleGen CustomConfig: a StringValue packed into its Any."""
  custom = example_gen_pb2.CustomConfig()
  custom.custom_config.Pack(wrappers_pb2.StringValue(value=text))
  return custom


def unpack_text(exec_properties: Dict[str, Any], missing: str) -> str:
  """The packed text; ValueError(`missing`) when the component was built without it."""
  custom = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
  if isinstance(custom, str):
    custom = proto_utils.json_to_proto(custom, example_gen_pb2.CustomConfig())
  text = wrappers_pb2.StringValue()
  if custom is None or not custom.custom_config.Unpack(text):
    raise ValueError(missing)
  return text.value
