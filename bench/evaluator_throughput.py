"""Eval rows a second of the Evaluator's TFMA evaluation, and where its time goes.

    .venv/bin/python bench/evaluator_throughput.py --model M --examples 'DIR/Split-eval/*' \
        [--copies 10] [--metrics groups stock] [--baseline] [--profile]

Runs what the TFX Evaluator runs (TFMA's ExtractEvaluateAndWriteResults on the raw
eval examples, the project's EvalConfig: every metric, plot and slice) on one
in-memory DirectRunner worker, once per metrics implementation:

* `groups`: the Evaluator as configured (models.batch_slicing's extractors,
  models.task_metrics on groups of rows);
* `stock`: TFMA's default extractors and stock metrics (AUC, CalibrationPlot, Keras'
  BinaryCrossentropy, ...), what the Evaluator ran before.

`--copies N` reads the examples N times (the same files listed N times), for a
larger run from a small split; `--baseline` evaluates the model against itself as
the baseline (the gated run's work: two models). `--profile` runs each under
cProfile and prints the seconds per step (the profiler's overhead inflates them
all; read the shares). Prints a table: implementation, rows, seconds, rows/s.
"""

import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from cli.tensorflow_import import setup_tensorflow  # noqa: E402

setup_tensorflow()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import logging  # noqa: E402
import pstats  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

# Step -> the functions whose cumulative time is that step's (pstats' file:line(name)).
STEPS = (
    ("read and decode examples", ("tfrecordio.py", "read_records"), ("example_coder.py", "DecodeBatch")),
    ("model signatures", ("model_util.py", "_batch_reducible_process"),),
    ("split batches into examples", ("unbatch_extractor.py", "_extract_unbatched_inputs"),),
    ("slice keys", ("slice_key_extractor.py", "process"), ("batch_slicing.py", "process")),
    ("metrics: add rows", ("metrics_plots_and_validations_evaluator.py", "add_input"),),
    ("metrics: derive, diff, write", ("metrics_plots_and_validations_evaluator.py",
                                      "add_derived_metrics"),
     ("metrics_plots_and_validations_writer.py", "convert_slice_metrics_to_proto")),
)

# Before models.task_metrics: TFMA's own class per metric of a task.
STOCK_METRICS = ("ExampleCount", "AUC", "AUCPrecisionRecall", "BinaryCrossentropy",
                 "Calibration", "MeanPrediction", "MeanLabel", "CalibrationPlot",
                 "ConfusionMatrixPlot")


def stock_eval_config(eval_config):
  """`eval_config` with TFMA's stock metric classes in place of models.task_metrics'."""
  from tensorflow_model_analysis.proto import config_pb2
  stock = config_pb2.EvalConfig()
  stock.CopyFrom(eval_config)
  for spec in stock.metrics_specs:
    kept = [m for m in spec.metrics if not m.module.endswith("task_metrics")]
    gate = [m for m in spec.metrics if m.class_name == "TaskAUC"]
    del spec.metrics[:]
    for name in STOCK_METRICS:
      metric = spec.metrics.add(class_name=name)
      if name == "BinaryCrossentropy":
        metric.config = '{"name": "log_loss"}'
      if name == "AUC" and gate:
        metric.per_slice_thresholds.extend(gate[0].per_slice_thresholds)
    spec.metrics.extend(kept)
  return stock


def _evaluate(implementation, model_dir, files, baseline, out):
  import apache_beam as beam
  import tensorflow_model_analysis as tfma
  from tfx_bsl.public import tfxio

  from models import batch_slicing
  from models.config import load_config
  from models.eval_config import make_eval_config
  from pipeline import configs

  eval_config = make_eval_config(load_config(configs.CONFIG_PATH), gate=baseline)
  if implementation == "stock":
    eval_config = stock_eval_config(eval_config)
  models = [tfma.default_eval_shared_model(eval_saved_model_path=model_dir, model_name=spec.name,
                                           eval_config=eval_config)
            for spec in eval_config.model_specs]
  shared = models[0] if len(models) == 1 else models
  extractors = (batch_slicing.custom_extractors(shared, eval_config)
                if implementation == "groups" else None)
  with beam.Pipeline(argv=["--runner=DirectRunner", "--direct_running_mode=in_memory",
                           "--direct_num_workers=1"]) as pipeline:
    reads = [pipeline | f"Read{i}" >> tfxio.TFExampleRecord(
        file_pattern=path, raw_record_column_name=tfma.constants.ARROW_INPUT_COLUMN
    ).BeamSource() for i, path in enumerate(files)]
    _ = (reads | beam.Flatten() | tfma.ExtractEvaluateAndWriteResults(
        eval_shared_model=shared, eval_config=eval_config, extractors=extractors,
        output_path=out))


def _count(files):
  import tensorflow as tf
  return sum(1 for path in files for _ in tf.data.TFRecordDataset(
      path, compression_type="GZIP" if path.endswith(".gz") else ""))


def _steps(profile_path):
  stats = pstats.Stats(profile_path).stats
  seconds = {}
  for step, *functions in STEPS:
    seconds[step] = sum(cumulative for (file, _, name), (_, _, _, cumulative, _) in stats.items()
                        if any(file.endswith(f) and name == n for f, n in functions))
  return seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", required=True, help="the SavedModel (Trainer's Format-Serving)")
  parser.add_argument("--examples", required=True,
                      help="glob of the eval split's TFRecord files (gzip'd as ExampleGen writes)")
  parser.add_argument("--copies", type=int, default=1)
  parser.add_argument("--metrics", nargs="+", choices=("groups", "stock"),
                      default=["groups", "stock"])
  parser.add_argument("--baseline", action="store_true")
  parser.add_argument("--profile", action="store_true")
  args = parser.parse_args()
  # TFMA's plots divide by zero counts on purpose (NaN precision); TensorFlow's
  # deprecation notices are about TFMA's own code.
  warnings.filterwarnings("ignore", category=RuntimeWarning,
                          module=r"tensorflow_model_analysis(\.|$)")
  logging.getLogger("tensorflow").setLevel(logging.ERROR)

  import tensorflow as tf
  files = sorted(tf.io.gfile.glob(args.examples)) * args.copies
  if not files:
    parser.error(f"--examples {args.examples}: no files")
  rows = _count(files)
  results = []
  for implementation in args.metrics:
    with tempfile.TemporaryDirectory() as out:
      start = time.time()
      if args.profile:
        profile = os.path.join(out, "profile")
        cProfile.runctx("_evaluate(implementation, args.model, files, args.baseline, out)",
                        globals(), locals(), profile)
        steps = _steps(profile)
      else:
        _evaluate(implementation, args.model, files, args.baseline, out)
        steps = {}
      seconds = time.time() - start
    results.append((implementation, seconds, steps))
    print(f"{implementation}: {rows:,} rows in {seconds:.1f} s", flush=True)
  print(f"\n| metrics | rows | seconds | rows/s |\n|---|---|---|---|")
  for implementation, seconds, _ in results:
    print(f"| {implementation} | {rows:,} | {seconds:.1f} | {rows / seconds:,.0f} |")
  if args.profile:
    print("\n| step (cProfile, cumulative s) | " + " | ".join(r[0] for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for step, *_ in STEPS:
      print(f"| {step} | " + " | ".join(f"{r[2][step]:.1f}" for r in results) + " |")
    print("| whole run | " + " | ".join(f"{r[1]:.1f}" for r in results) + " |")


if __name__ == "__main__":
  main()
