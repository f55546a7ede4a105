"""How many steps a warm start needs to reach a cold start's eval AUC, on generated spans.

    .venv/bin/python bench/warm_start.py [--rows 50000] [--seed 7] [--eval-every 10] [--work DIR]

Generates two daily spans of one world (datagen/taobao.write_spans, `--rows`
each) and runs ExampleGen .. Transform on each span (its own vocabularies, as
a daily run learns them). Then, all with the Trainer's own `train`
(models/trainer.py: the same schedule, early stopping and seed):

1. the base model: cold on span 1, exported with its warm_start/ folder;
2. on span 2, cold;
3. on span 2, warm-started from the base model (models/warm_start.py:
   vocabulary rows remapped by token).

A callback scores span 2's eval split every `--eval-every` steps (and before
the first) with the exact AUC per task, and once more at the end on the
weights that are exported (early stopping's best epoch). Per task it prints
the cold start's final AUC, where the warm start stands before its first step
(the base model on the new day), the steps the warm start needed to reach the
cold start's final AUC, and both final AUCs; then the AUC by step.
"""

import os
import sys

# Run as a script, sys.path[0] is bench/; the project's packages are one up.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from cli.tensorflow_import import setup_tensorflow  # noqa: E402

setup_tensorflow()  # before anything loads TensorFlow

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402


import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _auc(labels, scores) -> float:
  from sklearn.metrics import roc_auc_score
  return float(roc_auc_score(labels, scores))


class EvalEvery(tf.keras.callbacks.Callback):
  """Exact eval AUC per task at step 0, every `every` steps, and at the end of
  training (after early stopping restored the weights it exports)."""

  def __init__(self, features, labels, every: int):
    super().__init__()
    self.features, self.labels, self.every = features, labels, every
    self.step, self.curve, self.final = 0, [], None

  def _score(self):
    # Calls the model, not model.predict: predict's History would replace fit's.
    rows = len(next(iter(self.labels.values())))
    scores = {task: [] for task in self.labels}
    for start in range(0, rows, 8192):
      outputs = self.model({k: v[start:start + 8192] for k, v in self.features.items()},
                           training=False)
      for task in scores:
        scores[task].append(np.ravel(outputs[task].numpy()))
    return {task: _auc(self.labels[task], np.concatenate(parts))
            for task, parts in scores.items()}

  def on_train_begin(self, logs=None):
    self.curve.append((0, self._score()))

  def on_train_batch_end(self, batch, logs=None):
    self.step += 1
    if self.step % self.every == 0:
      self.curve.append((self.step, self._score()))

  def on_train_end(self, logs=None):
    self.final = self._score()


def _transform(data_dir, span, root, config):
  """ExampleGen .. Transform on one span; (transformed examples dir, transform graph dir)."""
  from tfx import v1 as tfx

  from pipeline.configs import metadata_path
  from pipeline.local_runner import run_dag
  from pipeline.pipeline import Extent, create_pipeline
  from pipeline.spans import SpanSettings

  pipeline = create_pipeline(
      config=config, data_root=data_dir, pipeline_root=root,
      serving_dir=os.path.join(root, "serving"), extent=Extent.TRANSFORM,
      spans=SpanSettings(span=span, drift_check=False),
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          metadata_path(root)))
  run_dag(pipeline)
  def newest(output):   # the run's, or the cached one it reused
    return max(glob.glob(os.path.join(root, "Transform", output, "*")),
               key=lambda path: int(os.path.basename(path)))
  return newest("transformed_examples"), newest("transform_graph")


def _eval_split(examples_dir, graph_dir, config):
  """Span 2's transformed eval split as model inputs and labels (numpy)."""
  import tensorflow_transform as tft
  from models.backbone import model_features
  spec = tft.TFTransformOutput(graph_dir).transformed_feature_spec()
  files = glob.glob(os.path.join(examples_dir, "Split-eval", "*"))
  records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1 << 20)
  parsed = [tf.io.parse_example(batch, spec) for batch in records]
  column = {name: np.concatenate([p[name].numpy() for p in parsed]) for name in spec}
  features = {f.name: column[f.name] for f in model_features(config)}
  labels = {t.name: column[t.label] for t in config.tasks}
  return features, labels


def _train(config, examples_dir, graph_dir, out_dir, seed, base_model=None, callback=None):
  """The Trainer's train() on these artifacts; its training summary."""
  from tfx.components.trainer import executor as trainer_executor
  from tfx.types import artifact_utils, standard_artifacts

  from models import trainer

  examples, graph = standard_artifacts.Examples(), standard_artifacts.TransformGraph()
  examples.uri, graph.uri = examples_dir, graph_dir
  examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
  model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
  model.uri, model_run.uri = os.path.join(out_dir, "model"), os.path.join(out_dir, "model_run")
  inputs = {"examples": [examples], "transform_graph": [graph]}
  if base_model is not None:
    inputs["base_model"] = [base_model]
  fn_args = trainer_executor.GenericExecutor()._GetFnArgs(
      inputs, {"model": [model], "model_run": [model_run]},
      {"train_args": "{}", "eval_args": "{}",
       "custom_config": json.dumps({trainer.CONFIG_KEY: config.text,
                                    trainer.TRAINING_KEY: {"seed": seed}})})
  result = trainer.train(fn_args, extra_callbacks=[callback] if callback else ())
  return model, result.summary


def _steps_to_reach(curve, target):
  return next((step for step, auc in curve if auc >= target), None)


def _tables(cold, warm, cold_summary, warm_summary, tasks):
  lines = ["| task | cold start: final AUC | warm start: AUC before its first step | "
           "steps the warm start needed to reach the cold final AUC | warm start: final AUC |",
           "|---|---|---|---|---|"]
  for task in tasks:
    target = cold.final[task]
    reached = _steps_to_reach([(s, a[task]) for s, a in warm.curve], target)
    lines.append(f"| {task} | {target:.4f} | {warm.curve[0][1][task]:.4f} | "
                 f"{reached if reached is not None else 'not reached'} | "
                 f"{warm.final[task]:.4f} |")
  for name, summary in (("cold", cold_summary), ("warm", warm_summary)):
    lines.append(f"\n{name} start: {summary['steps']} steps ({summary['epochs_run']} epochs of "
                 f"batch {summary['batch_size']}, exported epoch {summary['exported_epoch']}), "
                 f"{summary['train_seconds']:.0f} s")
  by_step = {}
  for name, run in (("cold", cold), ("warm", warm)):
    for step, auc in run.curve:
      by_step.setdefault(step, {})[name] = auc
  header = " | ".join(f"{name} {task}" for task in tasks for name in ("cold", "warm"))
  lines += ["", f"| step | {header} |", "|---" * (1 + 2 * len(tasks)) + "|"]
  for step in sorted(by_step):
    cells = [f"{by_step[step][name][task]:.4f}" if name in by_step[step] else ""
             for task in tasks for name in ("cold", "warm")]
    lines.append(f"| {step} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rows", type=int, default=50_000, help="rows per span")
  parser.add_argument("--seed", type=int, default=7, help="data and training seed")
  parser.add_argument("--eval-every", type=int, default=10, help="steps between evaluations")
  parser.add_argument("--config", help="EasyRec config (default: the project's default)")
  parser.add_argument("--work", help="where data and runs go (default: a temporary dir)")
  args = parser.parse_args()

  from datagen import taobao
  from models.config import load_config
  from pipeline import configs

  start = time.time()
  config = load_config(args.config or configs.CONFIG_PATH)
  # Per size and seed: a rerun with the same --work reuses the data, and with it
  # the cached ExampleGen .. Transform (ExampleGen fingerprints file times).
  work = os.path.join(args.work or tempfile.mkdtemp(prefix="aitm-warm-start-"),
                      f"rows{args.rows}-seed{args.seed}")
  data = os.path.join(work, "data")
  if not os.path.isdir(data):
    taobao.write_spans(data, args.rows, 2, seed=args.seed)
  # Beam's workers import the project's modules by name.
  os.environ["PYTHONPATH"] = os.pathsep.join(
      [sys.path[0]] + [p for p in [os.environ.get("PYTHONPATH")] if p])
  spans = {span: _transform(data, span, os.path.join(work, f"span-{span}"), config)
           for span in (1, 2)}
  print(f"\n== Transform of both spans done after {time.time() - start:.0f}s", flush=True)

  trained = os.path.join(work, f"trained-{time.strftime('%Y%m%d-%H%M%S')}")
  base, base_summary = _train(config, *spans[1], os.path.join(trained, "base"), args.seed)
  features, labels = _eval_split(*spans[2], config)
  runs = {}
  for name, base_model in (("cold", None), ("warm", base)):
    print(f"\n== span 2, {name} start", flush=True)
    callback = EvalEvery(features, labels, args.eval_every)
    _, summary = _train(config, *spans[2], os.path.join(trained, name), args.seed,
                        base_model=base_model, callback=callback)
    runs[name] = (callback, summary)
  warm_summary = runs["warm"][1]
  if not warm_summary["warm_start"]["warm"]:
    sys.exit(f"the warm start fell back: {warm_summary['warm_start']['reason']}")
  rows = warm_summary["warm_start"]["remapped"]
  machine = (f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
             f"Python {platform.python_version()}")
  print(f"\n{machine}; {args.rows:,} rows per span, seed {args.seed}; base model on span 1: "
        f"{base_summary['steps']} steps, eval AUC "
        + ", ".join(f"{t} {a:.4f}" for t, a in base_summary["eval_auc"].items())
        + f"; span 2's eval split: {len(next(iter(labels.values()))):,} rows; vocabulary rows "
        f"kept {sum(r['kept'] for r in rows.values()):,}, new "
        f"{sum(r['new'] for r in rows.values()):,}, dropped "
        f"{sum(r['dropped'] for r in rows.values()):,}\n")
  print(_tables(runs["cold"][0], runs["warm"][0], runs["cold"][1], warm_summary,
                [t.name for t in config.tasks]))
  print(f"\ntotal {time.time() - start:.0f}s; work dir {work}")


if __name__ == "__main__":
  main()
