"""Beam pipeline arguments for where the pipeline's Beam work runs.

Every Beam-powered component (ExampleGen, StatisticsGen, Transform, Evaluator)
gets the pipeline's `beam_pipeline_args`; moving from one machine to a cluster
is a change of these arguments only:

* `direct(workers)`: Beam's DirectRunner in this process (1 worker) or in
  `workers` local processes (multi_processing), never the Prism runner, which
  recent Beam tries first and which downloads a binary.
* `dataflow(...)`: Google Cloud Dataflow. Workers run the project's image
  (`sdk_container_image`, the kubeflow/Dockerfile image), so Transform's
  `preprocessing_fn` and the CSV parser import there as they do in the pod.
* `portable(runner, job_endpoint, ...)`: Flink or Spark through Beam's
  portability framework: the job server at `job_endpoint`, SDK workers in the
  project's image (DOCKER) or an `EXTERNAL` worker pool beside each task manager.
* `portable_local(job_endpoint, worker_pool)`: Beam's own portable job service on
  this machine with SDK workers from an external worker pool, each a separate
  Python process that unpickles the DoFns and imports the project on its own,
  as on a cluster (pipeline.portable_services starts both).

`merge(defaults, overrides)` lets `--beam-args` replace single flags, and
`parse(args)` checks a list the way Beam will read it, so a typo fails at
compile time rather than in a cluster.
"""

import shlex
from typing import Iterable, List, Optional, Sequence

RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner")


def direct(workers: int = 1) -> List[str]:
  """Beam's DirectRunner: in memory for 1 worker, else `workers` local processes."""
  if workers < 1:
    raise ValueError(f"DirectRunner workers must be at least 1, got {workers}")
  mode = "in_memory" if workers == 1 else "multi_processing"
  return ["--runner=DirectRunner", f"--direct_running_mode={mode}",
          f"--direct_num_workers={workers}"]


def dataflow(*, project: str, region: str, temp_location: str, sdk_container_image: str,
             staging_location: Optional[str] = None, max_num_workers: Optional[int] = None,
             machine_type: Optional[str] = None, service_account_email: Optional[str] = None,
             subnetwork: Optional[str] = None, experiments: Sequence[str] = ()) -> List[str]:
  """Dataflow Runner v2 with the project's image as the SDK container."""
  for name, value in (("temp_location", temp_location),
                      ("staging_location", staging_location)):
    if value is not None and not value.startswith("gs://"):
      raise ValueError(f"Dataflow's {name} must be a gs:// path, got {value!r}")
  args = ["--runner=DataflowRunner", f"--project={project}", f"--region={region}",
          f"--temp_location={temp_location}", f"--sdk_container_image={sdk_container_image}",
          "--experiments=use_runner_v2"]
  if staging_location:
    args.append(f"--staging_location={staging_location}")
  if max_num_workers:
    args.append(f"--max_num_workers={max_num_workers}")
  if machine_type:
    args.append(f"--machine_type={machine_type}")
  if service_account_email:
    args.append(f"--service_account_email={service_account_email}")
  if subnetwork:
    args.append(f"--subnetwork={subnetwork}")
  args += [f"--experiments={e}" for e in experiments]
  return args


def portable(runner: str, job_endpoint: str, *, sdk_container_image: Optional[str] = None,
             environment_type: str = "DOCKER", environment_config: Optional[str] = None,
             parallelism: Optional[int] = None) -> List[str]:
  """Flink or Spark (or any portable runner) through its job server.

  environment_type: DOCKER (SDK workers from `sdk_container_image`), EXTERNAL
  (a worker pool at `environment_config`, e.g. localhost:50000, beside each
  task manager) or PROCESS."""
  if runner not in ("FlinkRunner", "SparkRunner", "PortableRunner"):
    raise ValueError(f"portable runner must be FlinkRunner, SparkRunner or PortableRunner, "
                     f"got {runner!r}")
  if environment_type == "DOCKER":
    if not sdk_container_image:
      raise ValueError("environment_type DOCKER needs sdk_container_image (the project image)")
    environment_config = sdk_container_image
  elif environment_type in ("EXTERNAL", "PROCESS"):
    if not environment_config:
      raise ValueError(f"environment_type {environment_type} needs environment_config")
  else:
    raise ValueError(f"environment_type must be DOCKER, EXTERNAL or PROCESS, got "
                     f"{environment_type!r}")
  endpoint_flag = {"FlinkRunner": "flink_master", "SparkRunner": "spark_master_url"}
  args = [f"--runner={runner}"]
  if runner in endpoint_flag:
    # Flink/Spark runners start their own job server against the cluster's master.
    args.append(f"--{endpoint_flag[runner]}={job_endpoint}")
  else:
    args.append(f"--job_endpoint={job_endpoint}")
  args += [f"--environment_type={environment_type}",
           f"--environment_config={environment_config}"]
  if environment_type == "DOCKER":
    # Names the dependency for TFX, which otherwise stages an sdist of TFX for every
    # Beam component that the image's boot then pip-installs on each worker, and for
    # Beam, which then skips staging its own SDK: the image has both.
    args.append(f"--sdk_container_image={sdk_container_image}")
  if parallelism:
    args.append(f"--parallelism={parallelism}")
  return args


# portable_local's --job_server_timeout: longer than any one Beam job of a run.
PORTABLE_LOCAL_JOB_TIMEOUT = 4 * 3600


def portable_local(job_endpoint: str, worker_pool: str, *,
                   job_timeout_seconds: int = PORTABLE_LOCAL_JOB_TIMEOUT) -> List[str]:
  """Beam's PortableRunner against a job service at `job_endpoint` (host:port), its SDK
  workers started by the external worker pool at `worker_pool` (host:port).

  The local stand-in for Flink, Spark or Dataflow: `python -m
  apache_beam.runners.portability.local_job_service_main --port N` and `python -m
  apache_beam.runners.worker.worker_pool_main --service_port M`, or
  pipeline.portable_services.local_portable_beam. Not LOOPBACK, which runs the SDK
  harness inside the submitting process, and not PROCESS, which Beam's Python job
  service does not run (KeyError 'beam:env:process:v1').

  `--job_server_timeout`: the PortableRunner puts it (60 s by default) on the job's
  state and message streams as well, and Beam's Python job service takes those
  streams before the job starts, so with the default every Beam job longer than a
  minute fails in the submitter with DEADLINE_EXCEEDED while it goes on running (and
  then finds its output deleted by TFX). It also bounds the wait for a job service
  that is not there."""
  for name, value in (("job_endpoint", job_endpoint), ("worker_pool", worker_pool)):
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
      raise ValueError(f"portable_local's {name} must be host:port, got {value!r}")
  if job_endpoint == worker_pool:
    raise ValueError(f"the job service and the worker pool need two ports, got "
                     f"{job_endpoint!r} for both")
  if job_timeout_seconds < 1:
    raise ValueError(f"job_timeout_seconds must be at least 1, got {job_timeout_seconds}")
  return portable("PortableRunner", job_endpoint, environment_type="EXTERNAL",
                  environment_config=worker_pool) + [
                      f"--job_server_timeout={job_timeout_seconds}"]


def split(text_or_list: Iterable[str]) -> List[str]:
  """`--beam-args "--a=1 --b=2"` (repeatable) -> ['--a=1', '--b=2']."""
  if isinstance(text_or_list, str):
    text_or_list = [text_or_list]
  return [arg for text in text_or_list for arg in shlex.split(text)]


def _flag(arg: str) -> str:
  return arg.split("=", 1)[0]


def merge(defaults: Sequence[str], overrides: Sequence[str]) -> List[str]:
  """defaults with each flag in overrides replaced (or added). Switching
  `--runner` away from DirectRunner drops the direct_* defaults."""
  overridden = {_flag(a) for a in overrides}
  runner = next((a.split("=", 1)[1] for a in overrides if _flag(a) == "--runner"), None)
  kept = [a for a in defaults if _flag(a) not in overridden
          and not (runner and runner != "DirectRunner" and a.startswith("--direct_"))]
  return kept + list(overrides)


def parse(args: Sequence[str]):
  """Beam's PipelineOptions for args; refuses an unknown flag or runner."""
  from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
  for arg in args:
    if not arg.startswith("--"):
      raise ValueError(f"Beam argument {arg!r} is not of the form --flag[=value]")
  options = PipelineOptions(list(args))
  known = PipelineOptions(list(args)).get_all_options(drop_default=False)
  unknown = [a for a in args if _flag(a)[2:] not in known]
  if unknown:
    raise ValueError(f"Beam does not know the option(s) {unknown}")
  runner = options.view_as(StandardOptions).runner
  if runner is not None and runner not in RUNNERS:
    raise ValueError(f"runner {runner!r} is not one of {RUNNERS}")
  return options
