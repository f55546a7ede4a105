"""`aitm serve`'s server (serving.server.LocalModelServer) in a fresh process of its own.

For a caller that must see a model the way a server that has just started sees
it: the local infra validator (components/local_infra_validator.py) and the
warmup benchmark (bench/serving_warmup.py).

    with ServerProcess(base_path, model_name="aitm") as server:
      server.start(timeout=120)        # returns "127.0.0.1:PORT" once it listens
      ...                              # TF Serving's gRPC API at server.address
    # stopped; server.log() has what it printed

The child (`python -m serving.server_process`) listens on a free port, as
`aitm serve --port 0` would, and writes the port to a file once it listens,
which is after its first load of the versions (warmup included), as TF Serving
does. Its output goes to a log file the parent reads back, so a failure can
say what the server said.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Optional

from serving import defaults

# The directory that holds the serving package: the child imports it from there.
_PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ServerProcessError(RuntimeError):
  """The server process exited or did not listen in time; the message ends with the
  last lines it printed."""


class ServerProcess:
  """A LocalModelServer over `base_path` (numeric version directories) in a child
  process, on 127.0.0.1 and a free port."""

  def __init__(self, base_path: str, model_name: str,
               poll_wait_seconds: float = defaults.POLL_WAIT_SECONDS):
    self.base_path, self.model_name = base_path, model_name
    self.poll_wait_seconds = poll_wait_seconds
    self.address: Optional[str] = None
    self._dir = tempfile.mkdtemp(prefix="aitm-serve-")
    self._log_path = os.path.join(self._dir, "server.log")
    self._port_file = os.path.join(self._dir, "port")
    self._process: Optional[subprocess.Popen] = None

  def start(self, timeout: float = 300.0) -> str:
    """Starts the child and returns its address once it listens. ServerProcessError
    when it exits first or is not listening after `timeout` seconds (then stopped)."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1",
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
           "PYTHONPATH": os.pathsep.join(
               [_PROJECT_DIR] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    with open(self._log_path, "wb") as log:
      self._process = subprocess.Popen(
          [sys.executable, "-m", "serving.server_process", "--model-base-path",
           self.base_path, "--model-name", self.model_name, "--port-file", self._port_file,
           "--poll-wait-seconds", str(self.poll_wait_seconds)],
          cwd=_PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not os.path.exists(self._port_file):
      code = self._process.poll()
      if code is not None:
        raise ServerProcessError(f"the server exited with code {code} before it "
                                 f"listened; it printed:\n{self.log(tail=20)}")
      if time.monotonic() > deadline:
        self.stop()
        raise ServerProcessError(f"the server was not listening after {timeout:.0f}s; "
                                 f"it printed:\n{self.log(tail=20)}")
      time.sleep(0.1)
    with open(self._port_file) as f:
      self.address = f"{defaults.HOST}:{int(f.read())}"
    return self.address

  def log(self, tail: Optional[int] = None) -> str:
    """What the server printed so far (its last `tail` lines)."""
    try:
      with open(self._log_path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    except FileNotFoundError:
      return ""
    return "\n".join(lines[-tail:] if tail else lines)

  def stop(self, grace: float = 10.0) -> None:
    """Stops the child (SIGTERM, then SIGKILL after `grace` seconds); the log stays
    readable until the `with` block ends."""
    if self._process is not None and self._process.poll() is None:
      self._process.terminate()
      try:
        self._process.wait(grace)
      except subprocess.TimeoutExpired:
        self._process.kill()
        self._process.wait()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.stop()
    shutil.rmtree(self._dir, ignore_errors=True)


def main(argv=None) -> None:
  """The child: serves the base path's model on a free port and writes the port to
  --port-file (whole, by rename) once it listens; runs until terminated."""
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--model-base-path", required=True)
  parser.add_argument("--model-name", required=True)
  parser.add_argument("--port-file", required=True)
  parser.add_argument("--poll-wait-seconds", type=float, default=defaults.POLL_WAIT_SECONDS)
  args = parser.parse_args(argv)
  from serving.model_versions import ModelSource
  from serving.server import LocalModelServer
  server = LocalModelServer([ModelSource(args.model_name, args.model_base_path)], port=0,
                            poll_wait_seconds=args.poll_wait_seconds,
                            log=lambda line: print(line, flush=True))
  port = server.start()
  with open(args.port_file + ".partial", "w") as f:
    f.write(str(port))
  os.replace(args.port_file + ".partial", args.port_file)
  server.wait()


if __name__ == "__main__":
  main(sys.argv[1:])
