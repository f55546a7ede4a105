"""Distributed training: `train_config.train_distribute` read and checked, the
strategies built, and two MultiWorkerMirroredStrategy workers run as two local
processes on loopback through the Trainer's own code path.

The module is also the worker program: `python tests/test_distributed_training.py
SPEC.json` builds FnArgs as TFX's Trainer executor does and runs
models.trainer.train (run_fn's body) under the TF_CONFIG its parent set.
"""

import collections
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MWMS = "MultiWorkerMirroredStrategy"
# Generated rows: the train split and the eval split. The eval split's last
# global batch (641 = 5 x 128 + 1) is one row: one worker's slice of it is empty.
TRAIN_ROWS, EVAL_ROWS = 2400, 641
PER_REPLICA_BATCH = 64
WORKER_TRAINING = {"batch_size": PER_REPLICA_BATCH, "max_epochs": 2, "seed": 5,
                   "learning_rate": 3e-3, "shuffle_buffer": 4096, "log_every_steps": 10}
WORKER_TIMEOUT = 480  # seconds; ~200 s measured beside a CPU-bound benchmark


def _config_text(distribute=None, path=None):
  """The default config (or `path`) with hashed ids (no vocabularies to analyse:
  Transform's Beam pass stays short), and train_distribute when given."""
  from pipeline import configs
  with open(path or configs.CONFIG_PATH) as f:
    text = f.read().replace("compute_vocabulary: true", "hash_bucket_size: 100")
  if distribute:
    text = text.replace("train_config {", f"train_config {{\n  train_distribute: {distribute}", 1)
  return text


# --- config: train_distribute -------------------------------------------------

def test_train_distribute_is_read_by_its_easyrec_name():
  from models.config import parse_config
  from models.config.messages import ENUMS
  from models.training import TrainingConfig
  # EasyRec's enum, in its order: the numbers (0..5) are EasyRec's.
  assert ENUMS["DistributionStrategy"] == [
      "NoStrategy", "PSStrategy", "MirroredStrategy", "CollectiveAllReduceStrategy",
      "ExascaleStrategy", MWMS]
  config = parse_config(_config_text(MWMS).replace(
      "train_distribute", "num_gpus_per_worker: 2\n  train_distribute"))
  assert config.proto.train_config.train_distribute == 5
  training = TrainingConfig.from_config(config.proto)
  assert (training.distribute, training.num_gpus_per_worker) == (MWMS, 2)
  default = TrainingConfig.from_config(parse_config(_config_text()).proto)
  assert (default.distribute, default.num_gpus_per_worker) == ("NoStrategy", None)
  # The override key wins over the config, like the other training settings.
  overridden = TrainingConfig.from_config(config.proto, {"distribute": "MirroredStrategy"})
  assert overridden.distribute == "MirroredStrategy"


@pytest.mark.parametrize("value, extra", [
    ("PSStrategy", ""), ("ExascaleStrategy", ""),
    ("CollectiveAllReduceStrategy", r" \(use MultiWorkerMirroredStrategy\)")])
def test_unsupported_strategies_are_refused_by_name(value, extra):
  from models.config import parse_config
  from models.training import TrainingConfig
  message = (f"train_distribute '{value}' is not supported; supported: NoStrategy, "
             f"MirroredStrategy, MultiWorkerMirroredStrategy{extra}$")
  with pytest.raises(ValueError, match=message):
    TrainingConfig.from_config(parse_config(_config_text(value)).proto)
  with pytest.raises(ValueError, match="train_distribute 'Mirrored' is not supported"):
    TrainingConfig.from_dict({"distribute": "Mirrored"})


def test_an_unknown_enum_value_is_a_config_error():
  from models.config import ConfigError, parse_config
  with pytest.raises(ConfigError, match="DistributionStrategy"):
    parse_config(_config_text("HorovodStrategy"))


def test_batch_size_is_per_replica_and_steps_are_global():
  from models.training import TrainingConfig
  explicit = TrainingConfig(batch_size=256).sized_for(100_000, replicas=4)
  assert explicit.batch_size == 256 and explicit.global_batch_size(4) == 1024
  assert explicit.steps_per_epoch(100_000, replicas=4) == 98  # ceil(100,000 / 1,024)
  # Left out, the global batch is sized from all the rows (at most 1,024) and
  # split across replicas: the single worker's global batch and steps per epoch.
  single, four = TrainingConfig().sized_for(400_000), TrainingConfig().sized_for(400_000, 4)
  assert (single.batch_size, four.batch_size) == (1024, 256)
  assert single.steps_per_epoch(400_000) == four.steps_per_epoch(400_000, 4) == 391


@pytest.mark.parametrize("tf_config, expected", [
    (None, (0, 1, True)),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}},
     (0, 2, True)),
    ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}},
     (1, 2, False)),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}},
     (0, 2, True)),
    ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
     (1, 2, False)),
])
def test_tf_config_gives_the_shard_and_the_chief(tf_config, expected):
  from models.distribution import cluster_worker
  worker = cluster_worker(json.dumps(tf_config) if tf_config else None)
  assert (worker.index, worker.count, worker.is_chief) == expected


def test_several_workers_need_multi_worker_mirrored_strategy():
  from models.distribution import worker_for
  from models.training import TrainingConfig
  env = {"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                  "task": {"type": "worker", "index": 1}})}
  with pytest.raises(ValueError, match="TF_CONFIG lists 2 workers but train_distribute is "
                                       "NoStrategy; set train_distribute: " + MWMS):
    worker_for(TrainingConfig(), env)
  assert worker_for(TrainingConfig(distribute=MWMS), env).shard == (1, 2)
  ps = {"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"], "ps": ["p:1"]},
                                 "task": {"type": "worker", "index": 0}})}
  with pytest.raises(ValueError, match="PSStrategy is not supported"):
    worker_for(TrainingConfig(distribute=MWMS), ps)


# --- MirroredStrategy in this process -----------------------------------------

def test_mirrored_strategy_on_one_cpu_builds_and_trains_a_small_model():
  import tensorflow as tf
  from datagen import taobao
  from models.backbone import model_features
  from models.config import parse_config
  from models.distribution import make_strategy, parameter_report
  from models.features import ColumnType
  from models.preprocessing import embedding_rows, transform_features
  from models.trainer import build_compiled_model
  from models.training import TrainingConfig
  from pipeline import configs

  # The shared-bottom peer: the same inputs and towers, less to trace than AITM.
  config = parse_config(_config_text(
      "MirroredStrategy", os.path.join(configs.PROJECT_DIR, "configs", "shared_bottom.config")))
  training = TrainingConfig.from_config(config.proto, {"batch_size": 128, "learning_rate": 3e-3})
  strategy = make_strategy(training)
  assert isinstance(strategy, tf.distribute.MirroredStrategy)
  if not tf.config.list_logical_devices("GPU"):
    assert strategy.num_replicas_in_sync == 1
    assert strategy.extended.worker_devices[0].endswith("CPU:0")
  cols, _ = taobao.generate(1024, seed=3)
  raw = {c.name: tf.constant(np.array(cols[c.name], np.int64) if c.type is ColumnType.INT
                             else cols[c.name]) for c in config.columns}
  out = transform_features(raw, config)
  x = {f.name: out[f.name] for f in model_features(config)}
  y = {t.name: tf.cast(out[t.label], tf.float32) for t in config.tasks}
  model = build_compiled_model(config, {f.name: embedding_rows(f) for f in config.features},
                               training, strategy)
  assert model.distribute_strategy is strategy
  table = model.get_layer("features").tables["cate_id"].embeddings
  assert isinstance(table, tf.distribute.DistributedValues)  # a MirroredVariable
  before = table.numpy().copy()
  global_batch = training.global_batch_size(strategy.num_replicas_in_sync)
  history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(global_batch),
                      epochs=3, verbose=0).history
  assert history["loss"][-1] < history["loss"][0]
  assert not np.allclose(table.numpy(), before)
  report = parameter_report(model)
  # No batch norm: every weight is trained but the calibration intercepts, one per task.
  assert report["parameters"] == model.count_params() - len(model.outputs)
  assert report["train_state_mb"] == pytest.approx(3 * report["params_mb"], abs=0.2)


def test_reference_config_parameters_and_memory():
  """EasyRec's sample hashes seven columns (adgroup, campaign, customer, brand and
  user ids, both tag lists) into 100,000 buckets of 16 floats each, 95% of its
  11.8M parameters: 45 MB of float32, 135 MB with Adam's slots, on every replica."""
  from models.backbone import build_model
  from models.config import load_config
  from models.distribution import parameter_report
  from models.preprocessing import embedding_rows
  from pipeline import configs
  config = load_config(os.path.join(configs.PROJECT_DIR, "configs",
                                    "easyrec_aitm_on_taobao.config"))
  report = parameter_report(build_model(config, {f.name: embedding_rows(f)
                                                 for f in config.features}))
  assert report == {"parameters": 11_785_490, "embedding_parameters": 11_365_008,
                    "dense_parameters": 420_482, "params_mb": 45.0, "train_state_mb": 134.9}


# --- two workers, two processes -----------------------------------------------

def _raw_instances(config, cols, rows):
  """Generated rows as tf.Transform instance dicts (missing values: empty lists)."""
  from models.features import ColumnType
  out = []
  for i in rows:
    instance = {}
    for column in config.columns:
      value = cols[column.name][i]
      if column.name in config.labels:
        instance[column.name] = [int(value)]
      elif value in ("", None):
        instance[column.name] = []
      elif column.type is ColumnType.INT:
        instance[column.name] = [int(value)]
      elif column.type is ColumnType.FLOAT:
        instance[column.name] = [float(value)]
      else:
        instance[column.name] = [str(value).encode()]
    out.append(instance)
  return out


def _raw_batch(config, cols, lo, hi):
  """Rows lo..hi as the raw feature tensors Transform's layer takes: [n, 1] sparse
  per column (labels dense)."""
  import tensorflow as tf
  from models.features import ColumnType
  batch = {}
  for column in config.columns:
    values = cols[column.name][lo:hi]
    if column.name in config.labels:
      batch[column.name] = tf.constant(np.array(values, np.int64)[:, None])
      continue
    keep = [i for i, v in enumerate(values) if v not in ("", None)]
    kept = [values[i] for i in keep]
    if column.type is ColumnType.INT:
      kept = np.array([int(v) for v in kept], np.int64)
    elif column.type is ColumnType.FLOAT:
      kept = np.array([float(v) for v in kept], np.float32)
    else:
      kept = np.array([str(v).encode() for v in kept], object)
    indices = np.array([[i, 0] for i in keep], np.int64).reshape(-1, 2)
    batch[column.name] = tf.SparseTensor(indices, kept, [hi - lo, 1])
  return batch


def _raw_examples(config, cols, lo, hi):
  """Rows lo..hi as serialized raw tf.Examples without labels (serving_default's input)."""
  import tensorflow as tf
  from models.features import ColumnType
  out = []
  for i in range(lo, hi):
    features = {}
    for column in config.columns:
      value = cols[column.name][i]
      if column.name in config.labels or value in ("", None):
        continue
      if column.type is ColumnType.INT:
        features[column.name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
      elif column.type is ColumnType.FLOAT:
        features[column.name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
      else:
        features[column.name] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[str(value).encode()]))
    out.append(tf.train.Example(features=tf.train.Features(feature=features))
               .SerializeToString())
  return out


def _row_keys(features, labels):
  """[n] rows of model inputs and labels -> n tuples of ints (a row's identity)."""
  parts = [np.asarray(features[k]).reshape(len(np.asarray(features[k])), -1)
           for k in sorted(features)]
  parts += [np.asarray(labels[k]).reshape(-1, 1) for k in sorted(labels)]
  return [tuple(int(v) for v in row) for row in np.concatenate(parts, axis=1).astype(np.int64)]


def _write_transform_output(root):
  """A small Transform output laid out as the Transform component writes it:
  `transform/` (the graph: transform_fn, transformed_metadata, metadata) and
  `examples/Split-{train,eval}/` (GZIP TFRecords of transformed tf.Examples).

  tf.Transform's Beam pass analyses the train rows (the user_activity
  vocabulary); both splits are then encoded with the TFTransformOutput's
  layer, as serving does, which saves a second Beam pass. Returns the rows'
  keys per split, the eval split as model inputs and as raw tf.Examples, and
  its click rate."""
  import tempfile

  import tensorflow as tf
  import tensorflow_transform as tft
  import tensorflow_transform.beam as tft_beam
  from tensorflow_metadata.proto.v0 import schema_pb2
  from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils
  from tfx.utils import io_utils

  from datagen import taobao
  from models.backbone import model_features
  from models.config import parse_config
  from models.preprocessing import CONFIG_KEY, preprocessing_fn
  from pipeline import configs

  config = parse_config(_config_text())
  cols, _ = taobao.generate(TRAIN_ROWS + EVAL_ROWS, seed=7)
  schema = io_utils.parse_pbtxt_file(configs.SCHEMA_PATH, schema_pb2.Schema())
  spec = {k: v for k, v in schema_utils.schema_as_feature_spec(schema).feature_spec.items()
          if k in config.column_types}
  raw_metadata = dataset_metadata.DatasetMetadata.from_feature_spec(spec)
  transform_dir = os.path.join(root, "transform")

  def fn(inputs):
    return preprocessing_fn(inputs, {CONFIG_KEY: config.transform_text()})

  with tft_beam.Context(temp_dir=tempfile.mkdtemp(dir=root)):
    transform_fn = (_raw_instances(config, cols, range(TRAIN_ROWS)), raw_metadata) | \
        tft_beam.AnalyzeDataset(fn)
    _ = transform_fn | tft_beam.WriteTransformFn(transform_dir)
  metadata_io.write_metadata(raw_metadata, os.path.join(transform_dir, "metadata"))

  layer = tft.TFTransformOutput(transform_dir).transform_features_layer()
  names = [f.name for f in model_features(config)]
  keys = {}
  for split, (lo, hi) in (("train", (0, TRAIN_ROWS)),
                          ("eval", (TRAIN_ROWS, TRAIN_ROWS + EVAL_ROWS))):
    encoded = {k: v.numpy() for k, v in layer(_raw_batch(config, cols, lo, hi)).items()}
    inputs = {n: encoded[n] for n in names}  # the last: the eval split's
    keys[split] = _row_keys({n: encoded[n] for n in names},
                            {t.name: encoded[t.label] for t in config.tasks})
    split_dir = os.path.join(root, "examples", f"Split-{split}")
    os.makedirs(split_dir)
    with tf.io.TFRecordWriter(os.path.join(split_dir, "data.tfrecord.gz"),
                              options="GZIP") as writer:
      for i in range(hi - lo):
        feature = {}
        for name, values in encoded.items():
          row = np.ravel(values[i])
          feature[name] = (tf.train.Feature(float_list=tf.train.FloatList(value=row))
                           if row.dtype.kind == "f" else
                           tf.train.Feature(int64_list=tf.train.Int64List(value=row)))
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                     .SerializeToString())
  return dict(keys=keys, eval_inputs=inputs,
              eval_click_rate=float(np.mean(cols["clk"][TRAIN_ROWS:])),
              eval_examples=_raw_examples(config, cols, TRAIN_ROWS, TRAIN_ROWS + EVAL_ROWS))


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
  """Two processes, TF_CONFIG workers 0 (the chief) and 1, training together with the
  same FnArgs (one model output, one log dir, as on storage a cluster shares).

  They start first and import while this process writes the Transform output
  they train on (they wait for `ready`): the two overlap on a busy machine."""
  root = str(tmp_path_factory.mktemp("distributed"))
  cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
             TF_USE_LEGACY_KERAS="1",
             PYTHONPATH=os.pathsep.join([PROJECT_DIR] + [p for p in [
                 os.environ.get("PYTHONPATH")] if p]))
  spec = dict(transform=os.path.join(root, "transform"),
              examples=os.path.join(root, "examples"), ready=os.path.join(root, "ready"),
              model=os.path.join(root, "model"), model_run=os.path.join(root, "model_run"),
              config=_config_text(MWMS), training=WORKER_TRAINING)
  workers, logs = [], []
  start = time.time()
  codes = None
  try:
    for index in range(2):
      spec_path = os.path.join(root, f"worker{index}.json")
      with open(spec_path, "w") as f:
        json.dump(dict(spec, result=os.path.join(root, f"result{index}.json")), f)
      logs.append(open(os.path.join(root, f"worker{index}.log"), "w+"))
      tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
      workers.append(subprocess.Popen(
          [sys.executable, os.path.abspath(__file__), spec_path],
          env=dict(env, TF_CONFIG=tf_config), cwd=PROJECT_DIR, stdout=logs[-1],
          stderr=subprocess.STDOUT))
    data = _write_transform_output(root)
    with open(spec["ready"], "w") as f:
      f.write("ready")
    codes = [w.wait(timeout=WORKER_TIMEOUT) for w in workers]
  except subprocess.TimeoutExpired:
    pass
  finally:
    for w in workers:  # ours only, by their Popen handles
      if w.poll() is None:
        w.kill()
        w.wait()
  seconds = time.time() - start
  texts = []
  for log in logs:
    log.seek(0)
    texts.append(log.read())
    log.close()
  assert codes == [0, 0], "\n\n".join(f"--- worker {i}:\n{t[-6000:]}"
                                      for i, t in enumerate(texts))
  results = []
  for index in range(2):
    with open(os.path.join(root, f"result{index}.json")) as f:
      results.append(json.load(f))
  print(f"Transform output written, two workers trained and exported in {seconds:.0f}s")
  return dict(spec, data=data, results=results, logs=texts, seconds=seconds)


def test_both_workers_finish_the_same_synchronous_training(two_workers):
  chief, other = two_workers["results"]
  assert (chief["worker"], other["worker"]) == ([0, 2, True], [1, 2, False])
  assert chief["replicas"] == other["replicas"] == 2
  # Steps per epoch come from all the train rows and the global batch, on both.
  expected_steps = -(-TRAIN_ROWS // (2 * PER_REPLICA_BATCH))
  assert chief["steps_per_epoch"] == other["steps_per_epoch"] == expected_steps
  assert chief["epochs_run"] == other["epochs_run"] >= 1
  # The same all-reduced gradients each step: the same weights at the end.
  np.testing.assert_allclose(chief["weight_sums"], other["weight_sums"], rtol=1e-6)
  # ... and the same eval metrics (all-reduced over both shards of the eval split).
  np.testing.assert_allclose(chief["val_mean_auc"], other["val_mean_auc"], rtol=1e-6)
  assert chief["loss"][-1] < chief["loss"][0]
  assert "MultiWorkerMirroredStrategy: worker 1/2 (chief)" in two_workers["logs"][0]


def test_the_workers_train_on_different_shards(two_workers):
  first, second = (collections.Counter(map(tuple, r["train_keys"]))
                   for r in two_workers["results"])
  # Worker i read records i, i + 2, i + 4, ...: half the split each, together all of it.
  rows = two_workers["data"]["keys"]["train"]
  assert first == collections.Counter(rows[0::2]) and second == collections.Counter(rows[1::2])
  assert sum(first.values()) == sum(second.values()) == TRAIN_ROWS // 2
  assert first != second


def test_only_the_chief_writes_and_the_export_has_the_single_worker_contract(two_workers):
  import tensorflow as tf
  import tensorflow_transform as tft
  from models.backbone import build_model
  from models.config import parse_config
  from models.features import ColumnType
  from models.preprocessing import embedding_rows
  from models.trainer import SUMMARY_FILE
  from tfx.utils import path_utils

  serving_dir = path_utils.serving_model_dir(two_workers["model"])
  assert sorted(os.listdir(serving_dir)) == ["assets", "fingerprint.pb", "keras_metadata.pb",
                                             "saved_model.pb", "variables"]
  # The other worker's TensorBoard dir (workertemp_1) is gone; one summary, the chief's.
  run_dir = two_workers["model_run"]
  assert not [p for p in os.listdir(run_dir) if p.startswith("workertemp")]
  with open(os.path.join(run_dir, SUMMARY_FILE)) as f:
    summary = json.load(f)
  assert (summary["distribute"], summary["workers"], summary["replicas"],
          summary["batch_size"], summary["global_batch_size"]) == (
              MWMS, 2, 2, PER_REPLICA_BATCH, 2 * PER_REPLICA_BATCH)

  # The contract every single-worker export has (docs/serving.md, "SavedModel contract").
  config = parse_config(_config_text())
  output = tft.TFTransformOutput(two_workers["transform"])
  dtypes = {ColumnType.STRING: tf.string, ColumnType.INT: tf.int64,
            ColumnType.FLOAT: tf.float32}
  raw = {name: (dtypes[config.column_types[name]], [None])
         for name in output.raw_feature_spec() if name not in config.labels}
  examples_in = {"examples": (tf.string, [None])}
  towers = {"ctr": (tf.float32, [None]), "cvr": (tf.float32, [None])}
  expected = {"serving_default": (examples_in, towers), "serving_raw": (raw, towers),
              "transformed_features": (examples_in, {"user_activity": (tf.int64, [None])})}
  loaded = tf.saved_model.load(serving_dir)
  assert sorted(loaded.signatures) == sorted(expected)
  for name, (inputs, outputs) in expected.items():
    function = loaded.signatures[name]
    assert {k: (v.dtype, v.shape.as_list())
            for k, v in function.structured_input_signature[1].items()} == inputs, name
    assert {k: (v.dtype, v.shape.as_list())
            for k, v in function.structured_outputs.items()} == outputs, name

  # Trained, not the initial weights: a fresh model predicts clicks at about 1/2,
  # the exported one at about the eval split's click rate.
  rate = two_workers["data"]["eval_click_rate"]
  trained = loaded.signatures["serving_default"](
      examples=tf.constant(two_workers["data"]["eval_examples"]))
  fresh = build_model(config, {f.name: embedding_rows(f, output) for f in config.features})
  untrained = fresh(two_workers["data"]["eval_inputs"], training=False)
  assert abs(float(tf.reduce_mean(untrained["ctr"])) - rate) > 0.2
  assert abs(float(tf.reduce_mean(trained["ctr"])) - rate) < 0.5 * rate + 0.02
  assert np.all(trained["cvr"].numpy() <= trained["ctr"].numpy() + 0.05)


def test_train_args_num_steps_is_the_step_budget(two_workers, tmp_path):
  """TrainArgs.num_steps (the train_args runtime parameter of the compiled spec)
  reaches run_fn as fn_args.train_steps: exactly that many steps, no early
  stopping, over the config's own num_steps; an explicit training override wins."""
  from models import trainer

  config = _config_text().replace("train_config {", "train_config {\n  num_steps: 5", 1)
  spec = dict(two_workers, config=config, model=str(tmp_path / "model"),
              model_run=str(tmp_path / "model_run"),
              training=dict(WORKER_TRAINING, max_epochs=None))
  # 2400 rows in batches of 64: 38 steps an epoch, so 45 steps end mid-epoch 2.
  result = trainer.train(_fn_args(spec, train_args={"splits": ["train"], "num_steps": 45}))
  assert (result.training.num_steps, result.summary["steps"]) == (45, 45)
  assert (result.steps_per_epoch, result.summary["epochs_run"]) == (38, 2)
  assert len(result.history["val_mean_auc"]) == 2  # the last, partial epoch is evaluated

  spec["training"] = dict(spec["training"], num_steps=10)
  result = trainer.train(_fn_args(spec, train_args={"splits": ["train"], "num_steps": 45}))
  assert (result.summary["steps"], result.summary["epochs_run"]) == (10, 1)


# --- the worker program ---------------------------------------------------------

def _fn_args(spec, train_args=None):
  """FnArgs from artifacts at the spec's paths, as TFX's Trainer executor builds them."""
  from tfx.components.trainer import executor as trainer_executor
  from tfx.types import artifact_utils, standard_artifacts

  from models import trainer

  examples = standard_artifacts.Examples()
  examples.uri = spec["examples"]
  examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
  graph = standard_artifacts.TransformGraph()
  graph.uri = spec["transform"]
  model = standard_artifacts.Model()
  model.uri = spec["model"]
  model_run = standard_artifacts.ModelRun()
  model_run.uri = spec["model_run"]
  custom_config = {trainer.CONFIG_KEY: spec["config"], trainer.TRAINING_KEY: spec["training"]}
  return trainer_executor.GenericExecutor()._GetFnArgs(
      {"examples": [examples], "transform_graph": [graph]},
      {"model": [model], "model_run": [model_run]},
      {"train_args": json.dumps(train_args or {}), "eval_args": "{}",
       "custom_config": json.dumps(custom_config)})


def _worker_main(spec_path):
  """One worker: FnArgs from artifacts as TFX's Trainer executor builds them, then
  models.trainer.train under the TF_CONFIG of the environment."""
  start = time.time()
  os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
  with open(spec_path) as f:
    spec = json.load(f)
  from tfx.dsl.io import fileio

  from models import trainer

  fn_args = _fn_args(spec)

  print(f"[worker] FnArgs ready after {time.time() - start:.0f}s", flush=True)
  while not os.path.exists(spec["ready"]):  # the parent writes the Transform output
    if time.time() - start > WORKER_TIMEOUT:
      raise TimeoutError("no Transform output")
    time.sleep(0.2)
  print(f"[worker] Transform output ready after {time.time() - start:.0f}s", flush=True)
  result = trainer.train(fn_args)
  print(f"[worker] trained and exported after {time.time() - start:.0f}s", flush=True)
  # What the executor checks after run_fn, on every worker.
  if not fileio.exists(fn_args.serving_model_dir):
    raise RuntimeError("run_fn failed to generate model.")

  # The rows of this worker's shard, read by the function that fed its training.
  import tensorflow_transform as tft
  from models.config import parse_config
  shard = trainer._dataset(fn_args.train_files, fn_args.data_accessor,
                           tft.TFTransformOutput(fn_args.transform_output),
                           parse_config(spec["config"]), 256, shuffle=False, shuffle_buffer=0,
                           repeat=False, shard=result.worker.shard)
  keys = []
  for features, labels in shard:
    keys += _row_keys({k: v.numpy() for k, v in features.items()},
                      {k: v.numpy() for k, v in labels.items()})
  history = result.history
  with open(spec["result"], "w") as f:
    json.dump({
        "worker": [result.worker.index, result.worker.count, result.worker.is_chief],
        "replicas": result.replicas, "steps_per_epoch": result.steps_per_epoch,
        "epochs_run": len(history["loss"]), "loss": history["loss"],
        "val_mean_auc": history["val_mean_auc"],
        "weight_sums": [float(np.sum(np.abs(w))) for w in result.model.get_weights()],
        "train_keys": keys,
    }, f)
  print(f"[worker] done after {time.time() - start:.0f}s", flush=True)


if __name__ == "__main__":
  _worker_main(sys.argv[1])
