"""Runs the pipeline in-process with LocalDagRunner and SQLite ML Metadata, or one
ExampleGen's executor alone (run_example_gen_executor, for tests and benchmarks)."""

import contextlib
import gc
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from typing import Any, Sequence, Tuple

from tfx import v1 as tfx

from models.config import PipelineConfig
from pipeline import configs
from pipeline.pipeline import create_pipeline
from pipeline.schema_check import check_schema


class _ComponentProgress(logging.Handler):
  """Turns LocalDagRunner's log lines into one progress line per component."""

  def __init__(self):
    super().__init__(logging.INFO)
    self.started = {}

  def emit(self, record):
    """Prints a line when a component starts, finishes (with its time) or is reused
    from the cache; other records print nothing."""
    message = record.getMessage()
    if message.startswith("Component ") and message.endswith(" is running."):
      node = message[len("Component "):-len(" is running.")]
      self.started[node] = time.time()
      print(f"[{time.strftime('%H:%M:%S')}] {node} ...", flush=True)
    elif message.startswith("Component ") and message.endswith(" is finished."):
      node = message[len("Component "):-len(" is finished.")]
      took = time.time() - self.started.get(node, time.time())
      print(f"[{time.strftime('%H:%M:%S')}] {node} done ({took:.0f}s)", flush=True)
    elif message.startswith("A cached execution"):
      print("           (reused from the cache)", flush=True)


# Warnings TFX and TF Transform log on every run that say nothing a user can act
# on: TFX's own resolver and artifact defaults, and TF Transform's vocabulary
# lookups traced inside tf.function (its documented way of applying them).
LIBRARY_NOISE = (
    "ArtifactQuery.property_predicate is not supported",
    "Examples artifact does not have payload_format custom property",
    "Tables initialized inside a tf.function",
    # Beam's pure-Python CRC for TFRecords; python-snappy is not in the locked stack.
    "Couldn't find python-snappy",
    # Beam's SDK workers (more than one DirectRunner worker): main-session pickling,
    # which the project doesn't use, and the pipeline's flags meant for the runner.
    "No semi_persistent_directory found",
    "Discarding unparseable args",
)
# Beam's runner logs each SDK worker's records as one of its own:
# 'Worker: severity: WARN timestamp {...} message: "<the record>" instruction_id: ...'.
_WORKER_RECORD = "Worker: severity: "
_WORKER_MESSAGE = ' message: "'


class _LibraryNoise(logging.Filter):
  """Drops the log records that start with one of LIBRARY_NOISE; keeps the rest."""

  def filter(self, record):
    """Whether to keep the record: False when its message, or the SDK worker's record
    it forwards, starts with LIBRARY_NOISE."""
    message = record.getMessage()
    if message.startswith(_WORKER_RECORD) and _WORKER_MESSAGE in message:
      message = message.split(_WORKER_MESSAGE, 1)[1].replace("\\'", "'")
    return not message.startswith(LIBRARY_NOISE)


@contextlib.contextmanager
def _own_argv_only():
  """TFX's Beam executors parse sys.argv as absl flags (tfx base_beam_executor),
  so the caller's flags (pytest -v, aitm --data) must not reach them."""
  saved = sys.argv
  sys.argv = saved[:1]
  try:
    yield
  finally:
    sys.argv = saved


def release_beam_shared_models() -> None:
  """Frees the models the Evaluator loaded in this process.

  TFMA loads them through Beam's `shared.Shared`, whose map keeps the last object it
  built alive for reuse by a later pipeline. In-process runs have no later pipeline
  that wants it: it would sit in memory (two SavedModels with a baseline) until
  interpreter exit, and there, TensorFlow's modules already torn down, every one of
  its functions prints "Exception ignored in: AtomicFunction.__del__ ... TypeError".
  """
  # Beam's private state, at the locked version; tests/test_local_runner.py fails
  # if an upgrade moves it.
  from apache_beam.utils import shared
  with shared._shared_map._lock:
    shared._shared_map._keepalive = (None, None)
  gc.collect()


@contextlib.contextmanager
def component_progress():
  """Shows component progress; hides the rest of TFX's INFO logging meanwhile."""
  absl_logger = logging.getLogger("absl")
  handler = _ComponentProgress()
  old_level = absl_logger.level
  quiet = []
  noise = _LibraryNoise()
  for existing in logging.getLogger().handlers + absl_logger.handlers:
    quiet.append((existing, existing.level))
    existing.setLevel(max(existing.level, logging.WARNING))
    existing.addFilter(noise)
  # TensorFlow's deprecation notices from inside TFX/TFMA bury the progress lines.
  tf_logger = logging.getLogger("tensorflow")
  old_tf_level = tf_logger.level
  tf_logger.setLevel(logging.ERROR)
  absl_logger.setLevel(logging.INFO)
  absl_logger.addHandler(handler)
  # Components call absl.logging.set_verbosity(WARNING) mid-run, which would
  # silence the runner's lines too; hold the level while the pipeline runs.
  absl_logger.setLevel = lambda level: None
  try:
    with warnings.catch_warnings():
      # TFMA divides by zero counts on purpose (precision where nothing is predicted
      # positive, per slice) and NumPy warns each time; the metrics come out as NaN.
      warnings.filterwarnings("ignore", category=RuntimeWarning,
                              module=r"tensorflow_model_analysis(\.|$)")
      yield
  finally:
    del absl_logger.setLevel
    absl_logger.removeHandler(handler)
    absl_logger.setLevel(old_level)
    tf_logger.setLevel(old_tf_level)
    for existing, level in quiet:
      existing.setLevel(level)
      existing.removeFilter(noise)


@contextlib.contextmanager
def one_tfx_package_per_run():
  """Builds TFX's ephemeral package at most once while the block runs, and deletes it
  after.

  A TFX Beam executor whose `beam_pipeline_args` name no dependency (`setup_file`,
  `extra_packages`, `sdk_container_image`, ...) copies the installed TFX (48 MB) into
  a new temporary directory and builds an sdist of it for remote Beam workers to
  install (tfx.utils.dependency_utils). It does so for every Beam component of every
  run, about a second each, and never deletes the directory: a day of test sessions
  left 63 GB in /tmp, and CI then ran out of disk installing the venv. The package
  is the same every time and is only read while a Beam job is submitted, inside the
  run, so one build per run is enough and nothing outlives it."""
  from tfx.utils import dependency_utils
  build = dependency_utils.build_ephemeral_package
  if getattr(build, "once_per_run", False):
    # Inside another such block (a test session around a run): that one owns it.
    yield
    return
  built = []

  def build_once() -> str:
    if not built:
      built.append(build())
    return built[0]

  build_once.once_per_run = True
  dependency_utils.build_ephemeral_package = build_once
  try:
    yield
  finally:
    dependency_utils.build_ephemeral_package = build
    for sdist in built:
      # <mkdtemp>/build/tfx/dist/tfx_ephemeral-<version>.tar.gz: the temporary
      # directory TFX made for it, checked by shape before it is removed.
      parts = os.path.normpath(sdist).split(os.sep)
      if parts[-4:-1] == ["build", "tfx", "dist"]:
        shutil.rmtree(os.sep.join(parts[:-4]), ignore_errors=True)


def run_dag(pipeline) -> None:
  """LocalDagRunner on a built pipeline, the way run_local runs it: one progress
  line per component, the caller's argv kept from TFX's flag parsing, TFX's
  ephemeral package built once, the Evaluator's models freed after."""
  try:
    with component_progress(), _own_argv_only(), one_tfx_package_per_run():
      tfx.orchestration.LocalDagRunner().run(pipeline)
  finally:
    release_beam_shared_models()


def run_example_gen_executor(component, examples_uri: str, *,
                             beam_pipeline_args: Sequence[str] = configs.BEAM_PIPELINE_ARGS
                             ) -> Tuple[Any, Any]:
  """Runs an ExampleGen component's executor in this process, outside a pipeline: its
  Do() writes the splits under `examples_uri`, with the caller's argv kept from TFX's
  flag parsing, TFX's ephemeral package built once and library noise filtered, as in
  run_dag. Returns (the executor, with its `counters`; the Examples artifact)."""
  from tfx.dsl.components.base import base_beam_executor
  from tfx.types import standard_artifacts, standard_component_specs

  examples = standard_artifacts.Examples()
  examples.uri = examples_uri
  with tempfile.TemporaryDirectory() as tmp_dir, component_progress(), _own_argv_only(), \
      one_tfx_package_per_run():
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=list(beam_pipeline_args), tmp_dir=tmp_dir, unique_id="executor")
    executor = component.executor_spec.executor_class(context)
    executor.Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]},
                dict(component.exec_properties))
  return executor, examples


def run_local(
    *,
    config: PipelineConfig,
    data_root: str,
    pipeline_root: str = configs.DEFAULT_PIPELINE_ROOT,
    serving_dir: str = configs.DEFAULT_SERVING_DIR,
    schema_path: str = configs.SCHEMA_PATH,
    **graph: Any,
) -> str:
  """Runs the pipeline with LocalDagRunner; raises on failure (nothing is pushed then).
  Returns the path of the SQLite ML Metadata store that recorded the run, for
  report.run_summary.summarize to read it back.

  `graph`: create_pipeline's other arguments (pipeline.pipeline), with its defaults:
  `extent`, `training`, `min_auc` / `max_auc_drop` (task -> AUC floor / allowed drop
  against the latest blessed model; a model that misses either is not blessed nor
  pushed, and the summary's `not_blessed` says why), `spans`, `split`, `warm_start`,
  `beam_pipeline_args`, `keep_versions`, ... The baseline and warm-start resolvers
  are the rerun-safe ones: a rerun gets its first run's inputs back, its cached
  Trainer's model being neither its own baseline nor its own warm-start base.
  """
  check_schema(config, schema_path)
  pipeline_root = os.path.abspath(pipeline_root)
  os.makedirs(pipeline_root, exist_ok=True)
  pipeline = create_pipeline(
      config=config, schema_path=schema_path, pipeline_root=pipeline_root,
      data_root=os.path.abspath(data_root), serving_dir=os.path.abspath(serving_dir),
      rerun_safe_resolvers=True,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          configs.metadata_path(pipeline_root)),
      **graph)
  run_dag(pipeline)
  return configs.metadata_path(pipeline_root)
