"""Shared fixtures: the whole pipeline runs once per test session."""

import os

# Before TensorFlow is imported: TFX 1.16 components expect Keras 2.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402

import pytest  # noqa: E402

from cli.tensorflow_import import import_tensorflow  # noqa: E402

import_tensorflow()  # as the CLI does: without the CUDA plugin lines of a GPU-less machine

from models.autograph_rules import skip_tf_keras  # noqa: E402

skip_tf_keras()  # as the Trainer does; halves the time of tests that save models


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
  """`make test` runs on every core (pytest-xdist, --dist loadgroup): the tests
  that need the session's pipeline run share one worker, so it runs once, and
  every other module stays on one worker, so its module fixtures run once.

  First, so the marks are set before xdist's worker turns them into the `@group`
  suffix of each node id (tests/test_xdist_groups.py checks that it did)."""
  for item in items:
    group = "pipeline_run" if "pipeline_run" in item.fixturenames else item.module.__name__
    item.add_marker(pytest.mark.xdist_group(group))


E2E_ROWS = 20_000
E2E_SEED = 11
# The session run's training overrides: seeded, so a retrain can reproduce its model.
E2E_TRAINING = {"seed": E2E_SEED}


@dataclasses.dataclass
class PipelineRun:
  data_dir: str
  pipeline_root: str
  serving_dir: str
  first: object    # RunSummary of the first run
  second: object   # RunSummary of the same pipeline run again


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> PipelineRun:
  from datagen import taobao
  from models.config import load_config
  from pipeline import configs
  from pipeline.local_runner import run_local
  from report.run_summary import summarize

  root = tmp_path_factory.mktemp("e2e")
  data_dir = str(root / "data")
  taobao.write_csv(data_dir, E2E_ROWS, E2E_SEED)
  kwargs = dict(config=load_config(configs.CONFIG_PATH), data_root=data_dir,
                pipeline_root=str(root / "pipeline"), serving_dir=str(root / "serving"),
                training=E2E_TRAINING)
  first = summarize(run_local(**kwargs), labels=kwargs["config"].labels)
  second = summarize(run_local(**kwargs), labels=kwargs["config"].labels)
  return PipelineRun(data_dir, kwargs["pipeline_root"], kwargs["serving_dir"], first, second)


@dataclasses.dataclass
class GateRuns:
  # Each run pushes to a serving dir of its own (the session run's keeps one version).
  weak_serving_dir: str
  weak: object             # RunSummary: labels shuffled in training, AUC floors 0
  normal_serving_dir: str
  normal: object           # RunSummary: the session run's settings again, cache defeated


@pytest.fixture(scope="session")
def gate_runs(pipeline_run, tmp_path_factory) -> GateRuns:
  """Two more models under the session run's pipeline name and root, each evaluated
  against the latest blessed model - the session run's (the weak one isn't blessed)."""
  from models.config import load_config
  from pipeline import configs
  from pipeline.local_runner import run_local
  from report.run_summary import summarize

  config = load_config(configs.CONFIG_PATH)
  root = tmp_path_factory.mktemp("gate")
  kwargs = dict(config=config, data_root=pipeline_run.data_dir,
                pipeline_root=pipeline_run.pipeline_root)
  # Floors 0: only the change threshold can reject it.
  # One epoch: shuffled labels have nothing more to teach.
  weak = summarize(
      run_local(training={**E2E_TRAINING, "shuffle_labels": True, "max_epochs": 1},
                min_auc={task: 0.0 for task in config.task_labels},
                serving_dir=str(root / "weak"), **kwargs),
      labels=config.labels)
  # Changes nothing the model depends on, but the Trainer's inputs: no cache.
  normal = summarize(
      run_local(training={**E2E_TRAINING, "log_every_steps": 49},
                serving_dir=str(root / "normal"), **kwargs),
      labels=config.labels)
  return GateRuns(str(root / "weak"), weak, str(root / "normal"), normal)


@pytest.fixture(scope="session")
def tiny_model_base(tmp_path_factory):
  """A base path holding version 1 of a tiny SavedModel with the AITM model's input
  contract in small: `serving_default` takes serialized tf.Examples (`examples`,
  string [None]), `serving_raw` a string, an int64 and a float32 column, and
  `ctr` = sigmoid(value / scale). For the server's and client's own checks,
  without training anything; `<base>-v2/1` is the same with another scale."""
  import tensorflow as tf

  class Tiny(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
      parsed = tf.io.parse_example(examples, {
          "price": tf.io.FixedLenFeature([], tf.int64, default_value=0)})
      return {"ctr": tf.sigmoid(tf.cast(parsed["price"], tf.float32) / self.scale)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="pid"),
                                  tf.TensorSpec([None], tf.int64, name="price"),
                                  tf.TensorSpec([None], tf.float32, name="score")])
    def raw(self, pid, price, score):
      value = tf.cast(tf.strings.length(pid), tf.float32) + tf.cast(price, tf.float32) + score
      return {"ctr": tf.sigmoid(value / self.scale)}

  root = tmp_path_factory.mktemp("tiny")
  for name, scale in (("tiny", 10.0), ("tiny-v2", 5.0)):
    module = Tiny()
    module.scale = tf.Variable(scale)
    tf.saved_model.save(module, str(root / name / "1"),
                        signatures={"serving_default": module.serve, "serving_raw": module.raw})
  # tiny/1 is served; tiny-v2/1, the same signatures with other scores, is a later version.
  return str(root / "tiny")
