"""Where the Trainer's training time goes: its input pipeline, its train step, and the
step's ops, measured on Transform output.

    .venv/bin/python bench/trainer_profile.py --data WORK/data-200000-50000-7 \\
        [--steps 150] [--warmup 50] [--threads 2]

`--data`: a data directory bench/trainer_vs_pytorch.py prepared (its
`data.json` names the Transform output). Three measurements, each after
`--warmup` steps:

1. the input pipeline alone: the Trainer's train dataset (models/trainer.py
   `_dataset`, its batch, shuffle buffer and prefetch) iterated without a
   model: rows/s;
2. the train step alone: the Trainer's compiled model (`build_compiled_model`)
   fit on one batch held in memory, with the Trainer's callbacks: rows/s;
3. the Trainer's `train` as a run trains, `--steps` of its steps under the
   TensorFlow profiler (tf.profiler.experimental): the op time per thread
   pool (tf.data's threads, the step's compute threads, Python's) and the
   step's ops summed by kind and by the model part they belong to (the op
   name's scope: an embedding table, a block, the loss, the metrics, Adam;
   `gradient_tape/` for the backward pass). Op times are CPU time: they add
   up over the threads that ran them.
"""

import os
import sys

# Run as a script, sys.path[0] is bench/; the project's packages are one up.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from cli.tensorflow_import import setup_tensorflow  # noqa: E402

setup_tensorflow()  # before anything loads TensorFlow

import argparse  # noqa: E402
import collections  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import tensorflow as tf  # noqa: E402


def _fn_args(data, out_dir, training):
  """FnArgs as TFX's Trainer executor builds them from the Transform output."""
  from tfx.components.trainer import executor as trainer_executor
  from tfx.types import artifact_utils, standard_artifacts

  from models import trainer
  from pipeline import configs

  examples, graph = standard_artifacts.Examples(), standard_artifacts.TransformGraph()
  examples.uri, graph.uri = data["examples"], data["graph"]
  examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
  model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
  model.uri, model_run.uri = os.path.join(out_dir, "model"), os.path.join(out_dir, "model_run")
  with open(configs.CONFIG_PATH) as f:
    text = f.read()
  return trainer_executor.GenericExecutor()._GetFnArgs(
      {"examples": [examples], "transform_graph": [graph]},
      {"model": [model], "model_run": [model_run]},
      {"train_args": "{}", "eval_args": "{}",
       "custom_config": json.dumps({trainer.CONFIG_KEY: text,
                                    trainer.TRAINING_KEY: training})})


def input_pipeline_rate(fn_args, steps, warmup):
  """Rows/s of the Trainer's train dataset iterated alone, and its batch size."""
  from models import trainer

  run = trainer._prepare(fn_args)
  dataset, _, _ = trainer._inputs(run.strategy, run.worker, fn_args, run.tf_transform_output,
                                  run.config, run.training, run.replicas, run.train_rows)
  iterator = iter(dataset)
  for _ in range(warmup):
    next(iterator)
  start = time.perf_counter()
  for _ in range(steps):
    next(iterator)
  return steps * run.global_batch / (time.perf_counter() - start), run.global_batch


def train_step_rate(fn_args, steps, warmup):
  """Rows/s of the Trainer's compiled model fit on one batch held in memory."""
  from models import trainer

  run = trainer._prepare(fn_args)
  model = trainer.build_compiled_model(run.config, run.embedding_rows, run.training,
                                       total_steps=run.total_steps)
  dataset, _, _ = trainer._inputs(run.strategy, run.worker, fn_args, run.tf_transform_output,
                                  run.config, run.training, run.replicas, run.train_rows)
  batch = next(iter(dataset))
  repeated = tf.data.Dataset.from_tensors(batch).repeat()
  callbacks = trainer._callbacks(run, trainer.StepBudget(None), tempfile.mkdtemp())
  callbacks = [c for c in callbacks if not isinstance(c, tf.keras.callbacks.EarlyStopping)]
  model.fit(repeated, steps_per_epoch=warmup, epochs=1, verbose=0)
  start = time.perf_counter()
  model.fit(repeated, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[
      c for c in callbacks if not isinstance(c, (trainer.LossTerms,
                                                 tf.keras.callbacks.TensorBoard))])
  return steps * run.global_batch / (time.perf_counter() - start)


class _Profile(tf.keras.callbacks.Callback):
  """Profiles the steps after the first `warmup`, `steps` of them."""

  def __init__(self, log_dir, warmup, steps):
    super().__init__()
    self.log_dir, self.warmup, self.steps, self.done = log_dir, warmup, steps, 0
    self.seconds = None

  def on_train_batch_end(self, batch, logs=None):
    self.done += 1
    if self.done == self.warmup:
      tf.profiler.experimental.start(self.log_dir)
      self.start = time.perf_counter()
    elif self.done == self.warmup + self.steps:
      self.seconds = time.perf_counter() - self.start
      tf.profiler.experimental.stop()


def _pool(line_name):
  """The thread pool of a profile line (a thread): tf.data's, the executor's, Python's
  (which also runs the cheap ops of the functions it calls, inline)."""
  if line_name.startswith("tf_data"):
    return "tf.data threads"
  if line_name.startswith("tf_Compute") or line_name.startswith("tf_inter_op"):
    return "TensorFlow compute threads"
  return f"{line_name.split('/')[0]} thread"


def _part(op_name):
  """The model part an op belongs to, from its name scope; `gradient_tape/` marks the
  backward pass. Keras leaves the compiled metrics' updates (AUC) unscoped."""
  backward = op_name.startswith("gradient_tape/")
  scopes = op_name.split("/")[1:] if backward else op_name.split("/")
  if len(scopes) == 1:
    part = "unscoped (the compiled metrics: AUC, means)"
  elif scopes[0].startswith("Adam"):
    part = "optimizer (Adam)"
  else:
    if scopes[0] == "AITM":
      scopes = scopes[1:]
    part = scopes[0]
    if part == "features" and len(scopes) > 1:
      part = "features: embedding lookups" if "embedding" in scopes[1] else "features: pooling"
  return part + (" (backward)" if backward else "")


def _busy_seconds(line):
  """The time a thread was inside any traced span (nested spans counted once)."""
  busy, end = 0, 0
  for event in sorted(line.events, key=lambda e: e.offset_ps):
    start, stop = event.offset_ps, event.offset_ps + event.duration_ps
    if stop > end:
      busy += stop - max(start, end)
      end = stop
  return busy / 1e12


def op_times(log_dir):
  """From the profile's XSpace: busy seconds per thread pool, and the ops' seconds per op
  kind and per model part (ops alone, not the executor's or tf.data's spans)."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2

  path = sorted(glob.glob(os.path.join(log_dir, "plugins", "profile", "*", "*.xplane.pb")))[-1]
  space = xplane_pb2.XSpace()
  with open(path, "rb") as f:
    space.ParseFromString(f.read())
  pools, kinds, parts = (collections.Counter() for _ in range(3))
  for plane in space.planes:
    if plane.name != "/host:CPU":
      continue
    for line in plane.lines:
      pool = _pool(line.name)
      pools[pool] += _busy_seconds(line)
      if pool == "tf.data threads":
        continue
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        if ":" not in name or "::" in name or name.startswith("EagerLocalExecute"):
          continue  # a span, not an op: the executor's, tf.data's, a function call
        op, kind = name.rsplit(":", 1)
        kinds[kind.strip()] += event.duration_ps / 1e12
        parts[_part(op)] += event.duration_ps / 1e12
  return pools, kinds, parts


def _table(title, counter, steps, total=None, top=None):
  total = total or sum(counter.values())
  lines = [f"| {title} | ms per step | share |", "|---|---|---|"]
  for name, seconds in counter.most_common(top):
    lines.append(f"| {name} | {1000 * seconds / steps:.2f} | {seconds / total:.1%} |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data", required=True, help="a data dir of trainer_vs_pytorch.py")
  parser.add_argument("--steps", type=int, default=150)
  parser.add_argument("--warmup", type=int, default=50)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--seed", type=int, default=7)
  parser.add_argument("--top", type=int, default=25, help="op kinds shown")
  args = parser.parse_args()
  tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  tf.config.threading.set_inter_op_parallelism_threads(args.threads)
  from models import trainer

  with open(os.path.join(args.data, "data.json")) as f:
    data = json.load(f)
  work = tempfile.mkdtemp(prefix="aitm-profile-")
  training = {"seed": args.seed, "num_steps": args.warmup + args.steps}
  fn_args = _fn_args(data, work, training)
  rows_per_second, batch = input_pipeline_rate(fn_args, args.steps, args.warmup)
  step_rate = train_step_rate(fn_args, args.steps, args.warmup)
  profile = _Profile(os.path.join(work, "profile"), args.warmup, args.steps)
  trainer.train(_fn_args(data, work, training), extra_callbacks=[profile])
  pools, kinds, parts = op_times(profile.log_dir)
  wall = profile.seconds
  print(f"\nbatch {batch}, {args.threads} threads; {os.cpu_count()} cores; load "
        f"{os.getloadavg()[0]:.2f}\n")
  print("| measured alone | rows/s | ms per batch |\n|---|---|---|")
  print(f"| the input pipeline | {rows_per_second:,.0f} | {1000 * batch / rows_per_second:.1f} |")
  print(f"| the train step (one batch in memory) | {step_rate:,.0f} | "
        f"{1000 * batch / step_rate:.1f} |")
  print(f"| the Trainer's fit, profiled | {args.steps * batch / wall:,.0f} | "
        f"{1000 * wall / args.steps:.1f} |\n")
  print(_table("thread pool: op CPU time", pools, args.steps) + "\n")
  compute = sum(kinds.values())
  print(_table("the step's ops by model part", parts, args.steps, compute) + "\n")
  print(_table("the step's ops by kind", kinds, args.steps, compute, args.top))
  print(f"\nprofile: {profile.log_dir}")


if __name__ == "__main__":
  main()
