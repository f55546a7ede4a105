"""`aitm`: generate data, check a config's model, run the TFX pipeline locally, compare
models, compile it for Kubeflow, serve the pushed model over TF Serving's gRPC API and
query it, score a whole candidate set with it."""

import os

# Before TensorFlow is imported anywhere: TFX 1.16 components expect Keras 2.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

# google-cloud libraries warn about Python 3.10 on import; TFX 1.16 needs it.
warnings.filterwarnings("ignore", category=FutureWarning)
# ... and again in each process of a multi-process DirectRunner.
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")

import argparse  # noqa: E402

from cli.commands import (check, compare, compile_kfp, generate_data, predict,  # noqa: E402
                          report, rollback, run, schedule_kfp, score, serve)
from pipeline import configs  # noqa: E402

# In the order `aitm --help` lists them.
COMMANDS = (generate_data, check, run, compare, report, compile_kfp, schedule_kfp, rollback,
            serve, predict, score)


def _version() -> str:
  from importlib import metadata
  try:
    return metadata.version("aitm-tfx")
  except metadata.PackageNotFoundError:
    return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
  """`aitm` and its commands, each with its flags (cli/commands/)."""
  parser = argparse.ArgumentParser(
      prog="aitm", description=__doc__,
      epilog=f"`aitm run` exits 0 when it pushed a model, {configs.EXIT_NOT_BLESSED} when it "
      "trained and evaluated one that was not blessed (nothing pushed), 1 on an error "
      "(nothing pushed).")
  parser.add_argument("--version", action="version", version=f"aitm {_version()}")
  subparsers = parser.add_subparsers(dest="command", required=True)
  for command in COMMANDS:
    command.add_parser(subparsers).set_defaults(
        func=command.run, loads_tensorflow=command.LOADS_TENSORFLOW)
  return parser


def main(argv=None):
  """Runs the `aitm` command `argv` names (None: sys.argv), TensorFlow imported first
  when the command loads it."""
  args = build_parser().parse_args(argv)
  if args.loads_tensorflow:
    # Quietly, without the CUDA plugin lines of a machine with no GPU.
    from cli.tensorflow_import import import_tensorflow
    import_tensorflow()
  args.func(args)


if __name__ == "__main__":
  main()
