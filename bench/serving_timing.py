"""What the serving benchmarks share: a pushed model and rows to send, a free port, and
back-to-back timing (bench/serving_latency.py, serving_rest_latency.py,
serving_warmup.py). Not a benchmark itself."""

import os
import socket
import sys
import time

import numpy as np


def free_port() -> int:
  """A TCP port nothing listens on now."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def timed(call, seconds: float, min_calls: int = 20):
  """Latencies (s) of back-to-back calls for `seconds` (at least min_calls), after one
  untimed call (tf.function tracing, connection setup)."""
  call()
  latencies, end = [], time.perf_counter() + seconds
  while time.perf_counter() < end or len(latencies) < min_calls:
    start = time.perf_counter()
    call()
    latencies.append(time.perf_counter() - start)
  return np.array(latencies)


def pushed_versions_and_rows(model_base_path: str, rows_path: str, max_rows: int):
  """({version: directory} under the Pusher's base path, the first `max_rows` raw rows of
  `rows_path`); exits saying what to run when either is missing."""
  from serving.model_versions import list_versions
  from serving.request_rows import read_rows
  versions = list_versions(model_base_path)
  if not versions or not os.path.isfile(rows_path):
    sys.exit(f"no pushed model under {model_base_path} or no rows at {rows_path}: "
             "run `make demo` first, or pass --model-base-path and --rows")
  rows = []
  for row in read_rows(rows_path):
    rows.append(row)
    if len(rows) == max_rows:
      break
  return versions, rows
