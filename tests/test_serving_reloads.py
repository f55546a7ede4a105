"""`aitm serve` under 16 clients while two versions are published and one rolled back
(bench/serving_reloads.py's scenario, 20 s here, the server in this process): no
request fails, and every response names the version that computed it."""

import importlib.util
import os

from serving.model_versions import ModelSource
from serving.server import LocalModelServer

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench():
  spec = importlib.util.spec_from_file_location(
      "serving_reloads", os.path.join(PROJECT_DIR, "bench", "serving_reloads.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_reloads_under_load_fail_no_request_and_mix_no_version(tmp_path):
  bench = _bench()
  base, models = bench.prepare(str(tmp_path))
  server = LocalModelServer([ModelSource(bench.MODEL, base)], port=0, poll_wait_seconds=0.2,
                            log=lambda *_: None)
  server.start()
  try:
    result = bench.run_load(server.address, base, models, clients=16, seconds=20)
  finally:
    server.stop()
  assert result["errors"] == {}
  assert result["mismatched"] == []
  assert set(result["by_version"]) == {1, 2, 3}, result["by_version"]
  assert result["requests"] > 1000
  assert [what for _, what in result["events"]] == ["publish 2", "publish 3", "roll back 3"]
