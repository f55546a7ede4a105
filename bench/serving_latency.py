"""Serving latency and throughput over gRPC, against the SavedModel called in-process.

    .venv/bin/python bench/serving_latency.py --model-base-path runs/serving/aitm

Starts `aitm serve` on the pushed model as a separate process (as a server
would run), then for each batch size calls Predict from one client, one call
after another, for `--seconds`, and calls the same signature on the same
inputs in this process for as long. Inputs are built once up front (raw rows
-> serialized tf.Examples, or one tensor per column for `serving_raw`), so
both sides time the same thing: tensors in, probabilities out. The gRPC side
adds TensorProto encoding, the loopback transport and the server's checks.

Prints p50/p95/p99 latency, predictions/s and the gRPC/in-process ratio of
p50 latency per batch size and signature. Without --model-base-path it uses
the demo's push (`make demo`) and the demo's data for rows.
"""

import os
import sys

# Run as a script, sys.path[0] is bench/; the project's packages are one up.
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[0] = PROJECT_DIR

from cli.tensorflow_import import setup_tensorflow  # noqa: E402

setup_tensorflow()  # before anything loads TensorFlow

from bench.serving_timing import free_port, pushed_versions_and_rows, timed  # noqa: E402

import argparse  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402

import numpy as np  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model-base-path", default=os.path.join("runs", "serving", "aitm"))
  parser.add_argument("--rows", default=os.path.join("runs", "data", "data.csv"),
                      help="CSV of raw rows to send (default: the demo's data)")
  parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 256])
  parser.add_argument("--signatures", nargs="+", default=["serving_default", "serving_raw"])
  parser.add_argument("--seconds", type=float, default=10.0, help="per cell and side")
  args = parser.parse_args()

  from serving.client import ServingClient
  from serving.request_rows import to_example, to_raw_columns
  import tensorflow as tf

  versions, rows = pushed_versions_and_rows(args.model_base_path, args.rows,
                                           max(args.batch_sizes))

  port = free_port()
  server = subprocess.Popen(
      [sys.executable, "-m", "cli.main", "serve", "--model-base-path", args.model_base_path,
       "--port", str(port)], cwd=PROJECT_DIR, stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": PROJECT_DIR})
  results = []
  try:
    client = ServingClient(f"127.0.0.1:{port}", timeout=60)
    version = client.wait_until_available(180)
    kinds = client.column_kinds()
    model = tf.saved_model.load(versions[version])
    for signature in args.signatures:
      function = model.signatures[signature]
      for size in args.batch_sizes:
        batch = (rows * (size // len(rows) + 1))[:size]
        if signature == "serving_default":
          inputs = {"examples": np.array([to_example(r, kinds, "row") for r in batch],
                                         dtype=object)}
        else:
          inputs = to_raw_columns(batch, kinds)
        tensors = {name: tf.constant(value) for name, value in inputs.items()}
        remote = timed(lambda: client.predict_tensors(inputs, signature), args.seconds)
        local = timed(lambda: function(**tensors), args.seconds)
        results.append((signature, size, remote, local))
        print(f"  {signature} batch {size}: {len(remote)} gRPC calls, "
              f"{len(local)} in-process calls", flush=True)
    client.close()
  finally:
    server.terminate()
    server.wait(30)

  ms = lambda a, q: f"{np.percentile(a, q) * 1e3:.2f}"  # noqa: E731
  print(f"\n`aitm serve` on 127.0.0.1 ({os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}), "
        f"model version {version}, one client, calls back to back, {args.seconds:.0f} s per "
        "cell\n")
  print("| signature | batch | gRPC p50 ms | p95 ms | p99 ms | gRPC predictions/s "
        "| in-process p50 ms | in-process predictions/s | p50 ratio |")
  print("|---|---|---|---|---|---|---|---|---|")
  for signature, size, remote, local in results:
    print(f"| {signature} | {size} | {ms(remote, 50)} | {ms(remote, 95)} | {ms(remote, 99)} "
          f"| {size * len(remote) / remote.sum():,.0f} | {ms(local, 50)} "
          f"| {size * len(local) / local.sum():,.0f} "
          f"| {np.median(remote) / np.median(local):.2f}x |")


if __name__ == "__main__":
  main()
