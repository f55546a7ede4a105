"""`aitm serve`: pushed SavedModels over TF Serving's gRPC API (serving/server.py) and,
with --rest-port, its REST API (serving/rest_api.py)."""

import argparse
import os
import sys

from cli import common_flags
from serving import defaults

LOADS_TENSORFLOW = True


def _port(text: str) -> int:
  """argparse type: a TCP port number, 0 (any free port) to 65535."""
  value = int(text)
  if not 0 <= value <= 65535:
    raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {value}")
  return value


def add_parser(subparsers):
  """Adds `serve` and its flags to `subparsers`; returns its parser."""
  parser = subparsers.add_parser("serve", help="serve pushed SavedModels over TF Serving's "
                                 "gRPC API, and its REST API with --rest-port (a local "
                                 "stand-in for tensorflow/serving)")
  parser.add_argument("--model-base-path", help="the Pusher's <serving-dir>/<model-name>: "
                      "numeric version directories")
  common_flags.add_model_name(parser)
  parser.add_argument("--model-config-file", help="TF Serving's ModelServerConfig (text "
                      "proto), e.g. kubeflow/serving/models.config; re-read when it changes")
  parser.add_argument("--port", type=int, default=defaults.PORT,
                      help="gRPC port (0: any free port; default %(default)s)")
  parser.add_argument("--rest-port", type=_port, default=None,
                      help="also serve TF Serving's REST API on this port (its "
                      "--rest_api_port; TF Serving's image uses 8501; 0: any free port; "
                      "default: no REST API)")
  parser.add_argument("--host", default=defaults.HOST,
                      help="address to listen on (default %(default)s)")
  parser.add_argument("--num-versions", type=common_flags.positive_int,
                      default=defaults.LATEST_VERSIONS,
                      help="versions kept loaded, newest first (TF Serving's latest policy; "
                      "default %(default)s)")
  parser.add_argument("--file-system-poll-wait-seconds", type=float,
                      default=defaults.POLL_WAIT_SECONDS,
                      help="how often the base path is checked for new versions "
                      "(default %(default)s)")
  parser.add_argument("--max-batch-size", type=common_flags.positive_int,
                      default=defaults.DEFAULT_MAX_BATCH_SIZE,
                      help="rows a Predict request may carry; more is INVALID_ARGUMENT "
                      "(default %(default)s)")
  parser.add_argument("--max-concurrent-rpcs", type=common_flags.positive_int,
                      default=defaults.DEFAULT_MAX_CONCURRENT_RPCS,
                      help="requests served at once; more get RESOURCE_EXHAUSTED "
                      "(default %(default)s)")
  parser.add_argument("--monitoring-port", type=int,
                      help="serve Prometheus metrics over HTTP on this port (0: any free "
                      "port), as TF Serving does on its REST port with "
                      "--monitoring_config_file; off unless given")
  return parser


def _sources(args):
  """The models to serve from --model-base-path, or None to read --model-config-file."""
  from serving.model_versions import ModelSource, VersionPolicy, read_model_config_file
  if args.model_config_file:
    if args.model_base_path:
      sys.exit("error: give --model-config-file or --model-base-path, not both")
    try:
      for source in read_model_config_file(args.model_config_file):
        print(f"[serve] {source.name}: versions under {source.base_path}")
    except (OSError, ValueError) as e:
      sys.exit(f"error: {e}")
    return None
  if not args.model_base_path:
    sys.exit("error: --model-base-path (the Pusher's <serving-dir>/<model-name>) or "
             "--model-config-file is required")
  sources = [ModelSource(args.model_name, os.path.abspath(args.model_base_path),
                         VersionPolicy(latest=args.num_versions))]
  print(f"[serve] {args.model_name}: versions under {sources[0].base_path}")
  return sources


def run(args):
  """Serves the models until Ctrl-C or SIGTERM, then stops gracefully (as TF Serving
  does on SIGTERM); exits with the error when the server can't start."""
  import signal
  import threading
  from serving.server import LocalModelServer
  sources = _sources(args)
  # Handlers before the server starts, so a signal at any moment only sets the event
  # (a KeyboardInterrupt between two lines could leave the server's threads running).
  stopping = threading.Event()
  for number in (signal.SIGINT, signal.SIGTERM):
    signal.signal(number, lambda *_: stopping.set())
  try:
    server = LocalModelServer(sources, port=args.port, host=args.host,
                              poll_wait_seconds=args.file_system_poll_wait_seconds,
                              config_file=args.model_config_file,
                              max_batch_size=args.max_batch_size,
                              max_concurrent_rpcs=args.max_concurrent_rpcs,
                              monitoring_port=args.monitoring_port,
                              rest_port=args.rest_port)
    server.start()
  except (OSError, ValueError) as e:
    sys.exit(f"error: {e}")
  print("[serve] local stand-in for TF Serving (development and tests); in production "
        "run tensorflow/serving (kubeflow/serving/). Ctrl-C stops it.", flush=True)
  stopping.wait()
  server.stop()
  print("[serve] stopped", flush=True)
