"""The Trainer component's `run_fn`: train AITM on Transform output, export the SavedModel."""

import time

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models import features as F
from models.aitm_model import ModelConfig, build_model
from models.preprocessing import embedding_rows
from models.signatures import make_signatures
from models.training import TrainingConfig


def _dataset(files, data_accessor, tf_transform_output, batch_size, shuffle, shuffle_buffer):
  dataset = data_accessor.tf_dataset_factory(
      files,
      tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=1, shuffle=shuffle,
                                     shuffle_buffer_size=shuffle_buffer,
                                     drop_final_batch=False),
      tf_transform_output.transformed_metadata.schema)

  def split(batch):
    labels = {task: tf.cast(batch.pop(label), tf.float32) for task, label in F.TASKS.items()}
    return {f.name: batch[f.name] for f in F.FEATURES}, labels

  return dataset.map(split).prefetch(tf.data.AUTOTUNE)


def count_records(file_patterns) -> int:
  files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
  dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
  return int(dataset.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


class MeanTaskAUC(tf.keras.callbacks.Callback):
  """Adds `val_mean_auc`, the mean over tasks of the eval AUC, to the epoch logs.

  Early stopping watches it rather than the eval loss: with ID embeddings the
  loss (calibration) starts to worsen an epoch or two before the ranking does,
  and ranking is what the Evaluator gates on.
  """

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs["val_mean_auc"] = sum(logs[f"val_{task}_auc"] for task in F.TASKS) / len(F.TASKS)


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


def run_fn(fn_args: tfx.components.FnArgs):
  """TFX Trainer entry point (Trainer(run_fn='models.trainer.run_fn'))."""
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  train_rows = count_records(fn_args.train_files)
  config = TrainingConfig.from_dict(fn_args.custom_config).sized_for(train_rows)
  steps_per_epoch = -(-train_rows // config.batch_size)
  print(f"  [Trainer] {train_rows:,} train rows, batch {config.batch_size}, "
        f"up to {config.max_epochs} epochs, early stopping on mean eval AUC", flush=True)

  train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output,
                   config.batch_size, True, config.shuffle_buffer)
  evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                        config.batch_size, False, 0)

  rows = {f.name: embedding_rows(f, tf_transform_output) for f in F.FEATURES}
  model = build_model(rows, ModelConfig())
  model.compile(
      optimizer=tf.keras.optimizers.Adam(config.learning_rate),
      loss={task: tf.keras.losses.BinaryCrossentropy() for task in F.TASKS},
      metrics={task: [tf.keras.metrics.AUC(name="auc")] for task in F.TASKS})
  model.fit(
      train, validation_data=evaluation, epochs=config.max_epochs, verbose=0,
      callbacks=[
          MeanTaskAUC(),
          tf.keras.callbacks.EarlyStopping(monitor="val_mean_auc", mode="max",
                                           patience=config.patience,
                                           restore_best_weights=True),
          tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch"),
          ProgressLogger(config.batch_size, steps_per_epoch, config.log_every_steps),
      ])
  model.save(fn_args.serving_model_dir, save_format="tf",
             signatures=make_signatures(model, tf_transform_output))
