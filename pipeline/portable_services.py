"""Beam's portable job service and an external SDK worker pool, on this machine.

How Flink, Spark and Dataflow run Python, in two local processes: the job service
(`apache_beam.runners.portability.local_job_service_main`) takes each Beam pipeline a
component submits and runs it with Beam's portable runner, which for every pipeline
asks the worker pool (`apache_beam.runners.worker.worker_pool_main`) for an SDK
worker: a new Python process that unpickles the DoFns and imports the project by
itself. Nothing of the submitting process reaches a worker - not its sys.path, its
environment, its working directory or the modules it imported - only what
`worker_environment` gives, which is what the project's image gives Beam's workers
on a cluster (kubeflow/Dockerfile: the project importable, TF_USE_LEGACY_KERAS=1).

    with local_portable_beam(log_dir) as services:
      run_local(..., beam_pipeline_args=services.beam_args())

Beam's worker pool starts each SDK worker as `python -c ...` found on its PATH, not
with its own interpreter: the environment puts this interpreter's directory first.
(With another Python first on PATH each worker dies at `import apache_beam`, and the
job fails a minute later with DEADLINE_EXCEEDED; the reason is only in the pool's log.)
"""

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, Iterator, List

from pipeline import beam_options, configs

JOB_SERVICE_MODULE = "apache_beam.runners.portability.local_job_service_main"
WORKER_POOL_MODULE = "apache_beam.runners.worker.worker_pool_main"
# The line Beam's worker pool logs (WARNING, standard error) for each SDK worker it starts.
WORKER_STARTED = "Starting worker with command"
# The environment variables a worker keeps from this process; the rest it gets from
# worker_environment.
_KEPT = ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER")


def worker_environment(project_dir: str = configs.PROJECT_DIR,
                       python: str = sys.executable) -> Dict[str, str]:
  """The environment of the job service, the worker pool and so each SDK worker: the
  project importable from `project_dir` (PYTHONPATH), TF_USE_LEGACY_KERAS=1 as the
  image sets it, `python`'s directory first on PATH; TensorFlow's C++ notices and
  google-cloud's Python 3.10 FutureWarning off, so the logs hold what matters.
  ValueError when `python` on that PATH is another interpreter than `python`."""
  env = {name: os.environ[name] for name in _KEPT if name in os.environ}
  env.update(PATH=os.pathsep.join([os.path.dirname(python), os.environ.get("PATH", os.defpath)]),
             PYTHONPATH=project_dir, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONWARNINGS="ignore::FutureWarning")
  found = shutil.which("python", path=env["PATH"])
  if found is None or not os.path.samefile(found, python):
    raise ValueError(f"Beam's worker pool starts `python` from PATH, which would be {found}, "
                     f"not {python}: run from a virtual environment (its bin/ has `python`)")
  return env


@dataclasses.dataclass
class LocalPortableBeam:
  """The two running services: where they listen, their processes and their logs."""
  job_endpoint: str            # localhost:PORT of the job service
  worker_pool: str             # localhost:PORT of the worker pool
  job_service: subprocess.Popen
  pool: subprocess.Popen
  log_dir: str                 # job_service.log, worker_pool.log (SDK workers' stderr too)

  def beam_args(self) -> List[str]:
    """The Beam arguments that send a pipeline's Beam work here
    (beam_options.portable_local)."""
    return beam_options.portable_local(self.job_endpoint, self.worker_pool)

  def workers_started(self) -> int:
    """How many SDK worker processes the pool has started so far (its log's lines)."""
    with open(os.path.join(self.log_dir, "worker_pool.log"), errors="replace") as f:
      return sum(WORKER_STARTED in line for line in f)

  def sdk_workers(self) -> list:
    """The pool's SDK worker processes alive now (psutil.Process)."""
    import psutil
    try:
      return psutil.Process(self.pool.pid).children(recursive=True)
    except psutil.NoSuchProcess:
      return []

  def log_tail(self, lines: int = 40) -> str:
    """The last lines of both services' logs, for an error message."""
    return "\n".join(f"--- {name}:\n" + _tail(os.path.join(self.log_dir, name), lines)
                     for name in ("job_service.log", "worker_pool.log"))


def _tail(path: str, lines: int) -> str:
  with open(path, errors="replace") as f:
    return "".join(f.readlines()[-lines:])


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _wait(ready, process: subprocess.Popen, what: str, log: str, timeout: float) -> None:
  """Until ready() is true; RuntimeError with the log's end when `process` exits first
  or `timeout` seconds pass."""
  deadline = time.time() + timeout
  while not ready():
    if process.poll() is not None or time.time() > deadline:
      tail = _tail(log, 20)
      state = (f"exited with {process.returncode}" if process.poll() is not None
               else f"not ready after {timeout:.0f}s")
      raise RuntimeError(f"{what} {state}; {log} ends:\n{tail}")
    time.sleep(0.2)


def _listening(port: int) -> bool:
  with socket.socket() as s:
    return s.connect_ex(("localhost", port)) == 0


def _stop(process: subprocess.Popen, first_signal: int, timeout: float = 30) -> None:
  """Sends `first_signal` to one of our processes; kills it if it is still there after
  `timeout` seconds."""
  if process.poll() is None:
    process.send_signal(first_signal)
    try:
      process.wait(timeout)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()


@contextlib.contextmanager
def local_portable_beam(log_dir: str, *, project_dir: str = configs.PROJECT_DIR,
                        python: str = sys.executable, timeout: float = 120
                        ) -> Iterator[LocalPortableBeam]:
  """Starts the job service and the worker pool, in `log_dir` as their working
  directory (neither the caller's nor the project's, so no path relative to either
  can work by chance), with worker_environment; yields them once both listen; stops
  both and the SDK workers left at the end."""
  os.makedirs(log_dir, exist_ok=True)
  env = worker_environment(project_dir, python)
  port_file = os.path.join(log_dir, "job_service.port")
  job_service = pool = services = None
  logs = [open(os.path.join(log_dir, name), "w")
          for name in ("job_service.log", "worker_pool.log")]
  pool_port = _free_port()
  try:
    job_service = subprocess.Popen(
        [python, "-m", JOB_SERVICE_MODULE, "--port", "0", "--port_file", port_file],
        cwd=log_dir, env=env, stdout=logs[0], stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL)
    pool = subprocess.Popen(
        [python, "-m", WORKER_POOL_MODULE, f"--service_port={pool_port}"],
        cwd=log_dir, env=env, stdout=logs[1], stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL)
    _wait(lambda: os.path.exists(port_file), job_service, "Beam's job service",
          logs[0].name, timeout)
    with open(port_file) as f:
      job_port = int(f.read().strip())
    _wait(lambda: _listening(pool_port), pool, "Beam's worker pool", logs[1].name, timeout)
    services = LocalPortableBeam(f"localhost:{job_port}", f"localhost:{pool_port}",
                                 job_service, pool, log_dir)
    yield services
  finally:
    workers = services.sdk_workers() if services else []
    if pool is not None:
      _stop(pool, signal.SIGINT)  # its KeyboardInterrupt path stops its SDK workers
    if job_service is not None:
      _stop(job_service, signal.SIGTERM)
    _kill_left(workers)
    for log in logs:
      log.close()


def _kill_left(workers) -> None:
  """Kills the SDK workers (psutil.Process) of our pool that outlived it; psutil
  refuses a process id that another process has taken since."""
  import psutil
  for worker in workers:
    with contextlib.suppress(psutil.NoSuchProcess):
      worker.kill()
