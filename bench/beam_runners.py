"""Where the pipeline's Beam steps run: DirectRunner, PortableRunner with separate SDK
workers, DaskRunner. Run by hand; prints one table.

    .venv/bin/python bench/beam_runners.py --runners direct portable
    PYTHONPATH=/work/dask-pkgs .venv/bin/python bench/beam_runners.py   # all three

On the same generated rows (`--rows`, `--seed`: the test suite's 20,000 and 11):

* direct: the whole pipeline without the cache, Beam in this process (the default).
* portable: the whole pipeline without the cache, Beam's PortableRunner against its
  own job service, every Beam job's DoFns in an SDK worker process started by an
  external worker pool (pipeline/portable_services.py; tests/test_portable_runner.py
  checks its results against the DirectRunner's).
* dask: each Beam-powered component alone on a dask.distributed LocalCluster of
  `--dask-workers` processes, in the direct run's pipeline root (what comes before it
  is served from the cache, what comes after runs on DirectRunner): first with Beam
  2.59's DaskRunner as shipped, then with this script's PatchedDaskRunner, which
  mends the two faults that stop the shipped one before any work (see its docstring),
  to see what the runner itself can do.

Dask is not a project dependency: install it beside the venv, not into it, e.g.
`.venv/bin/pip install --no-deps --target /work/dask-pkgs dask==2024.8.0
distributed==2024.8.0 toolz partd locket fsspec zict tblib msgpack importlib_metadata zipp`
(versions that keep the locked cloudpickle 2.2.1), and put that directory on PYTHONPATH.
"""

import os
import sys

# Run as a script, sys.path[0] is bench/; the project's packages are one up.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from cli.tensorflow_import import setup_tensorflow  # noqa: E402

setup_tensorflow()  # before anything loads TensorFlow

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

BEAM_COMPONENTS = ("FileBasedExampleGen", "StatisticsGen", "Transform", "Evaluator")
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
COLUMNS = {"direct": "DirectRunner (in process)",
           "portable": "PortableRunner + external SDK workers",
           "dask": "DaskRunner, Beam 2.59 as shipped",
           "dask-patched": "DaskRunner, 2 runner faults patched"}


def _patched_dask_runner():
  """Beam 2.59's DaskRunner with its two faults mended, as a class Beam can name.

  1. run_pipeline hands every pipeline option not at its default to
     dask.distributed.Client(**options) - under TFX the runner flag itself, the
     DirectRunner defaults, TFX's --extra_package and --labels -, which Client
     refuses (ValueError: Unexpected keyword arguments): only DaskOptions' own go.
  2. wait_until_finish calls client.wait_for_workers(timeout=...) without
     n_workers, which distributed 2024.8 requires (TypeError): it only gathers.
  """
  import argparse as _argparse

  from apache_beam.runners.dask import dask_runner
  from apache_beam.runners.dask.overrides import dask_overrides
  from apache_beam.runners.runner import PipelineState

  parser = _argparse.ArgumentParser()
  dask_runner.DaskOptions._add_argparse_args(parser)
  own = {action.dest for action in parser._actions}

  class Result(dask_runner.DaskRunnerResult):
    def wait_until_finish(self, duration=None):
      try:
        self.client.gather(self.futures, errors="raise")
        self._state = PipelineState.DONE
      except:  # noqa: E722 - Beam's own pattern: record the state, re-raise
        self._state = PipelineState.FAILED
        raise
      return self._state

  class PatchedDaskRunner(dask_runner.DaskRunner):
    def run_pipeline(self, pipeline, options):
      import dask.distributed as ddist
      given = options.view_as(dask_runner.DaskOptions).get_all_options(drop_default=True)
      client = ddist.Client(**{k: v for k, v in given.items() if k in own})
      pipeline.replace_all(dask_overrides())
      visitor = self.to_dask_bag_visitor()
      pipeline.visit(visitor)
      return Result(client, client.compute(list(visitor.bags.values())))

  return PatchedDaskRunner


def _error(e: BaseException) -> str:
  """The first exception of the chain (TFX's clean-up after a failed executor can raise
  another): its last line and the innermost frame it came from."""
  while (e.__cause__ or e.__context__) is not None:
    e = e.__cause__ or e.__context__
  frames = traceback.extract_tb(e.__traceback__)
  where = f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
  text = traceback.format_exception_only(type(e), e)[-1].strip().splitlines()[0]
  return (text[:300] + "...") if len(text) > 300 else text + where


def _pipeline(config, data_dir, root, beam_args, component=None, component_args=()):
  """create_pipeline as run_local builds it, optionally with one component's own Beam
  arguments (they come after the pipeline's, so theirs win)."""
  from tfx import v1 as tfx

  from pipeline.configs import metadata_path
  from pipeline.pipeline import create_pipeline
  pipeline_root = os.path.join(root, "pipeline")
  pipeline = create_pipeline(
      config=config, data_root=data_dir, pipeline_root=pipeline_root,
      serving_dir=os.path.join(root, "serving"), rerun_safe_resolvers=True,
      training={"seed": 11}, beam_pipeline_args=beam_args,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          metadata_path(pipeline_root)))
  if component:
    node = next(n for n in pipeline.components if n.id == component)
    node.with_beam_pipeline_args(list(component_args))
  return pipeline, metadata_path(pipeline_root)


def _run(pipeline) -> None:
  from pipeline.local_runner import run_dag
  run_dag(pipeline)


def _whole(config, data_dir, root, beam_args):
  """One uncached run of the whole pipeline: component -> seconds, or its error."""
  from report.run_summary import summarize
  pipeline, metadata = _pipeline(config, data_dir, root, beam_args)
  pipeline.enable_cache = False
  start = time.time()
  try:
    _run(pipeline)
  except Exception as e:  # noqa: BLE001 - reported in the table
    return {"whole pipeline": f"fails: {_error(e)}"}
  cells = {c: f"{s:.1f}" for c, s in summarize(metadata).component_seconds.items()
           if c in BEAM_COMPONENTS}
  cells["whole pipeline"] = f"{time.time() - start:.1f}"
  return cells


def _dask_each(config, data_dir, root, scheduler, runner_name):
  """Each Beam component alone on Dask in `root` (the direct run's): seconds or error."""
  from pipeline import configs
  from report.run_summary import summarize
  cells = {}
  for component in BEAM_COMPONENTS:
    print(f"\n== {component} on {runner_name}", flush=True)
    pipeline, metadata = _pipeline(
        config, data_dir, root, list(configs.BEAM_PIPELINE_ARGS), component,
        [f"--runner={runner_name}", f"--dask_client_address={scheduler}"])
    start = time.time()
    try:
      _run(pipeline)
      cells[component] = f"{summarize(metadata).component_seconds[component]:.1f}"
    except Exception as e:  # noqa: BLE001 - reported in the table
      cells[component] = f"fails after {time.time() - start:.0f}s: {_error(e)}"
    print(f"   {component}: {cells[component]}", flush=True)
  return cells


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rows", type=int, default=20_000)
  parser.add_argument("--seed", type=int, default=11)
  parser.add_argument("--runners", nargs="+", choices=("direct", "portable", "dask"),
                      default=["direct", "portable", "dask"])
  parser.add_argument("--dask-workers", type=int, default=2)
  parser.add_argument("--work-dir", help="where data and runs go (default: a temporary dir)")
  args = parser.parse_args()

  from datagen import taobao
  from models.config import load_config
  from pipeline import beam_options, configs
  from pipeline.portable_services import local_portable_beam

  config = load_config(configs.CONFIG_PATH)
  work = tempfile.mkdtemp(prefix="aitm-runners-", dir=args.work_dir)
  data_dir = os.path.join(work, "data")
  taobao.write_csv(data_dir, args.rows, args.seed)
  # Dask's worker processes import the project's modules by name.
  os.environ["PYTHONPATH"] = os.pathsep.join(
      [configs.PROJECT_DIR] + [p for p in [os.environ.get("PYTHONPATH")] if p])
  columns = {}
  direct_root = os.path.join(work, "direct")
  if "direct" in args.runners or "dask" in args.runners:
    print("\n== DirectRunner", flush=True)
    columns["direct"] = _whole(config, data_dir, direct_root, beam_options.direct())
  if "portable" in args.runners:
    print("\n== PortableRunner, Beam's job service and worker pool", flush=True)
    with local_portable_beam(os.path.join(work, "services")) as services:
      columns["portable"] = _whole(config, data_dir, os.path.join(work, "portable"),
                                   services.beam_args())
      columns["portable"]["SDK workers started"] = str(services.workers_started())
  if "dask" in args.runners:
    from dask.distributed import LocalCluster
    patched = _patched_dask_runner()
    globals()[patched.__name__] = patched  # so Beam finds it as __main__.PatchedDaskRunner
    with LocalCluster(n_workers=args.dask_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
      columns["dask"] = _dask_each(config, data_dir, direct_root, cluster.scheduler_address,
                                   DASK_RUNNER)
      columns["dask-patched"] = _dask_each(config, data_dir, direct_root,
                                           cluster.scheduler_address,
                                           f"__main__.{patched.__name__}")
  rows = list(BEAM_COMPONENTS) + ["whole pipeline", "SDK workers started"]
  header = ["component"] + [COLUMNS[c] for c in columns]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    if any(row in cells for cells in columns.values()):
      lines.append("| " + " | ".join([row] + [cells.get(row, "-") for cells in
                                                columns.values()]) + " |")
  print(f"\n{args.rows:,} rows, {os.cpu_count()} cores; seconds per component "
        f"(ML Metadata), else the error\n" + "\n".join(lines), flush=True)
  shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  main()
