"""`aitm predict`: rows of raw features scored through TF Serving's gRPC API
(serving/client.py), the predictions as CSV or JSON lines (serving/predictions.py)."""

import os
import sys

from cli import common_flags
from serving import defaults

LOADS_TENSORFLOW = True


def add_parser(subparsers):
  """Adds `predict` and its flags to `subparsers`; returns its parser."""
  parser = subparsers.add_parser("predict", help="score rows of raw features through TF "
                                 "Serving's gRPC API (TF Serving or `aitm serve`)")
  parser.add_argument("--server", default=defaults.SERVER,
                      help="host:port of the gRPC API (default %(default)s)")
  common_flags.add_model_name(parser)
  parser.add_argument("--input", required=True, help="CSV with a header or JSON lines "
                      "('-': stdin), columns as in the training data")
  parser.add_argument("--format", choices=("csv", "jsonl"), help="default: from the extension")
  parser.add_argument("--signature", default=defaults.EXAMPLES_SIGNATURE,
                      choices=(defaults.EXAMPLES_SIGNATURE, defaults.RAW_SIGNATURE),
                      help="tf.Examples or a tensor per column (default %(default)s)")
  which = parser.add_mutually_exclusive_group()
  which.add_argument("--version", type=int, help="a model version (default: the newest)")
  which.add_argument("--version-label", help="a version label of the model config")
  parser.add_argument("--batch-size", type=int, default=defaults.PREDICT_BATCH_SIZE,
                      help="rows per Predict call (default %(default)s)")
  parser.add_argument("--timeout", type=float, default=defaults.TIMEOUT_SECONDS,
                      help="deadline per call, seconds (default %(default)s)")
  parser.add_argument("--wait", type=float, default=0.0,
                      help="first wait up to this many seconds for the model to be AVAILABLE "
                      "(default %(default)s: no wait)")
  parser.add_argument("--output", help="CSV, or JSON lines when it ends in .jsonl "
                      "(default: CSV on stdout)")
  return parser


def run(args):
  """Scores the `--input` rows through the gRPC API and writes the predictions; exits
  with the error on a failed call or a bad row."""
  from serving.client import ServingClient, ServingError
  from serving.request_rows import RowError, read_rows
  source = "stdin" if args.input == "-" else args.input
  if args.input != "-" and not os.path.isfile(args.input):
    sys.exit(f"error: --input {args.input} is not a file")
  try:
    with ServingClient(args.server, args.model_name, timeout=args.timeout) as client:
      if args.wait:
        client.wait_until_available(args.wait, args.version, args.version_label)
      rows = list(read_rows(args.input, args.format))
      scores = client.predict(rows, signature=args.signature, version=args.version,
                              label=args.version_label, batch_size=args.batch_size,
                              source=source)
      version = client.last_version
  except (ServingError, RowError, TimeoutError, ValueError) as e:
    sys.exit(f"error: {e}")
  print(f"{len(rows):,} rows scored by {args.model_name} version {version}", file=sys.stderr)
  _write(scores, len(rows), args.output)


def _write(scores, rows, output):
  """The predictions of `rows` rows to the --output file, else to stdout."""
  from serving.predictions import is_json_lines, write_predictions
  if not output:
    write_predictions(scores, sys.stdout)
    return
  with open(output, "w", newline="") as out:
    write_predictions(scores, out, json_lines=is_json_lines(output))
  print(f"wrote {rows:,} predictions "
        f"({', '.join(sorted(scores))}) to {output}", file=sys.stderr)
