"""The first request to a freshly loaded version, with and without its warmup requests.

    .venv/bin/python bench/serving_warmup.py --model-base-path runs/serving/aitm

For each round and each side, copies the newest pushed version into a
temporary base path - as it is (with `assets.extra/tf_serving_warmup_requests`,
which `aitm serve` replays while loading) or without that file - starts
`aitm serve`'s server on it in a fresh process (serving/server_process.py),
and once the version is AVAILABLE sends one row to `serving_default`, then
one to `serving_raw`, timing each first call, then STEADY_CALLS more of each
for the steady latency. The rows come from --rows (not the warmup rows), and
their inputs are built before the server starts. The two sides alternate, so
a change in the machine's load hits both.

Prints one line per process and a table of medians over the rounds.
"""

import os
import sys

# Run as a script, sys.path[0] is bench/; the project's packages are one up.
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[0] = PROJECT_DIR

from cli.tensorflow_import import setup_tensorflow  # noqa: E402

setup_tensorflow()  # before anything loads TensorFlow

from bench.serving_timing import pushed_versions_and_rows  # noqa: E402

import argparse  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

SIGNATURES = ("serving_default", "serving_raw")
STEADY_CALLS = 20


def _inputs(rows, version_dir):
  """{signature: inputs of one Predict call} for the first row, built from the model's
  own serving_raw SignatureDef (read from saved_model.pb, no TensorFlow session)."""
  from tensorflow.core.protobuf import saved_model_pb2

  from serving.request_rows import column_kinds, to_example, to_raw_columns
  proto = saved_model_pb2.SavedModel()
  with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
    proto.ParseFromString(f.read())
  kinds = column_kinds(proto.meta_graphs[0].signature_def["serving_raw"])
  return {"serving_default": {"examples": np.array([to_example(rows[0], kinds, "row 1")],
                                                   dtype=object)},
          "serving_raw": to_raw_columns(rows[:1], kinds)}


def _one_process(version_dir, model_name, warmup, inputs):
  """Starts a server on a copy of the version (its warmup file kept or removed);
  returns (seconds from start to AVAILABLE, seconds of its warmup replay,
  {signature: first call ms}, {signature: steady p50 ms})."""
  from models.warmup_requests import WARMUP_DIR
  from serving.client import ServingClient
  from serving.server_process import ServerProcess

  with tempfile.TemporaryDirectory(prefix="warmup-bench-") as tmp:
    base = os.path.join(tmp, model_name)
    shutil.copytree(version_dir, os.path.join(base, "1"))
    if not warmup:
      shutil.rmtree(os.path.join(base, "1", WARMUP_DIR), ignore_errors=True)
    start = time.perf_counter()
    with ServerProcess(base, model_name) as server:
      server.start(timeout=600)
      with ServingClient(server.address, model_name=model_name, timeout=120) as client:
        client.wait_until_available(600)
        ready = time.perf_counter() - start
        replay = re.search(r"(\d+) warmup requests in ([\d.]+)s", server.log())
        if warmup != bool(replay):
          sys.exit(f"expected {'a' if warmup else 'no'} warmup; the server printed:\n"
                   f"{server.log(tail=5)}")
        replayed = float(replay.group(2)) if replay else 0.0
        first, steady = {}, {}
        for signature in SIGNATURES:
          begin = time.perf_counter()
          client.predict_tensors(inputs[signature], signature)
          first[signature] = (time.perf_counter() - begin) * 1e3
        for signature in SIGNATURES:
          times = []
          for _ in range(STEADY_CALLS):
            begin = time.perf_counter()
            client.predict_tensors(inputs[signature], signature)
            times.append((time.perf_counter() - begin) * 1e3)
          steady[signature] = float(np.median(times))
  return ready, replayed, first, steady


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model-base-path", default=os.path.join("runs", "serving", "aitm"))
  parser.add_argument("--model-name", default="aitm")
  parser.add_argument("--rows", default=os.path.join("runs", "data", "data.csv"),
                      help="CSV of raw rows; the first is sent (default: the demo's data)")
  parser.add_argument("--rounds", type=int, default=3, help="server processes per side")
  args = parser.parse_args()

  from models.warmup_requests import read_requests

  versions, rows = pushed_versions_and_rows(args.model_base_path, args.rows, 1)
  version = max(versions)
  version_dir = versions[version]
  warmup_records = len(read_requests(version_dir))
  if not warmup_records:
    sys.exit(f"{version_dir} has no warmup file: push a model trained since the Trainer "
             "writes one")
  inputs = _inputs(rows, version_dir)

  results = {True: [], False: []}
  for round_number in range(args.rounds):
    for warmup in ((True, False) if round_number % 2 == 0 else (False, True)):
      ready, replayed, first, steady = _one_process(version_dir, args.model_name, warmup,
                                                    inputs)
      results[warmup].append((ready, replayed, first, steady))
      print(f"  round {round_number + 1}, {'with' if warmup else 'without'} warmup: "
            f"AVAILABLE after {ready:.1f}s (warmup {replayed:.1f}s); first calls "
            + ", ".join(f"{s} {first[s]:.1f} ms" for s in SIGNATURES) + "; steady "
            + ", ".join(f"{s} {steady[s]:.1f} ms" for s in SIGNATURES), flush=True)

  print(f"\n`aitm serve` in a fresh process on 127.0.0.1 ({os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}), "
        f"model version {version} ({warmup_records} warmup records), one row per call, "
        f"median of {args.rounds} processes per side\n")
  print("| warmup | process start to AVAILABLE s | of which warmup s "
        "| first serving_default ms | first serving_raw ms | steady serving_default ms "
        "| steady serving_raw ms |")
  print("|---|---|---|---|---|---|---|")
  for warmup in (False, True):
    runs = results[warmup]
    median = lambda values: float(np.median(values))  # noqa: E731
    print(f"| {'with' if warmup else 'without'} | {median([r[0] for r in runs]):.1f} | "
          f"{median([r[1] for r in runs]):.2f} | "
          + " | ".join(f"{median([r[2][s] for r in runs]):.1f}" for s in SIGNATURES) + " | "
          + " | ".join(f"{median([r[3][s] for r in runs]):.1f}" for s in SIGNATURES) + " |")


if __name__ == "__main__":
  main()
