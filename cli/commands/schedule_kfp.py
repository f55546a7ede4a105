"""`aitm schedule-kfp`: the compiled spec as a daily recurring run (pipeline/kubeflow_schedule.py)."""

import os
import sys

from pipeline import configs

LOADS_TENSORFLOW = True


def add_parser(subparsers):
  """Adds `schedule-kfp` and its flags to `subparsers`; returns its parser."""
  parser = subparsers.add_parser("schedule-kfp", help="run the compiled spec every day on "
                                 "Kubeflow Pipelines (a recurring run)")
  parser.add_argument("--host", required=True, help="the KFP API, e.g. https://kfp.example.com")
  parser.add_argument("--package", default=configs.KFP_PACKAGE,
                      help="aitm compile-kfp's output (default %(default)s)")
  parser.add_argument("--cron", default=configs.KFP_CRON,
                      help="6 fields, seconds first (KFP's cron: sec min hour day month "
                      "weekday); default %(default)r")
  parser.add_argument("--experiment", default=configs.KFP_EXPERIMENT,
                      help="the KFP experiment the run belongs to (default: %(default)s)")
  parser.add_argument("--name", default=configs.KFP_RECURRING_RUN,
                      help="the recurring run's name (default: %(default)s)")
  parser.add_argument("--namespace", help="the Kubeflow profile's namespace (multi-user KFP)")
  parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                      help="a runtime parameter for every run (data_root, train_args, "
                      "push_destination)")
  return parser


def _runtime_parameters(args):
  """--param NAME=VALUE, repeated: {NAME: VALUE}."""
  params = {}
  for item in args.param or []:
    key, sep, value = item.partition("=")
    if not sep:
      sys.exit(f"error: --param {item!r}: write NAME=VALUE")
    params[key] = value
  return params


def run(args):
  """Creates the recurring run of `--package` on the KFP API at `--host`; exits with
  the error on bad settings."""
  from pipeline.kubeflow_schedule import schedule
  params = _runtime_parameters(args)
  if not os.path.exists(args.package):
    sys.exit(f"error: --package {args.package} does not exist (write it with aitm compile-kfp)")
  import kfp
  try:
    recurring = schedule(kfp.Client(host=args.host, namespace=args.namespace), args.package,
                         cron=args.cron, experiment=args.experiment, name=args.name,
                         params=params, namespace=args.namespace)
  except ValueError as e:
    sys.exit(f"error: {e}")
  print(f"recurring run {args.name!r} ({getattr(recurring, 'recurring_run_id', '?')}): "
        f"{args.package} at cron {args.cron!r}, one run at a time, no catch-up")
