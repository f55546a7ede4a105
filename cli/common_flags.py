"""Flags several commands share, each defined once beside the code that reads it.

`add_*` puts a flag on a command's parser; the function beside it turns the parsed
value into what the pipeline takes, or ends the command with `error: ...` (exit 1)
before any work. Only light modules are imported here: the parser is built for
`--help` too, which must not load TensorFlow.
"""

import argparse
import sys

from models.training import TrainingConfig
from pipeline import configs


def positive_int(text: str) -> int:
  """argparse type: an integer of at least 1."""
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
  return value


def add_schema(parser):
  """`--schema`: the curated raw-data schema (load_configs checks the configs against it)."""
  parser.add_argument("--schema", default=configs.SCHEMA_PATH,
                      help="curated raw-data schema ExampleValidator checks against "
                      "(default: %(default)s)")


def add_edit_config_json(parser):
  """`--edit-config-json`: EasyRec's --edit_config_json (read by config_edits)."""
  parser.add_argument("--edit-config-json", metavar="JSON",
                      help="edit the config before it is checked and run, as EasyRec's "
                      "--edit_config_json does: a JSON object of dotted paths to values, e.g. "
                      """'{"train_config.num_steps": 200}' or """
                      """'{"feature_config.features[input_names[0]=price].embedding_dim": 8}' """
                      "(paths select elements with [i], [a:b], [:] or [key=value]; grammar in "
                      "models/config/edit.py)")


def config_edits(args):
  """`--edit-config-json` as a dict of edits for load_configs (None without the flag)."""
  if args.edit_config_json is None:
    return None
  from models.config import ConfigError
  from models.config.edit import parse_edit_json
  try:
    return parse_edit_json(args.edit_config_json)
  except ConfigError as e:
    sys.exit(f"error: {e}")


def load_configs(paths, schema_path=None, edits=None):
  """Every config read and checked, with `edits` (config_edits) applied first and
  against the raw-data schema too when schema_path is given, before any work; the
  first error ends the command. Prints the edits applied to each config."""
  from models.config import ConfigError, load_config
  try:
    loaded = [load_config(path, edits) for path in paths]
    if schema_path:
      from pipeline.schema_check import check_schema
      for config in loaded:
        check_schema(config, schema_path)
  except ConfigError as e:
    sys.exit(f"error: {e}")
  for path, config in zip(paths, loaded):
    if config.edits:
      print(f"{path}, edited by --edit-config-json:")
    for field, value, count in config.edits:
      print(f"  edit: {field} = {value} ({count} field{'' if count == 1 else 's'})")
  return loaded


def add_model_name(parser):
  """`--model-name`: the model's name in the serving directory and the gRPC API."""
  parser.add_argument("--model-name", default=configs.MODEL_NAME,
                      help="the model's name in the serving directory and the gRPC API "
                      "(default: %(default)s)")


def add_serving_dir(parser):
  """`--serving-dir`: where the Pusher writes `<model-name>/<version>/`."""
  parser.add_argument("--serving-dir", default=configs.DEFAULT_SERVING_DIR,
                      help="where the Pusher writes <model-name>/<version>/ "
                      "(default: %(default)s)")


def add_training(parser):
  """The training flags, `--learning-rate` to `--seed` (read by training_settings)."""
  group = parser.add_argument_group("training (each wins over the config file)")
  group.add_argument("--learning-rate", type=float, help="a constant learning rate")
  group.add_argument("--batch-size", type=int, help="default: data_config.batch_size, else "
                     "sized from the train rows")
  group.add_argument("--max-epochs", type=int, help="default: data_config.num_epochs, else "
                     "sized from the train rows")
  group.add_argument("--patience", type=int,
                     help="epochs without eval AUC improvement before stopping (default "
                     f"{TrainingConfig().patience})")
  group.add_argument("--seed", type=int, help="seeds weight initialization, dropout and the "
                     "input shuffle: the same seed, data and settings train the same model "
                     "(default: a fresh seed each run)")


def training_settings(args):
  """`--learning-rate` etc.: they win over the config file's settings."""
  settings = {}
  for key in ("learning_rate", "batch_size", "max_epochs", "patience", "seed"):
    value = getattr(args, key)
    if value is not None:
      settings[key] = value
  try:
    TrainingConfig.from_dict(settings)  # refuse bad settings before any work
  except ValueError as e:
    sys.exit(f"error: {e}")
  return settings


def add_beam_args(parser, default_runner: str,
                  used_by: str = "ExampleGen, StatisticsGen, Transform and Evaluator"):
  """`--beam-args`; default_runner says where the default Beam options run, used_by
  what runs on Beam."""
  parser.add_argument("--beam-args", action="append", metavar='"--flag=value ..."',
                      help=f"Beam pipeline options for {used_by}"
                      '; repeatable, e.g. "--direct_running_mode=multi_processing '
                      '--direct_num_workers=2" or Dataflow/Flink/Spark options (README: Beam '
                      f"at scale); they win over the default ({default_runner}: "
                      f"{' '.join(configs.BEAM_PIPELINE_ARGS)})")


def beam_args(args):
  """`--beam-args` (repeatable, shell-quoted) over the defaults, checked by Beam."""
  from pipeline import beam_options
  merged = beam_options.merge(configs.BEAM_PIPELINE_ARGS,
                              beam_options.split(args.beam_args or []))
  try:
    beam_options.parse(merged)
  except ValueError as e:
    sys.exit(f"error: --beam-args: {e}")
  return merged


def _split(text):
  from components.label_blind_split import Split
  try:
    return Split.parse(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


def add_split(parser):
  """`--split`: row, span or columns=NAME[,NAME], parsed into a Split (check_split
  checks it against a config)."""
  parser.add_argument("--split", type=_split, default=configs.SPLIT,
                      metavar="row|span|columns=NAME[,NAME]",
                      help="how ExampleGen cuts train from eval, never by the labels "
                      "(default %(default)s): row (4:1 by each row's file and place), "
                      "columns=user_id (rows "
                      "sharing those values stay together: users the model never saw), "
                      "span (--data holds span-N/: the newest span evaluates, the ones "
                      "before it train)")


def check_split(split, config):
  """Ends the command when the split would hash a label or a column the config lacks."""
  try:
    split.check_columns([c.name for c in config.columns], config.labels, config.source)
  except ValueError as e:
    sys.exit(f"error: --split: {e}")


def add_warm_start(parser, base: str):
  """`--warm-start`; base says which model's weights the Trainer starts from."""
  parser.add_argument("--warm-start", action="store_true", default=configs.WARM_START,
                      help=f"the Trainer starts from the weights of {base} when the "
                      "architecture matches (vocabulary rows remapped by token), else fresh, "
                      "saying why")


def add_keep_versions(parser):
  """`--keep-versions`: the complete versions the Pusher keeps in the serving directory."""
  parser.add_argument("--keep-versions", type=positive_int, default=configs.KEEP_VERSIONS,
                      help="complete model versions the Pusher keeps in the serving dir; "
                      f"older ones are deleted after a push (default {configs.KEEP_VERSIONS})")
