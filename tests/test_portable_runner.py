"""The whole pipeline with Beam's PortableRunner: Beam's own job service, and SDK workers
started by an external worker pool as separate processes (pipeline/portable_services.py),
the way Flink, Spark and Dataflow run Python - DoFns pickled here, unpickled and run
in processes that import the project on their own. Its results are the session's
DirectRunner run's (conftest.pipeline_run: the same data, config and seed)."""

import contextlib
import dataclasses
import glob
import io
import math
import os
import threading
import time

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from conftest import E2E_ROWS, E2E_TRAINING
from google.protobuf import json_format
from tensorflow_metadata.proto.v0 import statistics_pb2

from models.config import load_config
from pipeline import beam_options, configs
from pipeline.local_runner import run_local
from pipeline.portable_services import local_portable_beam
from report.evaluation import read_metrics
from report.run_summary import summarize

pytestmark = pytest.mark.e2e

# The Beam-powered components: each submits at least one Beam job, and each job gets
# its own SDK worker from the pool.
BEAM_COMPONENTS = ("FileBasedExampleGen", "StatisticsGen", "Transform", "Evaluator")
# What an SDK worker imports from the project to run the CSV ExampleGen's DoFns.
PROJECT_MODULE = "components.csv_example_gen.executor"


@dataclasses.dataclass
class PortableRun:
  pipeline_root: str
  summary: object           # RunSummary
  printed: str              # what the run printed here
  seconds: float
  workers_started: int      # SDK workers the pool started during the run
  worker_pids: set          # SDK worker processes seen alive during the run


@pytest.fixture(scope="module")
def services(tmp_path_factory):
  with local_portable_beam(str(tmp_path_factory.mktemp("beam_services"))) as running:
    yield running


@pytest.fixture(scope="module")
def portable_run(pipeline_run, services, tmp_path_factory) -> PortableRun:
  """The session run's pipeline on its data, with its config and seed, its Beam work on
  the local job service and worker pool; the pool's SDK workers watched meanwhile."""
  root = tmp_path_factory.mktemp("portable")
  config = load_config(configs.CONFIG_PATH)
  seen, stop = set(), threading.Event()

  def watch():
    while not stop.wait(0.2):
      seen.update(worker.pid for worker in services.sdk_workers())

  watcher = threading.Thread(target=watch, daemon=True)
  before = services.workers_started()
  printed = io.StringIO()
  start = time.time()
  watcher.start()
  try:
    with contextlib.redirect_stdout(printed):
      metadata = run_local(config=config, data_root=pipeline_run.data_dir,
                           pipeline_root=str(root / "pipeline"),
                           serving_dir=str(root / "serving"), training=E2E_TRAINING,
                           beam_pipeline_args=services.beam_args())
  except Exception as e:
    raise AssertionError(f"the portable run failed:\n{printed.getvalue()}\n"
                         f"{services.log_tail()}") from e
  finally:
    stop.set()
    watcher.join()
  seconds = time.time() - start
  print(printed.getvalue() + f"portable run: {seconds:.0f}s")
  return PortableRun(str(root / "pipeline"), summarize(metadata, labels=config.labels),
                     printed.getvalue(), seconds,
                     services.workers_started() - before, seen)


def _probe(beam_args, out_dir) -> dict:
  """Where a DoFn runs: a one-element Beam pipeline per question, answered by functions
  of the standard library (so nothing of this module is pickled): the process id, the
  parent's id (/proc/self/stat's 4th field), the working directory, and the file the
  project's CSV ExampleGen executor is imported from."""
  import importlib.util
  import pathlib
  questions = {"pid": ("/proc/self", os.readlink), "cwd": ("/proc/self/cwd", os.readlink),
               "stat": (pathlib.Path("/proc/self/stat"), pathlib.Path.read_text),
               "module": (PROJECT_MODULE, importlib.util.find_spec)}
  with beam.Pipeline(options=PipelineOptions(list(beam_args))) as pipeline:
    for name, (element, function) in questions.items():
      answer = pipeline | f"Create[{name}]" >> beam.Create([element]) | (
          f"Ask[{name}]" >> beam.Map(function))
      if name == "module":
        answer = answer | "Origin" >> beam.Map(getattr, "origin")
      _ = answer | f"Write[{name}]" >> beam.io.WriteToText(os.path.join(out_dir, name))
  answers = {}
  for name in questions:
    paths = glob.glob(os.path.join(out_dir, f"{name}-*"))
    with open(paths[0]) as f:
      answers[name] = f.read().strip()
  answers["ppid"] = int(answers.pop("stat").split(") ", 1)[1].split()[1])
  answers["pid"] = int(answers["pid"])
  return answers


def test_a_dofn_runs_in_an_sdk_worker_of_the_pool_and_with_loopback_in_this_process(
    services, tmp_path):
  external = _probe(services.beam_args(), str(tmp_path / "external"))
  assert external["pid"] not in (os.getpid(), services.job_service.pid, services.pool.pid)
  assert external["ppid"] == services.pool.pid, external
  # The worker's own working directory, and the project imported from this checkout.
  assert external["cwd"] == services.log_dir != os.getcwd()
  assert external["module"] == os.path.join(configs.PROJECT_DIR, *PROJECT_MODULE.split(".")
                                            ) + ".py"
  # LOOPBACK: the same job service, but the SDK harness runs inside the submitting
  # process (Beam starts a worker pool of threads here): not a separate worker.
  loopback = _probe(["--runner=PortableRunner", f"--job_endpoint={services.job_endpoint}",
                     "--environment_type=LOOPBACK"], str(tmp_path / "loopback"))
  assert loopback["pid"] == os.getpid() and loopback["cwd"] == os.getcwd()


# The job's message thread ends on the same deadline, in a thread of Beam's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_beam_job_longer_than_the_job_server_timeout_fails_in_the_submitter(services):
  """Why beam_options.portable_local sets --job_server_timeout: the PortableRunner holds
  the job's state stream to it, so a job that runs longer fails here (Beam's default,
  60 s, is shorter than this pipeline's Evaluator on a busy machine)."""
  import grpc
  short = beam_options.portable_local(services.job_endpoint, services.worker_pool,
                                      job_timeout_seconds=3)
  start = time.time()
  with pytest.raises(grpc.RpcError, match="DEADLINE_EXCEEDED"):
    with beam.Pipeline(options=PipelineOptions(short)) as pipeline:
      _ = pipeline | beam.Create([8]) | beam.Map(time.sleep)
  assert time.time() - start < 8
  for thread in threading.enumerate():  # ends here, under this test's warning filter
    if thread.name == "wait_until_finish_read":
      thread.join(10)


def test_every_beam_component_ran_in_sdk_workers(portable_run, services):
  summary = portable_run.summary
  assert set(summary.component_states.values()) == {"COMPLETE"}, summary.component_states
  assert set(BEAM_COMPONENTS) <= set(summary.component_states)
  assert portable_run.workers_started >= len(BEAM_COMPONENTS), services.log_tail()
  pids = portable_run.worker_pids
  assert len(pids) >= len(BEAM_COMPONENTS), pids
  assert not pids & {os.getpid(), services.job_service.pid, services.pool.pid}
  assert summary.blessed is True and summary.pushed_dir


def test_the_rows_read_come_back_from_the_workers_as_counters(portable_run):
  """The CSV ExampleGen's DoFn counts in an SDK worker; the count prints here."""
  assert f"[ExampleGen] {E2E_ROWS:,} rows read from 1 CSV file(s)" in portable_run.printed


def _first_output(pipeline_root, component, output):
  """A component's output of the first run under `pipeline_root` (the lowest execution
  id: later runs there, the session's blessing tests, add their own)."""
  found = glob.glob(os.path.join(pipeline_root, component, output, "*"))
  assert found, (pipeline_root, component, output)
  return min(found, key=lambda path: int(os.path.basename(path)))


def _records(artifact_dir, split):
  files = sorted(glob.glob(os.path.join(artifact_dir, f"Split-{split}", "*.gz")))
  return [tf.train.Example.FromString(record.numpy())
          for record in tf.data.TFRecordDataset(files, compression_type="GZIP")]


@pytest.mark.parametrize("component, output", [
    ("FileBasedExampleGen", "examples"), ("Transform", "transformed_examples")])
def test_the_same_examples_in_the_same_splits_and_order(pipeline_run, portable_run,
                                                        component, output):
  """ExampleGen's label-blind split and Transform ran in the workers: the same
  tf.Examples, split alike, in the same order (compared as protos: a map's serialized
  order may differ between processes)."""
  direct = _first_output(pipeline_run.pipeline_root, component, output)
  portable = _first_output(portable_run.pipeline_root, component, output)
  for split in ("train", "eval"):
    a, b = _records(direct, split), _records(portable, split)
    assert len(a) == len(b) == portable_run.summary.rows[split]
    assert a == b, f"{component} {split}: the examples differ"


def _assert_close(a, b, path=""):
  """Equal structures; floats within 1e-9 relative (a sum's last bits depend on the
  order a runner adds partial results in)."""
  if isinstance(a, dict):
    assert a.keys() == b.keys(), (path, sorted(a.keys() ^ b.keys()))
    for key in a:
      _assert_close(a[key], b[key], f"{path}.{key}")
  elif isinstance(a, list):
    assert len(a) == len(b), path
    for i, (x, y) in enumerate(zip(a, b)):
      _assert_close(x, y, f"{path}[{i}]")
  elif isinstance(a, float) or isinstance(b, float):
    assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (path, a, b)
  else:
    assert a == b, (path, a, b)


def _statistics(artifact_dir, split):
  with open(os.path.join(artifact_dir, f"Split-{split}", "FeatureStats.pb"), "rb") as f:
    stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())
  dataset = stats.datasets[0]
  return dataset.num_examples, {feature.path.step[0]: json_format.MessageToDict(feature)
                                for feature in dataset.features}


def test_the_same_statistics(pipeline_run, portable_run):
  direct = _first_output(pipeline_run.pipeline_root, "StatisticsGen", "statistics")
  portable = _first_output(portable_run.pipeline_root, "StatisticsGen", "statistics")
  for split in ("train", "eval"):
    (rows_a, features_a), (rows_b, features_b) = (_statistics(direct, split),
                                                  _statistics(portable, split))
    assert rows_a == rows_b == portable_run.summary.rows[split]
    assert len(features_a) >= 20
    _assert_close(features_a, features_b, split)


def test_the_same_vocabularies(pipeline_run, portable_run):
  """Transform's analysis ran in the workers: the same vocabulary files, byte for byte."""
  direct, portable = (os.path.join(_first_output(root, "Transform", "transform_graph"),
                                   "transform_fn", "assets")
                      for root in (pipeline_run.pipeline_root, portable_run.pipeline_root))
  names = sorted(os.listdir(direct))
  assert names == sorted(os.listdir(portable)) and "user_impressions" in names
  for name in names:
    with open(os.path.join(direct, name), "rb") as a, open(os.path.join(portable, name),
                                                           "rb") as b:
      assert a.read() == b.read(), name


def test_the_same_model(pipeline_run, portable_run):
  """The Trainer is not a Beam step: on the same transformed examples in the same order
  with the same seed it trains the same weights, to the bit."""
  readers = [tf.train.load_checkpoint(os.path.join(summary.pushed_dir, "variables",
                                                   "variables"))
             for summary in (pipeline_run.first, portable_run.summary)]
  shapes = readers[0].get_variable_to_shape_map()
  assert shapes == readers[1].get_variable_to_shape_map() and len(shapes) > 50
  # The weights; the object graph's bytes are how the checkpoint was laid out.
  for name in set(shapes) - {"_CHECKPOINTABLE_OBJECT_GRAPH"}:
    np.testing.assert_array_equal(readers[0].get_tensor(name), readers[1].get_tensor(name),
                                  err_msg=name)


def test_the_same_evaluation(pipeline_run, portable_run):
  """The Evaluator ran in the workers: the same slices and metrics, AUC within 1e-6 and
  every metric within 1e-6 relative (means summed in another order)."""
  direct = read_metrics(pipeline_run.first.evaluation_uri)
  portable = read_metrics(portable_run.summary.evaluation_uri)
  assert direct.keys() == portable.keys() and len(direct) > 10
  for slice_, values in direct.items():
    assert values.keys() == portable[slice_].keys(), slice_
    for key, value in values.items():
      other = portable[slice_][key]
      if math.isnan(value):
        assert math.isnan(other), (slice_, key)
      else:
        assert math.isclose(value, other, rel_tol=1e-6, abs_tol=1e-9), (slice_, key, value,
                                                                         other)
  for task, auc in pipeline_run.first.auc.items():
    assert abs(auc - portable_run.summary.auc[task]) <= 1e-6, task
