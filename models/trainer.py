"""The Trainer component's `run_fn`: build the config's model, train it on Transform
output, export the SavedModel.

With `train_config.train_distribute` (models/distribution.py) the model is built,
compiled and trained under that tf.distribute strategy. Under
MultiWorkerMirroredStrategy every worker of the TF_CONFIG cluster runs run_fn
with the same FnArgs (on Vertex AI / Kubeflow: the Trainer as a custom job with
one replica per worker, its output URIs on storage they share); each trains on
its own shard of the records and only the chief writes the Trainer's outputs.

With a `base_model` (the latest blessed model, from the pipeline's warm-start
resolver) the new model starts from its weights when the architecture matches,
and from a fresh initialisation, saying why, when it does not
(models/warm_start.py); either way the training schedule is the same. Every
export leaves the weights and vocabularies a later warm start needs in
`<model artifact>/warm_start/`, and carries TF Serving's warmup requests, built
from the raw eval rows (models/warmup_requests.py).
"""

import dataclasses
import json
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
# FnArgs itself, not `tfx.v1`: importing all of TFX v1 (orchestration, KFP, Vertex
# clients) costs each worker of a distributed run ~7 s more.
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx_bsl.public import tfxio

from models import distribution, memory_input, warm_start, warmup_requests
from models.auc import BucketedAUC
from models.autograph_rules import skip_tf_keras
from models.backbone import build_model, model_features
from models.binary_losses import TowerLoss
from models.config import parse_config
from models.layers.calibration import fit_shift
from models.losses import l2_regularization_loss
from models.preprocessing import embedding_rows
from models.signatures import make_signatures
from models.training import TrainingConfig, make_optimizer

# Trainer(custom_config={CONFIG_KEY: config text, TRAINING_KEY: overrides,
#                        WARM_START_KEY: True when the pipeline resolves a base_model})
CONFIG_KEY, TRAINING_KEY, WARM_START_KEY = "config", "training", "warm_start"
# Written next to the TensorBoard logs in the ModelRun artifact.
SUMMARY_FILE = "training_summary.json"


def _dataset(files, data_accessor, tf_transform_output, config, batch_size, shuffle,
             shuffle_buffer, repeat, seed=None, shuffle_labels=False,
             shard: Optional[Tuple[int, int]] = None, drop_remainder=False,
             in_memory: Optional[Dict[str, tf.Tensor]] = None):
  """(features, labels) batches of `batch_size` rows: features keyed by model input
  name (int64 `[batch]`, `[batch, max_tags]` for tags, float32 `[batch]` raw),
  labels float32 `[batch]` keyed by task.

  `shard=(index, count)` with count > 1 keeps every count-th record from
  `index` on (a multi-worker run's share of the data, models/distribution.py).
  `drop_remainder`: no last partial batch (TFXIO input only).
  `in_memory`: the split's records already parsed (`_hold_in_memory`), batched
  from memory instead of read from `files`.
  """
  if in_memory is not None:
    dataset = memory_input.batches(in_memory, batch_size, shuffle, shuffle_buffer, seed, repeat)
  elif shard is not None and shard[1] > 1:
    dataset = _record_shard(files, tf_transform_output, config, batch_size, shuffle,
                            shuffle_buffer, repeat, seed, shard)
  else:
    dataset = data_accessor.tf_dataset_factory(
        files,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=None if repeat else 1,
                                       shuffle=shuffle, shuffle_buffer_size=shuffle_buffer,
                                       shuffle_seed=seed, drop_final_batch=drop_remainder),
        tf_transform_output.transformed_metadata.schema)
  names = [f.name for f in model_features(config)]

  def split(batch):
    labels = {t.name: tf.cast(batch[t.label], tf.float32) for t in config.tasks}
    if shuffle_labels:
      order = tf.random.shuffle(tf.range(tf.shape(labels[config.tasks[0].name])[0]), seed=seed)
      labels = {name: tf.gather(values, order) for name, values in labels.items()}
    return {name: batch[name] for name in names}, labels

  return dataset.map(split).prefetch(tf.data.AUTOTUNE)


def _record_shard(files, tf_transform_output, config, batch_size, shuffle, shuffle_buffer,
                  repeat, seed, shard):
  """One worker's share of Transform's output: every count-th record from index on,
  parsed with the transformed feature spec, as the TFXIO dataset would parse it.

  By record, not by file: the shares differ by at most one row whatever the
  number of files Beam wrote, so every row is seen once per epoch across the
  workers (with whole files, a worker given fewer rows would repeat them more
  often). Each worker reads every record, and parses only its own."""
  index, count = shard
  paths = sorted(path for pattern in files for path in tf.io.gfile.glob(pattern))
  dataset = tf.data.TFRecordDataset(paths, compression_type="GZIP").shard(count, index)
  if shuffle:
    dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    dataset = dataset.repeat()
  spec = _model_spec(tf_transform_output, config)
  return dataset.batch(batch_size).map(lambda records: tf.io.parse_example(records, spec),
                                       num_parallel_calls=tf.data.AUTOTUNE)


def _model_spec(tf_transform_output, config):
  """The transformed feature spec of what the model reads: its inputs and the labels."""
  used = {f.name for f in model_features(config)} | {t.label for t in config.tasks}
  return {name: feature for name, feature in tf_transform_output.transformed_feature_spec().items()
          if name in used}


def _hold_in_memory(fn_args, tf_transform_output, config, train_rows: int
                    ) -> Optional[Dict[str, Dict[str, tf.Tensor]]]:
  """{"train", "eval"}: both splits parsed once (models/memory_input.py), when the
  parsed features of both fit in memory_input.IN_MEMORY_BYTES; else None."""
  spec = _model_spec(tf_transform_output, config)
  size = memory_input.row_bytes(spec)
  if size is None:
    return None
  eval_rows = count_records(fn_args.eval_files)
  if (train_rows + eval_rows) * size > memory_input.IN_MEMORY_BYTES:
    print(f"  [Trainer] input: read from Transform's files every epoch (the parsed splits "
          f"would take {(train_rows + eval_rows) * size / 2 ** 20:,.0f} MiB, over "
          f"{memory_input.IN_MEMORY_BYTES / 2 ** 20:,.0f} MiB)", flush=True)
    return None
  splits = {"train": memory_input.load_split(fn_args.train_files, spec),
            "eval": memory_input.load_split(fn_args.eval_files, spec)}
  print(f"  [Trainer] input: train and eval splits parsed once and held in memory "
        f"({(train_rows + eval_rows) * size / 2 ** 20:,.0f} MiB)", flush=True)
  return splits


def count_records(file_patterns) -> int:
  """The number of records in the GZIP TFRecord files matching `file_patterns`
  (Transform's output of a split): its rows, counted by reading every one."""
  files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
  dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
  return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


class LossTerms(tf.keras.callbacks.Callback):
  """Adds to the epoch logs what Keras doesn't report by itself: `val_mean_auc`
  (the mean over tasks of the eval AUC, which early stopping watches) and
  `l2_regularization_loss` (the kernel penalty's value at the epoch's end).

  Early stopping watches the AUC rather than the eval loss: with ID
  embeddings the loss (calibration) starts to worsen an epoch or two before
  the ranking does, and ranking is what the Evaluator gates on.
  """

  def __init__(self, tasks):
    super().__init__()
    self.tasks = list(tasks)

  def on_epoch_end(self, epoch, logs=None):
    """Adds `val_mean_auc` and `l2_regularization_loss` to the epoch's logs."""
    if logs is not None:
      logs["val_mean_auc"] = sum(logs[f"val_{t}_auc"] for t in self.tasks) / len(self.tasks)
      logs["l2_regularization_loss"] = l2_regularization_loss(self.model)


class StepBudget(tf.keras.callbacks.Callback):
  """Ends training after exactly `steps` optimizer steps (None: no budget), mid-epoch
  if need be (Keras still runs that epoch's eval), and counts the steps taken. Every
  worker of a multi-worker run stops at the same step."""

  def __init__(self, steps: Optional[int]):
    super().__init__()
    self.steps, self.taken = steps, 0

  def on_train_batch_end(self, batch, logs=None):
    """Counts the step; stops training once the budget is spent."""
    self.taken += 1
    if self.steps and self.taken >= self.steps:
      self.model.stop_training = True


class ProgressLogger(tf.keras.callbacks.Callback):
  """Prints epoch, step, loss and examples/s every `every` steps while training, and
  at each epoch's end its time and eval loss and AUCs. `batch_size`: the rows one step
  consumes (the global batch)."""

  def __init__(self, batch_size: int, steps_per_epoch: int, every: int):
    super().__init__()
    self.batch_size, self.steps_per_epoch, self.every = batch_size, steps_per_epoch, every

  def on_epoch_begin(self, epoch, logs=None):
    """Starts the epoch's clock."""
    self.epoch, self.start = epoch + 1, time.time()

  def on_train_batch_end(self, batch, logs=None):
    """Every `every` steps: the epoch, step, loss and examples/s so far."""
    if (batch + 1) % self.every == 0:
      rate = (batch + 1) * self.batch_size / max(time.time() - self.start, 1e-9)
      print(f"  [Trainer] epoch {self.epoch}/{self.params['epochs']} "
            f"step {batch + 1}/{self.steps_per_epoch} loss {logs['loss']:.4f} "
            f"{rate:,.0f} examples/s", flush=True)

  def on_epoch_end(self, epoch, logs=None):
    """The epoch's time, eval loss and eval AUCs."""
    metrics = " ".join(f"{k} {v:.4f}" for k, v in sorted(logs.items())
                       if k.startswith("val_") and ("auc" in k or k == "val_loss"))
    print(f"  [Trainer] epoch {epoch + 1} done in {time.time() - self.start:.0f}s: {metrics}",
          flush=True)


# Early stopping and the Trainer's logs read this AUC. EasyRec's `auc {}` spaces
# its 200 thresholds evenly on [0, 1]; purchase probabilities mostly sit below
# 0.01, in the first bucket, so that AUC read 0.845 for a model scoring 0.916.
# Thresholds spaced evenly in logit space resolve both tails.
MIN_AUC_THRESHOLDS = 1000
AUC_LOGIT_RANGE = 12.0


def auc_metric(num_thresholds: int = 200, name: str = "auc") -> tf.keras.metrics.AUC:
  """A Keras AUC with max(num_thresholds, MIN_AUC_THRESHOLDS) thresholds at
  sigmoid(x) for x evenly spaced on [-12, 12] (probabilities 6e-6 .. 1 - 6e-6),
  updated by bucketing (models.auc.BucketedAUC: Keras' counts, at a fraction of
  the cost of its comparisons with every threshold)."""
  count = max(int(num_thresholds), MIN_AUC_THRESHOLDS)
  logits = np.linspace(-AUC_LOGIT_RANGE, AUC_LOGIT_RANGE, count - 2)
  return BucketedAUC(thresholds=(1 / (1 + np.exp(-logits))).tolist(), name=name)


def compile_model(model, config, training: TrainingConfig, total_steps=None):
  """Compiles `model` for training: the config's optimizer (`make_optimizer`), a binary
  cross-entropy per task weighted by its classification weight, and an `auc_metric`
  per task (with the tower's first `auc` metric's thresholds; Keras logs it as
  `<task>_auc`, `val_<task>_auc` on the eval split).

  `total_steps`: the planned step budget, which the default learning rate
  schedule spans."""
  towers = {t.tower_name: t for t in config.model.model_params.task_towers}
  metrics = {}
  for task in config.tasks:
    sets = [m.auc.num_thresholds for m in towers[task.name].metrics_set] or [200]
    metrics[task.name] = [auc_metric(sets[0])]
  model.compile(
      optimizer=make_optimizer(config.proto.train_config, training.learning_rate, total_steps),
      loss={t.name: task_loss(t) for t in config.tasks},
      loss_weights={t.name: 1.0 if t.extra_losses else t.classification_weight
                    for t in config.tasks},
      metrics=metrics)


def task_loss(task) -> tf.keras.losses.Loss:
  """A task's loss: binary cross-entropy (weighted by compile's loss_weights), or, for a
  tower with EasyRec's other binary losses, a TowerLoss of every weighted term."""
  if not task.extra_losses:
    return tf.keras.losses.BinaryCrossentropy()
  terms = [dict(loss_type=kind, weight=weight, loss_name=loss_name, params=dict(params))
           for kind, weight, loss_name, params in task.extra_losses]
  if task.classification_weight:
    terms.insert(0, dict(loss_type="CLASSIFICATION", weight=task.classification_weight))
  return TowerLoss(terms, tower=task.name, name=f"{task.name}_loss")


# Under a strategy with several replicas, an embedding table of at most this
# many float32 values (1 MiB) has its gradient all-reduced dense (_dense_small_gradients).
DENSE_GRADIENT_LIMIT = 2 ** 18


def _dense_small_gradients(optimizer, limit: int = DENSE_GRADIENT_LIMIT) -> None:
  """Makes `optimizer` all-reduce the sparse gradients of small tables as dense tensors.

  A lookup's gradient is an IndexedSlices, which the cross-replica all-reduce
  all-gathers table by table: two or three collectives per table every step,
  each set up on its first run, where the dense gradients share one packed
  all-reduce. For a table of at most `limit` values the dense sum moves about
  as many bytes as gathering a batch of its rows; the update is the same, since
  Keras sums a sparse gradient's repeated ids before applying it. Larger tables
  (EasyRec's 100,000 hash buckets) stay sparse. Measured with the default
  config on two CPU workers (2 busy cores): the first step (tracing and the
  collectives' setup) 59 s -> 28 s, later steps 0.5 s -> 0.3 s."""
  aggregate = optimizer.aggregate_gradients

  def aggregate_dense(grads_and_vars):
    return aggregate([
        (tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices)
         and v.shape.num_elements() <= limit else g, v) for g, v in grads_and_vars])

  optimizer.aggregate_gradients = aggregate_dense


def build_compiled_model(config, embedding_rows: Dict[str, int], training: TrainingConfig,
                         strategy=None, total_steps=None):
  """The config's model, built (build_model, `embedding_rows`: feature -> its table's
  rows) and compiled (compile_model) under `strategy`'s scope (default: the default
  strategy), so the variables, the optimizer's slots and the metrics are the
  strategy's (mirrored on each replica)."""
  strategy = strategy or tf.distribute.get_strategy()
  with strategy.scope():
    model = build_model(config, embedding_rows)
    compile_model(model, config, training, total_steps=total_steps)
  if strategy.num_replicas_in_sync > 1:
    _dense_small_gradients(model.optimizer)
  return model


def _inputs(strategy, worker, fn_args, tf_transform_output, config, training, replicas,
            train_rows):
  """(train, eval, eval rows per epoch or None for all of them) for model.fit.

  Without a strategy (one worker, one replica): both splits parsed once and
  batched from memory when they fit (`_hold_in_memory`), else as below.

  Train: on one worker, the TFXIO dataset batched by the global batch, which
  Keras splits across the local replicas. On several, each worker's own shard
  of the records, batched per replica, through distribute_datasets_from_function
  (no auto-sharding). It repeats forever; steps_per_epoch, the same on every
  worker, ends an epoch.

  Eval: the TFXIO dataset by the global batch, one pass. With several
  replicas, whole global batches only: Keras would hand a replica an empty
  slice of a short last batch, whose mean losses are NaN. The rows left out
  (fewer than a global batch) only leave the per-epoch eval that early
  stopping reads; the Evaluator scores every row. With several workers it is
  auto-sharded by DATA: each worker evaluates its slice of every global batch
  (each parses the whole split), and Keras all-reduces the metrics. A dataset
  per worker would not do: Keras runs a distributed dataset for a fixed number
  of steps, and the workers' eval shards may differ by a batch.
  """
  batch = training.global_batch_size(replicas)
  eval_args = dict(shuffle=False, shuffle_buffer=0, repeat=False)
  # Without a strategy, on one worker: both splits from memory when they fit. The
  # strategies' datasets stay as they were (a distributed dataset may be rewritten
  # and serialized, which tensors held in memory would bloat).
  memory = (_hold_in_memory(fn_args, tf_transform_output, config, train_rows)
            if training.distribute == "NoStrategy" and worker.count == 1 else None)
  if memory is not None:
    evaluation, eval_rows = _dataset(fn_args.eval_files, fn_args.data_accessor,
                                     tf_transform_output, config, batch,
                                     in_memory=memory["eval"], **eval_args), None
  elif replicas == 1:
    evaluation, eval_rows = _dataset(fn_args.eval_files, fn_args.data_accessor,
                                     tf_transform_output, config, batch, **eval_args), None
  else:
    rows = count_records(fn_args.eval_files)
    if rows < replicas:
      raise ValueError(f"the eval split has {rows} rows, fewer than the {replicas} replicas")
    eval_batch = min(batch, rows - rows % replicas)  # a small split: smaller batches, not none
    evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                          config, eval_batch, drop_remainder=True, **eval_args)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    evaluation, eval_rows = evaluation.with_options(options), rows - rows % eval_batch

  train_args = dict(shuffle=training.shuffle, shuffle_buffer=training.shuffle_buffer,
                    repeat=True, seed=training.seed, shuffle_labels=training.shuffle_labels)
  if worker.count == 1:
    return (_dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, config,
                     batch, in_memory=memory["train"] if memory else None, **train_args),
            evaluation, eval_rows)

  def dataset_fn(context):
    shard = (context.input_pipeline_id, context.num_input_pipelines)
    if shard != worker.shard:  # TF_CONFIG as TensorFlow and models.distribution read it
      raise RuntimeError(f"input pipeline {shard}, but TF_CONFIG gives {worker.shard}")
    return _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, config,
                    context.get_per_replica_batch_size(batch), shard=shard, **train_args)

  return strategy.distribute_datasets_from_function(dataset_fn), evaluation, eval_rows


@dataclasses.dataclass
class TrainResult:
  """What `train` did on this worker (run_fn discards it; tests read it): the trained
  model (under the strategy; the chief exported a copy of its weights), Keras' history
  (metric -> one value per epoch), the settings sized to the data, this worker, the
  replicas in sync, the steps per epoch and the training summary (SUMMARY_FILE's
  content, also on the workers that do not write it)."""
  model: Any
  history: Dict[str, list]
  training: TrainingConfig
  worker: distribution.Worker
  replicas: int
  steps_per_epoch: int
  summary: Dict[str, Any]


# Rows per batch, and at most this many rows, when the calibration intercepts are fit.
CALIBRATION_BATCH, CALIBRATION_ROWS = 8192, 1_000_000


def calibrate(model: tf.keras.Model, config, dataset) -> Dict[str, Dict[str, float]]:
  """Sets each task's calibration intercept (models/layers/calibration.py) so that its
  mean prediction over the dataset's rows (at most CALIBRATION_ROWS; the Trainer passes
  the eval split) is their label rate; returns task -> {mean_prediction (before),
  label_rate, shift (the new value)}.

  `dataset`: (features, labels) batches as `_dataset` makes them, labels float32
  `[batch]` by task; the model's outputs are probabilities `[batch, 1]` by task."""
  predictions = {t.name: [] for t in config.tasks}
  labels = {t.name: [] for t in config.tasks}
  rows = 0
  for features, batch_labels in dataset:
    outputs = model(features, training=False)
    for task in predictions:
      predictions[task].append(np.ravel(outputs[task].numpy()))
      labels[task].append(np.ravel(batch_labels[task].numpy()))
    rows += len(labels[config.tasks[0].name][-1])
    if rows >= CALIBRATION_ROWS:
      break
  found = {}
  for task in predictions:
    p, y = np.concatenate(predictions[task]), np.concatenate(labels[task])
    layer = model.get_layer(f"{task}_calibration")
    shift = float(layer.shift.numpy()) + fit_shift(p, float(y.mean()))
    layer.shift.assign(shift)
    found[task] = {"mean_prediction": float(p.mean()), "label_rate": float(y.mean()),
                   "shift": shift}
  return found


def run_fn(fn_args: FnArgs):
  """TFX Trainer entry point (Trainer(run_fn='models.trainer.run_fn')): `train`,
  its result discarded."""
  train(fn_args)


def train(fn_args: FnArgs, extra_callbacks: Sequence[tf.keras.callbacks.Callback] = ()
          ) -> TrainResult:
  """run_fn's work: train the config's model on Transform output under the
  config's strategy, export it (the chief) and write the training summary.

  `extra_callbacks` (benchmarks) run after the Trainer's own, so at the end of
  training they see the weights that are exported."""
  skip_tf_keras()
  run = _prepare(fn_args)
  model = build_compiled_model(run.config, run.embedding_rows, run.training, run.strategy,
                               total_steps=run.total_steps)
  # Asked for, a warm start is always recorded: also why it did not happen.
  warm = None
  if fn_args.base_model or fn_args.custom_config.get(WARM_START_KEY):
    warm = warm_start.start_from(fn_args.base_model, model, run.config, run.tf_transform_output)
  _log_plan(run, model, warm)
  history, steps, seconds = _fit(run, model, fn_args, extra_callbacks)
  calibration = _export(run, model, fn_args) if run.worker.is_chief else None
  summary = _summary(run, model, history, steps, seconds, warm, calibration)
  if run.worker.is_chief:
    _write_summary(fn_args.model_run_dir, summary)
  if run.worker.count > 1:
    # No worker returns before the chief's files are complete: TFX's executor
    # then checks, on each worker, that the model exists at the shared output.
    distribution.barrier(run.strategy)
  return TrainResult(model, history, run.training, run.worker, run.replicas,
                     run.steps_per_epoch, summary)


@dataclasses.dataclass(frozen=True)
class _Run:
  """One worker's run, as `_prepare` sized it to the train split."""
  config: Any
  training: TrainingConfig  # sized: batch_size (per replica) and max_epochs filled
  worker: distribution.Worker
  strategy: tf.distribute.Strategy
  replicas: int
  tf_transform_output: tft.TFTransformOutput
  train_rows: int  # all of them, whatever this worker's shard
  steps_per_epoch: int
  embedding_rows: Dict[str, int]  # feature -> its table's rows
  total_steps: int  # the planned budget the default learning rate schedule spans

  @property
  def early_stopping(self) -> bool:
    """Whether early stopping on the mean eval AUC may end the run."""
    # A num_steps the config asks for is trained in full, as EasyRec does; otherwise
    # the step budget is ours and early stopping on the mean eval AUC may end it.
    return self.training.num_steps is None

  @property
  def global_batch(self) -> int:
    """The rows one optimizer step consumes, over every replica."""
    return self.training.global_batch_size(self.replicas)


def _prepare(fn_args: FnArgs) -> _Run:
  """Reads the config and settings, makes the strategy, sizes the run to the train
  split and seeds the random generators (before the model's weights are drawn)."""
  config = parse_config(fn_args.custom_config[CONFIG_KEY], source="Trainer custom_config")
  settings = TrainingConfig.from_config(config.proto, _overrides(fn_args))
  worker = distribution.worker_for(settings)
  # First: MultiWorkerMirroredStrategy sets up the cluster's collective ops.
  strategy = distribution.make_strategy(settings)
  replicas = strategy.num_replicas_in_sync
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  # All the rows, on every worker: the same steps per epoch everywhere.
  train_rows = count_records(fn_args.train_files)
  training = settings.sized_for(train_rows, replicas)
  steps_per_epoch = training.steps_per_epoch(train_rows, replicas)
  if training.seed is not None:
    tf.keras.utils.set_random_seed(training.seed)
  rows = {f.name: embedding_rows(f, tf_transform_output) for f in config.features}
  return _Run(config, training, worker, strategy, replicas, tf_transform_output, train_rows,
              steps_per_epoch, rows,
              total_steps=training.num_steps or steps_per_epoch * training.max_epochs)


def _overrides(fn_args: FnArgs) -> Dict[str, Any]:
  """The custom_config's training overrides, with the Trainer's num_steps."""
  overrides = dict(fn_args.custom_config.get(TRAINING_KEY) or {})
  if fn_args.train_steps and "num_steps" not in overrides:
    # The Trainer's TrainArgs.num_steps (on Kubeflow the train_args runtime
    # parameter) wins over the config's train_config.num_steps.
    overrides["num_steps"] = int(fn_args.train_steps)
  return overrides


def _log_plan(run: _Run, model: tf.keras.Model, warm: Optional[warm_start.Decision]) -> None:
  """Prints what is about to be trained: the cluster (when distributed), the model's
  size and the schedule, the warm start's outcome (on the chief), a null model."""
  training, worker, replicas = run.training, run.worker, run.replicas
  if worker.count > 1 or replicas > 1:
    print(f"  [Trainer] {training.distribute}: worker {worker.index + 1}/{worker.count}"
          f"{' (chief)' if worker.is_chief else ''}, {replicas} replica(s) in sync, batch "
          f"{training.batch_size} per replica = {run.global_batch} per step"
          + (f"; its shard: records {worker.index}, {worker.index + worker.count}, "
             f"{worker.index + 2 * worker.count}, ... of the train split"
             if worker.count > 1 else ""), flush=True)
  print(f"  [Trainer] {run.config.model.model_name or 'model'}: "
        f"{model.count_params():,} parameters; {run.train_rows:,} train rows, batch "
        f"{run.global_batch}, {run.steps_per_epoch} steps x "
        + (f"up to {training.max_epochs} epochs, early stopping on mean eval AUC"
           if run.early_stopping else
           f"{training.max_epochs} epochs (num_steps {training.num_steps}, no early stopping)"),
        flush=True)
  if warm is not None and worker.is_chief:
    print(f"  [Trainer] {warm.message()}", flush=True)
  if training.shuffle_labels:
    print("  [Trainer] shuffle_labels is set: training a null model on permuted labels",
          flush=True)


def _fit(run: _Run, model: tf.keras.Model, fn_args: FnArgs,
         extra_callbacks: Sequence[tf.keras.callbacks.Callback]
         ) -> Tuple[Dict[str, list], int, float]:
  """Trains `model` on the train split, evaluated on the eval split after each epoch;
  returns Keras' history (metric -> one value per epoch), the optimizer steps taken
  and the seconds training took."""
  # The clock starts before the input is made: holding a split in memory reads it.
  start = time.time()
  train_input, evaluation, eval_rows = _inputs(run.strategy, run.worker, fn_args,
                                               run.tf_transform_output, run.config,
                                               run.training, run.replicas, run.train_rows)
  if eval_rows is not None and run.worker.is_chief:
    print(f"  [Trainer] eval after each epoch: {eval_rows:,} rows (whole global batches)",
          flush=True)
  budget = StepBudget(run.training.num_steps)
  callbacks = _callbacks(run, budget, fn_args.model_run_dir) + list(extra_callbacks)
  history = model.fit(train_input, validation_data=evaluation, epochs=run.training.max_epochs,
                      steps_per_epoch=run.steps_per_epoch, verbose=0, callbacks=callbacks)
  return history.history, budget.taken, time.time() - start


def _callbacks(run: _Run, budget: StepBudget, log_dir: str
               ) -> List[tf.keras.callbacks.Callback]:
  """The Trainer's own callbacks, in the order Keras calls them: LossTerms first,
  since early stopping reads the val_mean_auc it adds."""
  callbacks = [LossTerms([t.name for t in run.config.tasks]), budget]
  if run.early_stopping:
    # Every worker decides alike: the eval metrics are all-reduced.
    callbacks.append(tf.keras.callbacks.EarlyStopping(
        monitor="val_mean_auc", mode="max", patience=run.training.patience,
        restore_best_weights=True))
  # Keras points a non-chief worker's TensorBoard at a temporary workertemp_<i>.
  callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))
  if run.worker.is_chief:
    callbacks.append(ProgressLogger(run.global_batch, run.steps_per_epoch,
                                    run.training.log_every_steps))
  return callbacks


def _export(run: _Run, model: tf.keras.Model, fn_args: FnArgs) -> Dict[str, Dict[str, float]]:
  """The chief's outputs: calibrates the trained weights on the eval split and saves
  them as the SavedModel at `serving_model_dir`, with the warm-start snapshot next to
  it; returns the calibration (`calibrate`'s result)."""
  export = model
  if run.training.distribute != "NoStrategy":
    # A plain copy of the trained weights: the serving signatures call the model
    # outside any replica, where its strategy's metric updates can't run, and
    # the SavedModel should not depend on the cluster. Its variables are local,
    # so saving is no collective and the other workers have nothing to save.
    export = build_compiled_model(run.config, run.embedding_rows, run.training,
                                  total_steps=run.total_steps)
    export.set_weights(model.get_weights())
  # On the eval split, not the train rows: the model has partly memorized the train
  # rows (a repeated user-ad pair's clicks), so its mean prediction there runs above
  # what it predicts for impressions it has not seen. At 500k rows the purchase rate
  # fitted on the train rows came out 10% low on held-out rows (bench/quality.py).
  calibration = calibrate(export, run.config, _dataset(
      fn_args.eval_files, fn_args.data_accessor, run.tf_transform_output, run.config,
      CALIBRATION_BATCH, shuffle=False, shuffle_buffer=0, repeat=False))
  print("  [Trainer] calibrated on the eval split (mean prediction -> label rate, logit "
        "shift): " + ", ".join(
            f"{task} {c['mean_prediction']:.4f} -> {c['label_rate']:.4f} "
            f"({c['shift']:+.3f})" for task, c in calibration.items()), flush=True)
  signatures = make_signatures(export, run.tf_transform_output, run.config)
  export.save(fn_args.serving_model_dir, save_format="tf", signatures=signatures)
  _write_warmup(fn_args, signatures)
  warm_start.write_snapshot(warm_start.snapshot_dir(fn_args.serving_model_dir),
                            warm_start.snapshot(export, run.config, run.tf_transform_output))
  return calibration


def _write_warmup(fn_args: FnArgs, signatures) -> None:
  """Writes TF Serving's warmup file into the exported SavedModel
  (models/warmup_requests.py), from the first rows of the raw eval split that the
  Trainer's executor passes in custom_config; says so when it passes none (run_fn
  called without ExampleGen's examples)."""
  patterns = (fn_args.custom_config or {}).get(warmup_requests.RAW_EVAL_FILES_KEY)
  if not patterns:
    print("  [Trainer] no warmup requests: the Trainer was given no raw examples",
          flush=True)
    return
  # serving_raw's one argument is the dict of columns; each spec is named for its column.
  raw_inputs = {spec.name: spec.dtype for spec in tf.nest.flatten(
      signatures[warmup_requests.RAW_SIGNATURE].structured_input_signature)}
  logs = warmup_requests.build_requests(warmup_requests.read_examples(patterns), raw_inputs)
  path = warmup_requests.write_requests(fn_args.serving_model_dir, logs)
  names = sorted({log.predict_log.request.model_spec.signature_name for log in logs})
  print(f"  [Trainer] warmup: {len(logs)} requests ({', '.join(names)}) from the eval "
        f"split's first rows -> {os.path.relpath(path, fn_args.serving_model_dir)}",
        flush=True)


def _summary(run: _Run, model: tf.keras.Model, history: Dict[str, list], steps: int,
             seconds: float, warm: Optional[warm_start.Decision],
             calibration: Optional[Dict[str, Dict[str, float]]]) -> Dict[str, Any]:
  """The training summary (SUMMARY_FILE): the data and settings, the schedule run,
  the exported epoch's eval AUCs, the warm start and the calibration."""
  training, scores = run.training, history["val_mean_auc"]
  # The exported weights: the best epoch's when early stopping restored them, else the last.
  best = (max(range(len(scores)), key=scores.__getitem__) if run.early_stopping
          else len(scores) - 1)
  summary = {
      "model_name": run.config.model.model_name,
      "parameters": int(model.count_params()),
      "train_rows": run.train_rows, "batch_size": training.batch_size,
      "seed": training.seed, "shuffle_labels": training.shuffle_labels,
      "epochs_run": len(scores), "exported_epoch": best + 1,
      "steps": steps, "train_seconds": round(seconds, 1),
      "eval_auc": {t.name: float(history[f"val_{t.name}_auc"][best])
                   for t in run.config.tasks},
      # None: not asked for; else where from, or why a fresh start.
      "warm_start": warm.summary() if warm is not None else None,
      # task -> mean prediction before, label rate, the logit shift set (the chief's)
      "calibration": calibration,
  }
  if training.distribute != "NoStrategy":  # batch_size is per replica
    summary.update(distribute=training.distribute, workers=run.worker.count,
                   replicas=run.replicas, global_batch_size=run.global_batch)
  return summary


def _write_summary(model_run_dir: str, summary: Dict[str, Any]) -> None:
  """Writes `summary` as JSON to SUMMARY_FILE in the ModelRun artifact."""
  tf.io.gfile.makedirs(model_run_dir)
  with tf.io.gfile.GFile(os.path.join(model_run_dir, SUMMARY_FILE), "w") as f:
    json.dump(summary, f, indent=2)
