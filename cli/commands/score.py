"""`aitm score`: a pushed SavedModel over a whole candidate set of CSV files, in Beam
(scoring/batch_scoring.py); each row's key columns and scores as CSV or Parquet."""

import sys

from cli import common_flags
from pipeline import configs
from serving import defaults

LOADS_TENSORFLOW = True

FORMATS = ("csv", "parquet")


def add_parser(subparsers):
  """Adds `score` and its flags to `subparsers`; returns its parser."""
  parser = subparsers.add_parser("score", help="score a whole candidate set of CSV files "
                                 "with a pushed model, in Beam; key columns and scores as CSV "
                                 "or Parquet")
  parser.add_argument("--model", required=True,
                      help="a pushed SavedModel version directory, or the model's base path "
                      "(<serving-dir>/<model-name>: its newest complete version)")
  parser.add_argument("--data", required=True,
                      help="directory of CSV files with a header, as `aitm run --data` reads "
                      "(labels may be absent)")
  parser.add_argument("--output", required=True,
                      help="a new directory for the scores (part files in input order); it "
                      "appears only once every row is scored")
  parser.add_argument("--format", choices=FORMATS, default="csv",
                      help="part files as CSV or Parquet (default %(default)s)")
  parser.add_argument("--key-columns", type=_names, metavar="NAME[,NAME]",
                      help="the input columns written beside the scores (default: every "
                      "column but the config's labels)")
  parser.add_argument("--config", default=configs.CONFIG_PATH,
                      help="the config the model was trained with; only its labels are "
                      "read, to leave them out of the default key columns (default: "
                      "%(default)s)")
  parser.add_argument("--signature", default=defaults.RAW_SIGNATURE,
                      choices=(defaults.RAW_SIGNATURE, defaults.EXAMPLES_SIGNATURE),
                      help="a tensor per column (a batch with a missing integer goes to "
                      "serving_default) or tf.Examples for every batch (default %(default)s)")
  common_flags.add_beam_args(parser, "in-process DirectRunner", used_by="the scoring")
  return parser


def _names(text: str):
  return [name.strip() for name in text.split(",") if name.strip()]


def run(args):
  """Scores `--data` with `--model` into `--output`; exits with the error, nothing
  written, on a bad model, bad data or an --output that exists."""
  beam_args = common_flags.beam_args(args)
  labels = ()
  if not args.key_columns:
    config, = common_flags.load_configs([args.config])
    labels = config.labels
  from cli.tensorflow_import import plugin_lines_hidden
  from scoring.batch_scoring import score
  try:
    with plugin_lines_hidden():  # Beam's worker processes import TensorFlow too
        result = score(model=args.model, data=args.data, output=args.output, fmt=args.format,
                     key_columns=args.key_columns, labels=labels, signature=args.signature,
                     beam_args=beam_args)
  except ValueError as e:
    sys.exit(f"error: {e}\nnothing was written to {args.output}")
  print(f"scored {result.rows:,} rows from {result.files} file(s) in {result.seconds:,.1f}s "
        f"({result.rows_per_second:,.0f} rows/s) with {result.model_version_dir}")
  print(f"wrote {result.parts} {args.format} part file(s) to {result.output}: "
        f"{', '.join(list(result.key_columns) + list(result.tasks))}")
