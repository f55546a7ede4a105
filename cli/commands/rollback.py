"""`aitm rollback`: serve an earlier pushed version again (serving/version_store.py)."""

import os
import sys

from cli import common_flags

LOADS_TENSORFLOW = True


def add_parser(subparsers):
  """Adds `rollback` and its flags to `subparsers`; returns its parser."""
  parser = subparsers.add_parser("rollback", help="serve an earlier pushed version: the newer "
                                 "ones move to <serving-dir>/<model-name>/rolled_back/")
  common_flags.add_serving_dir(parser)
  common_flags.add_model_name(parser)
  which = parser.add_mutually_exclusive_group()
  which.add_argument("--to", type=int, metavar="VERSION",
                     help="the version to serve (default: the one before the newest)")
  which.add_argument("--restore", type=int, metavar="VERSION",
                     help="move a rolled-back version back into place")
  return parser


def run(args):
  """Rolls the model's served versions back (`--to`), or restores one (`--restore`);
  exits with the error, nothing changed, when that can't be done."""
  from serving import version_store
  base = os.path.join(args.serving_dir, args.model_name)
  try:
    if args.restore is not None:
      path = version_store.restore(base, args.restore)
      print(f"restored version {args.restore} to {path}; it is served again if it is the "
            "newest version")
      return
    done = version_store.rollback(base, args.to)
  except version_store.VersionStoreError as e:
    sys.exit(f"error: {e}")
  print(f"{base}: version {done.served_now} is now the newest, served by TF Serving's latest "
        f"policy (was {done.served_before}); moved {', '.join(map(str, done.moved))} to "
        f"{done.rolled_back_dir} (undo: aitm rollback --serving-dir {args.serving_dir} "
        f"--model-name {args.model_name} --restore VERSION)")
