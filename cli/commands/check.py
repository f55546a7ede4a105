"""`aitm check`: a config read, checked and built into its Keras model, then summarized
block by block (models/model_summary.py), with no pipeline run."""

import sys

from cli import common_flags

LOADS_TENSORFLOW = True


def add_parser(subparsers):
  """Adds `check` and its flags to `subparsers`; returns its parser."""
  parser = subparsers.add_parser("check", help="check a config and build its model: blocks, "
                                 "shapes, towers, losses and parameters, in seconds, "
                                 "without running the pipeline")
  parser.add_argument("--config", action="append", required=True, metavar="FILE",
                      help="EasyRec config, protobuf text format; repeat the flag for more")
  # Unlike `run`, no schema by default: a config for other data (Ali-CCP, a cart
  # label) is still worth checking as a model.
  parser.add_argument("--schema", metavar="FILE", help="also check the config's input "
                      "fields against this raw-data schema (default: none)")
  common_flags.add_edit_config_json(parser)
  return parser


def run(args):
  """Prints each config's summary, the configs checked first; exits with the error when
  one doesn't check or its model doesn't build."""
  loaded = common_flags.load_configs(args.config, args.schema,
                                     common_flags.config_edits(args))
  from models.autograph_rules import skip_tf_keras
  from models.backbone import build_model
  from models.model_summary import embedding_rows, summary_lines

  skip_tf_keras()  # else AutoGraph transpiles tf_keras while building: 14 s, not 1
  for index, config in enumerate(loaded):
    try:
      model = build_model(config, embedding_rows(config))
    except ValueError as e:
      # What only the Keras layers see, e.g. a SENet field width the squeeze groups
      # don't divide: the config checker reads no embedding widths into the layers.
      sys.exit(f"error: {config.source}: the model doesn't build: {e}")
    if index:
      print()
    print("\n".join(summary_lines(config, model)))
