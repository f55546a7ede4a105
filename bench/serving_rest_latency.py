"""REST against gRPC on `aitm serve`: the same predictions, and each API's latency.

    .venv/bin/python bench/serving_rest_latency.py --model-base-path runs/serving/aitm

Starts `aitm serve --rest-port` on the pushed model as a separate process, then per
signature and batch size sends the same rows both ways: over gRPC with the
project's client (Predict with TensorProtos), and over TF Serving's REST API as a
curl user would (one keep-alive HTTP connection; row-form JSON built once up front:
b64 tf.Examples for `serving_default`, named raw columns for `serving_raw`). It
first checks that both answers agree within 1e-6 for every task, then calls each
side back to back for `--seconds` and prints p50/p99 latency and the REST/gRPC
ratio of p50. The REST side adds JSON parsing and writing in the server (and
reading the JSON answer in the client).
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
import base64  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402

import numpy as np  # noqa: E402


def _row_json(batch_inputs, signature):
  """The row-form JSON body of the same inputs the gRPC side sends."""
  if signature == "serving_default":
    instances = [{"b64": base64.b64encode(e).decode()} for e in batch_inputs["examples"]]
  else:
    size = len(next(iter(batch_inputs.values())))
    instances = [{name: (values[i].decode() if isinstance(values[i], bytes)
                         else values[i].item()) for name, values in batch_inputs.items()}
                 for i in range(size)]
  return json.dumps({"signature_name": signature, "instances": instances}).encode()


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model-base-path", default=os.path.join("runs", "serving", "aitm"))
  parser.add_argument("--model-name", default="aitm")
  parser.add_argument("--rows", default=os.path.join("runs", "data", "data.csv"),
                      help="CSV of raw rows to send (default: the demo's data)")
  parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 256])
  parser.add_argument("--signatures", nargs="+", default=["serving_default", "serving_raw"])
  parser.add_argument("--seconds", type=float, default=10.0, help="per cell and API")
  args = parser.parse_args()

  from serving.client import ServingClient
  from serving.request_rows import to_example, to_raw_columns

  versions, rows = pushed_versions_and_rows(args.model_base_path, args.rows,
                                           max(args.batch_sizes))

  grpc_port, rest_port = free_port(), free_port()
  server = subprocess.Popen(
      [sys.executable, "-m", "cli.main", "serve", "--model-base-path", args.model_base_path,
       "--model-name", args.model_name, "--port", str(grpc_port), "--rest-port",
       str(rest_port)], cwd=PROJECT_DIR, stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": PROJECT_DIR})
  results = []
  try:
    client = ServingClient(f"127.0.0.1:{grpc_port}", args.model_name, timeout=60)
    version = client.wait_until_available(180)
    kinds = client.column_kinds()
    connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=60)
    path = f"/v1/models/{args.model_name}:predict"

    def rest(body):
      connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
      reply = connection.getresponse()
      answer = json.loads(reply.read())
      if reply.status != 200:
        raise RuntimeError(f"REST answered {reply.status}: {answer}")
      return answer["predictions"]

    for signature in args.signatures:
      for size in args.batch_sizes:
        batch = (rows * (size // len(rows) + 1))[:size]
        if signature == "serving_default":
          inputs = {"examples": np.array([to_example(r, kinds, "row") for r in batch],
                                         dtype=object)}
        else:
          inputs = to_raw_columns(batch, kinds)
        body = _row_json(inputs, signature)
        over_grpc = client.predict_tensors(inputs, signature)
        over_rest = rest(body)
        worst = max(float(np.max(np.abs(np.array([p[task] for p in over_rest]) - values)))
                    for task, values in over_grpc.items())
        if worst > 1e-6:
          raise RuntimeError(f"{signature} batch {size}: REST and gRPC differ by {worst:g}")
        grpc_times = timed(lambda: client.predict_tensors(inputs, signature), args.seconds)
        rest_times = timed(lambda: rest(body), args.seconds)
        results.append((signature, size, len(body), worst, grpc_times, rest_times))
        print(f"  {signature} batch {size}: {len(grpc_times)} gRPC calls, "
              f"{len(rest_times)} REST calls, largest difference {worst:.1e}", flush=True)
    connection.close()
    client.close()
  finally:
    server.terminate()
    server.wait(30)

  ms = lambda a, q: f"{np.percentile(a, q) * 1e3:.2f}"  # noqa: E731
  print(f"\n`aitm serve` on 127.0.0.1 ({os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}), "
        f"model version {version}, one client, calls back to back, {args.seconds:.0f} s per "
        "cell and API\n")
  print("| signature | batch | JSON bytes | gRPC p50 ms | gRPC p99 ms | REST p50 ms "
        "| REST p99 ms | REST/gRPC p50 |")
  print("|---|---|---|---|---|---|---|---|")
  for signature, size, body_bytes, _, grpc_times, rest_times in results:
    ratio = np.percentile(rest_times, 50) / np.percentile(grpc_times, 50)
    print(f"| {signature} | {size} | {body_bytes:,} | {ms(grpc_times, 50)} | "
          f"{ms(grpc_times, 99)} | {ms(rest_times, 50)} | {ms(rest_times, 99)} | "
          f"{ratio:.2f}x |")


if __name__ == "__main__":
  main()
