"""Serving under load while versions come and go: `aitm serve` with 16 clients.

    .venv/bin/python bench/serving_reloads.py [--clients 16] [--seconds 60] [--work DIR]

Starts `aitm serve` (a separate process, as deployed) on a base path holding
version 1 of a small model, then runs `--clients` threads calling Predict
back to back for `--seconds` while the versions change as a daily pipeline
and an operator would change them, through serving.version_store: version 2
is published at a quarter of the time, version 3 at half, and at three
quarters `aitm rollback` moves version 3 aside, so version 2 is served again.

Each version computes something else (ctr = sigmoid(price / scale), scale 10,
5 and 2.5), so every response shows whether the version it names is the one
that computed it. Prints requests, errors (any status but OK), responses
whose version doesn't match their values, p50/p99 latency and the responses
per version. The models are small on purpose: the figures measure the
server (checks, reloads, gRPC), not a model's compute.
"""

import os
import sys

# Run as a script, sys.path[0] is bench/; the project's packages are one up.
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[0] = PROJECT_DIR

from cli.tensorflow_import import setup_tensorflow  # noqa: E402

setup_tensorflow()  # before anything loads TensorFlow

import argparse  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Dict, List  # noqa: E402


import numpy as np  # noqa: E402

MODEL = "reloads"
SCALES = {1: 10.0, 2: 5.0, 3: 2.5}


def make_model(path: str, scale: float) -> str:
  """A SavedModel with serving_default over tf.Examples: ctr = sigmoid(price / scale)."""
  import tensorflow as tf

  class Scaled(tf.Module):
    def __init__(self):
      super().__init__()
      self.scale = tf.Variable(scale)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
      price = tf.io.parse_example(examples, {"price": tf.io.FixedLenFeature(
          [], tf.int64, default_value=0)})["price"]
      return {"ctr": tf.sigmoid(tf.cast(price, tf.float32) / self.scale)}

  module = Scaled()
  tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
  return path


def _request(price: int):
  import tensorflow as tf
  from tensorflow_serving.apis import predict_pb2
  example = tf.train.Example()
  example.features.feature["price"].int64_list.value.append(price)
  request = predict_pb2.PredictRequest()
  request.model_spec.name = MODEL
  request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example.SerializeToString()]))
  return request


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_load(address: str, base: str, models: Dict[int, str], clients: int, seconds: float
             ) -> Dict[str, object]:
  """Clients calling Predict on `address` for `seconds` while versions 2 and 3 of
  `models` are published into `base` and version 3 is rolled back; the counts."""
  import grpc
  import tensorflow as tf
  from tensorflow_serving.apis import prediction_service_pb2_grpc

  from serving import version_store

  requests = [_request(price) for price in range(-20, 21)]
  lock = threading.Lock()
  latencies: List[float] = []
  errors: Dict[str, int] = {}
  mismatched: List[tuple] = []
  by_version: Dict[int, int] = {}
  stop = threading.Event()

  def client():
    channel = grpc.insecure_channel(address)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    rng = random.Random(threading.get_ident())
    mine, wrong, counts, failed = [], [], {}, {}
    while not stop.is_set():
      price = rng.randrange(-20, 21)
      start = time.perf_counter()
      try:
        reply = stub.Predict(requests[price + 20], timeout=30)
      except grpc.RpcError as e:
        failed[e.code().name] = failed.get(e.code().name, 0) + 1
        continue
      mine.append(time.perf_counter() - start)
      version = reply.model_spec.version.value
      value = float(tf.make_ndarray(reply.outputs["ctr"])[0])
      expected = 1 / (1 + np.exp(-price / SCALES.get(version, np.nan)))
      if not abs(value - expected) < 1e-5:
        wrong.append((version, price, value))
      counts[version] = counts.get(version, 0) + 1
    channel.close()
    with lock:
      latencies.extend(mine)
      mismatched.extend(wrong)
      for version, n in counts.items():
        by_version[version] = by_version.get(version, 0) + n
      for code, n in failed.items():
        errors[code] = errors.get(code, 0) + n

  threads = [threading.Thread(target=client) for _ in range(clients)]
  start = time.monotonic()
  for thread in threads:
    thread.start()
  events = []
  for at, action in ((0.25, "publish 2"), (0.5, "publish 3"), (0.75, "roll back 3")):
    time.sleep(max(0.0, start + at * seconds - time.monotonic()))
    if action.startswith("publish"):
      version = int(action.split()[1])
      version_store.publish(models[version], base, version=version)
    else:
      version_store.rollback(base)
    events.append((round(time.monotonic() - start, 1), action))
  time.sleep(max(0.0, start + seconds - time.monotonic()))
  stop.set()
  for thread in threads:
    thread.join()
  lat = np.array(latencies) * 1000
  return {"requests": len(latencies) + sum(errors.values()), "errors": errors,
          "mismatched": mismatched, "by_version": dict(sorted(by_version.items())),
          "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
          "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
          "seconds": seconds, "clients": clients, "events": events}


def prepare(work: str):
  """(base path with version 1, {version: model dir}) under work."""
  models = {v: make_model(os.path.join(work, "models", str(v)), scale)
            for v, scale in SCALES.items()}
  from serving import version_store
  base = os.path.join(work, "serving", MODEL)
  version_store.publish(models[1], base, version=1)
  return base, models


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--clients", type=int, default=16)
  parser.add_argument("--seconds", type=float, default=60.0)
  parser.add_argument("--work", help="where models and the serving dir go (default: temporary)")
  args = parser.parse_args()
  work = args.work or tempfile.mkdtemp(prefix="aitm-reloads-")
  base, models = prepare(work)
  port = _free_port()
  server = subprocess.Popen(
      [sys.executable, "-m", "cli.main", "serve", "--model-base-path", base, "--model-name",
       MODEL, "--port", str(port), "--file-system-poll-wait-seconds", "0.5"],
      cwd=PROJECT_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    from serving.client import ServingClient
    with ServingClient(f"127.0.0.1:{port}", MODEL, timeout=10, retries=60) as client:
      client.wait_until_available(120)
    result = run_load(f"127.0.0.1:{port}", base, models, args.clients, args.seconds)
  finally:
    server.terminate()
    server.wait(30)
  errors = sum(result["errors"].values())
  print(f"{args.clients} clients, {args.seconds:.0f} s, `aitm serve` in its own process on "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), Python "
        f"{platform.python_version()}; events: "
        + ", ".join(f"{what} at {at} s" for at, what in result["events"]))
  print("\n| requests | errors | responses whose version didn't compute them | p50 ms | p99 ms "
        "| responses by version |\n|---|---|---|---|---|---|")
  print(f"| {result['requests']:,} | {errors}{' ' + str(result['errors']) if errors else ''} "
        f"| {len(result['mismatched'])} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} | "
        + ", ".join(f"{v}: {n:,}" for v, n in result["by_version"].items()) + " |")


if __name__ == "__main__":
  main()
