"""The Trainer component's `run_fn`: build the config's model, train it on Transform
output, export the SavedModel."""

import json
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models.autograph_rules import skip_tf_keras
from models.backbone import build_model, model_features
from models.config import parse_config
from models.losses import l2_regularization_loss
from models.preprocessing import embedding_rows
from models.signatures import make_signatures
from models.training import TrainingConfig, make_optimizer

# Trainer(custom_config={CONFIG_KEY: config text, TRAINING_KEY: overrides})
CONFIG_KEY, TRAINING_KEY = "config", "training"
# Written next to the TensorBoard logs in the ModelRun artifact.
SUMMARY_FILE = "training_summary.json"


def _dataset(files, data_accessor, tf_transform_output, config, batch_size, shuffle,
             shuffle_buffer, repeat, seed=None, shuffle_labels=False):
  dataset = data_accessor.tf_dataset_factory(
      files,
      tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=None if repeat else 1,
                                     shuffle=shuffle, shuffle_buffer_size=shuffle_buffer,
                                     shuffle_seed=seed, drop_final_batch=False),
      tf_transform_output.transformed_metadata.schema)
  names = [f.name for f in model_features(config)]

  def split(batch):
    labels = {t.name: tf.cast(batch[t.label], tf.float32) for t in config.tasks}
    if shuffle_labels:
      order = tf.random.shuffle(tf.range(tf.shape(labels[config.tasks[0].name])[0]), seed=seed)
      labels = {name: tf.gather(values, order) for name, values in labels.items()}
    return {name: batch[name] for name in names}, labels

  return dataset.map(split).prefetch(tf.data.AUTOTUNE)


def count_records(file_patterns) -> int:
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
    if logs is not None:
      logs["val_mean_auc"] = sum(logs[f"val_{t}_auc"] for t in self.tasks) / len(self.tasks)
      logs["l2_regularization_loss"] = l2_regularization_loss(self.model)


class ProgressLogger(tf.keras.callbacks.Callback):
  """Prints epoch, step, loss and examples/s while training."""

  def __init__(self, batch_size: int, steps_per_epoch: int, every: int):
    super().__init__()
    self.batch_size, self.steps_per_epoch, self.every = batch_size, steps_per_epoch, every

  def on_epoch_begin(self, epoch, logs=None):
    self.epoch, self.start = epoch + 1, time.time()

  def on_train_batch_end(self, batch, logs=None):
    if (batch + 1) % self.every == 0:
      rate = (batch + 1) * self.batch_size / max(time.time() - self.start, 1e-9)
      print(f"  [Trainer] epoch {self.epoch}/{self.params['epochs']} "
            f"step {batch + 1}/{self.steps_per_epoch} loss {logs['loss']:.4f} "
            f"{rate:,.0f} examples/s", flush=True)

  def on_epoch_end(self, epoch, logs=None):
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
  sigmoid(x) for x evenly spaced on [-12, 12] (probabilities 6e-6 .. 1 - 6e-6)."""
  count = max(int(num_thresholds), MIN_AUC_THRESHOLDS)
  logits = np.linspace(-AUC_LOGIT_RANGE, AUC_LOGIT_RANGE, count - 2)
  return tf.keras.metrics.AUC(thresholds=(1 / (1 + np.exp(-logits))).tolist(), name=name)


def compile_model(model, config, training: TrainingConfig, total_steps=None):
  """`total_steps`: the planned step budget, which the default learning rate
  schedule spans."""
  towers = {t.tower_name: t for t in config.proto.model_config.model_params.task_towers}
  metrics = {}
  for task in config.tasks:
    sets = [m.auc.num_thresholds for m in towers[task.name].metrics_set] or [200]
    metrics[task.name] = [auc_metric(sets[0])]
  model.compile(
      optimizer=make_optimizer(config.proto.train_config, training.learning_rate, total_steps),
      loss={t.name: tf.keras.losses.BinaryCrossentropy() for t in config.tasks},
      loss_weights={t.name: t.classification_weight for t in config.tasks},
      metrics=metrics)


def run_fn(fn_args: tfx.components.FnArgs):
  """TFX Trainer entry point (Trainer(run_fn='models.trainer.run_fn'))."""
  skip_tf_keras()
  config = parse_config(fn_args.custom_config[CONFIG_KEY], source="Trainer custom_config")
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  train_rows = count_records(fn_args.train_files)
  training = TrainingConfig.from_config(
      config.proto, fn_args.custom_config.get(TRAINING_KEY)).sized_for(train_rows)
  steps_per_epoch = training.steps_per_epoch(train_rows)
  if training.seed is not None:
    tf.keras.utils.set_random_seed(training.seed)

  rows = {f.name: embedding_rows(f, tf_transform_output) for f in config.features}
  model = build_model(config, rows)
  compile_model(model, config, training, total_steps=steps_per_epoch * training.max_epochs)
  # A num_steps the config asks for is trained in full, as EasyRec does; otherwise
  # the step budget is ours and early stopping on the mean eval AUC may end it.
  early_stopping = training.num_steps is None
  print(f"  [Trainer] {config.proto.model_config.model_name or 'model'}: "
        f"{model.count_params():,} parameters; {train_rows:,} train rows, batch "
        f"{training.batch_size}, {steps_per_epoch} steps x "
        + (f"up to {training.max_epochs} epochs, early stopping on mean eval AUC"
           if early_stopping else
           f"{training.max_epochs} epochs (num_steps {training.num_steps}, no early stopping)"),
        flush=True)
  if training.shuffle_labels:
    print("  [Trainer] shuffle_labels is set: training a null model on permuted labels",
          flush=True)

  train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, config,
                   training.batch_size, training.shuffle, training.shuffle_buffer, repeat=True,
                   seed=training.seed, shuffle_labels=training.shuffle_labels)
  evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, config,
                        training.batch_size, False, 0, repeat=False)
  callbacks = [LossTerms([t.name for t in config.tasks])]
  if early_stopping:
    callbacks.append(tf.keras.callbacks.EarlyStopping(
        monitor="val_mean_auc", mode="max", patience=training.patience,
        restore_best_weights=True))
  callbacks += [
      tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch"),
      ProgressLogger(training.batch_size, steps_per_epoch, training.log_every_steps),
  ]
  start = time.time()
  history = model.fit(train, validation_data=evaluation, epochs=training.max_epochs,
                      steps_per_epoch=steps_per_epoch, verbose=0, callbacks=callbacks)
  seconds = time.time() - start
  model.save(fn_args.serving_model_dir, save_format="tf",
             signatures=make_signatures(model, tf_transform_output, config))

  scores = history.history["val_mean_auc"]
  # The exported weights: the best epoch's when early stopping restored them, else the last.
  best = max(range(len(scores)), key=scores.__getitem__) if early_stopping else len(scores) - 1
  summary = {
      "model_name": config.proto.model_config.model_name,
      "parameters": int(model.count_params()),
      "train_rows": train_rows, "batch_size": training.batch_size,
      "seed": training.seed, "shuffle_labels": training.shuffle_labels,
      "epochs_run": len(scores), "exported_epoch": best + 1,
      "steps": len(scores) * steps_per_epoch, "train_seconds": round(seconds, 1),
      "eval_auc": {t.name: float(history.history[f"val_{t.name}_auc"][best])
                   for t in config.tasks},
  }
  tf.io.gfile.makedirs(fn_args.model_run_dir)
  with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, SUMMARY_FILE), "w") as f:
    json.dump(summary, f, indent=2)
