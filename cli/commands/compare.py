"""`aitm compare`: several model configs trained on one split, one table (report/compare.py)."""

import os
import sys

from cli import common_flags
from cli.errors import explain_failure
from pipeline import configs

LOADS_TENSORFLOW = True


def add_parser(subparsers):
  """Adds `compare` and its flags to `subparsers`; returns its parser."""
  parser = subparsers.add_parser("compare", help="train several model configs on the same "
                                 "split and print one table (per-task AUC, train time, "
                                 "parameters)")
  parser.add_argument("--data", required=True, help="directory of CSV files with a header")
  parser.add_argument("--configs", nargs="+", default=list(configs.PEER_CONFIGS),
                      help="EasyRec configs of one funnel (default: AITM and its peers)")
  common_flags.add_schema(parser)
  common_flags.add_edit_config_json(parser)
  parser.add_argument("--pipeline-root", default=configs.DEFAULT_COMPARE_ROOT,
                      help="where each model's run goes (default: %(default)s)")
  common_flags.add_split(parser)
  common_flags.add_training(parser)
  common_flags.add_beam_args(parser, "in-process DirectRunner")
  return parser


def run(args):
  """Runs each of `--configs` on `--data`, one split for all, and prints their table;
  exits with the error on bad settings or input."""
  configs_ = common_flags.load_configs(args.configs, args.schema,
                                       common_flags.config_edits(args))
  training = common_flags.training_settings(args)
  beam_args = common_flags.beam_args(args)
  from report import compare

  if not os.path.isdir(args.data):
    sys.exit(f"error: --data {args.data} is not a directory of CSV files")
  for config in configs_:
    common_flags.check_split(args.split, config)
  try:
    scores = compare.compare(configs_, data_root=args.data, pipeline_root=args.pipeline_root,
                             training=training, beam_pipeline_args=beam_args,
                             split=args.split)
  except ValueError as e:
    sys.exit(f"error: {e}")
  except Exception as e:  # noqa: BLE001 - re-raised unless it names bad input
    explain_failure(e)
  print(f"\nmodels compared on {args.data} (TFMA AUC on the same eval split):\n")
  print(compare.table(scores))
