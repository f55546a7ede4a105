"""The Trainer's throughput against a plain PyTorch loop: the same rows, model and cores.

    .venv/bin/python bench/trainer_vs_pytorch.py --torch-python ~/torch-venv/bin/python \\
        [--train-rows 200000] [--steps 800] [--rounds 2] [--baseline REV] \\
        [--quality-seeds 7 8 9] [--work DIR]

PyTorch is not a project dependency: it runs in an environment of its own,
whose interpreter `--torch-python` names (or $AITM_TORCH_PYTHON). Any Python
with `torch` and `numpy` will do, e.g. a separate venv (TensorFlow's venv
stays untouched):

    python3 -m venv ~/torch-venv
    ~/torch-venv/bin/pip install numpy torch   # the CPU-only wheel from PyTorch's own
                                               # index is ~1 GB; PyPI's adds CUDA (~4 GB)

Without one the bench stops before any work, saying so.

1. Data: one generated world (datagen/taobao.py, `--data-seed`): the
   pipeline's input (ExampleGen's train split holds `--train-rows`, the eval
   split a quarter as many) run through ExampleGen .. Transform, and
   `--test-rows` later impressions of the same world, encoded by the same
   Transform graph. No model and no early stop sees the test rows; every AUC
   printed is on them.
2. Throughput, `--rounds` times, one configuration after the other (never two
   at once), so a busy machine slows all of them alike:
   - the Trainer (models/trainer.py `train`, the code of this tree, and with
     `--baseline REV` the code at that git revision too) on Transform's
     output through its own input pipeline, batch and optimizer, for exactly
     `--steps` steps (TrainArgs.num_steps: no early stopping);
   - the same model in PyTorch (bench/pytorch_aitm.py): the same embedding
     tables, widths, losses, batch, Adam and learning-rate schedule, for the
     same steps, over the same transformed train split read into tensors once
     (a plain loop over pre-made tensors, no DataLoader).
   Both use 2 threads: TensorFlow's intra- and inter-op pools, torch's
   intra- and inter-op threads (`--threads`). PyTorch's OpenMP threads wait
   for each other passively (`--omp-wait-policy`, OMP_WAIT_POLICY): spinning,
   OpenMP's default, cost the loop 5x on this 2-core machine while other
   work held the cores (2,060 against 13,060 examples/s; TensorFlow's thread
   pools don't spin). Examples/s is measured in the
   steady state: from the end of step `--warmup` to the end of the last step,
   without the evaluation after each epoch and without the epoch ends (so
   the first step's tracing, tf.data's shuffle-buffer fill and the exports
   are out). Per second of wall time, and per second of the process's CPU
   time over the same steps (less sensitive to other work on the machine:
   what a second of the cores buys). The Trainer's whole `model.fit` too
   (its `training_summary.json`: steps x batch / train_seconds).
3. Quality, with `--quality-seeds`: the Trainer of each tree trained as a
   pipeline run trains (its own schedule, early stopping on its eval split),
   one run per training seed on the same data; test AUC per task, mean ± sample
   std over the seeds, and the paired difference.

Prints the machine's load (`uptime`) before and after each run, one table
per part, and writes them to `<work>/trainer_vs_pytorch.md`.
"""

import os
import sys

# Run as a script, sys.path[0] is bench/; the project's packages are one up.
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
PROJECT_DIR = os.path.dirname(BENCH_DIR)
sys.path[0] = PROJECT_DIR

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

TORCH_SCRIPT = os.path.join(BENCH_DIR, "pytorch_aitm.py")
THIS_TREE = "this tree"


# --- data ------------------------------------------------------------------------

def _transform(data_root, root, config):
  """ExampleGen .. Transform on the CSV under `data_root`; (transformed examples dir,
  transform graph dir) of the latest run (a rerun in the same root is cached)."""
  import glob

  from tfx import v1 as tfx

  from pipeline.configs import metadata_path
  from pipeline.local_runner import run_dag
  from pipeline.pipeline import Extent, create_pipeline

  pipeline = create_pipeline(
      config=config, data_root=data_root, pipeline_root=root,
      serving_dir=os.path.join(root, "serving"), extent=Extent.TRANSFORM,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          metadata_path(root)))
  run_dag(pipeline)

  def newest(output):
    return max(glob.glob(os.path.join(root, "Transform", output, "*")),
               key=lambda path: int(os.path.basename(path)))

  return newest("transformed_examples"), newest("transform_graph")


def _raw_examples(cols, columns, rows):
  """Rows `rows` of the generated columns as serialized raw tf.Examples, a missing
  value ('' or None) left out, as ExampleGen writes them."""
  import tensorflow as tf

  from models.features import ColumnType

  serialized = []
  for i in rows:
    feature = {}
    for column in columns:
      value = cols[column.name][i]
      if value in ("", None):
        continue
      if column.type is ColumnType.INT:
        feature[column.name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
      elif column.type is ColumnType.FLOAT:
        feature[column.name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
      else:
        feature[column.name] = tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[str(value).encode()]))
    serialized.append(tf.train.Example(features=tf.train.Features(feature=feature))
                      .SerializeToString())
  return serialized


def _columns_of(parsed, config):
  """Transformed features and labels (tensors by Transform output name) -> numpy
  arrays: the model's inputs by name, and `label_<task>` per task."""
  from models.backbone import model_features

  arrays = {f.name: np.asarray(parsed[f.name]) for f in model_features(config)}
  arrays.update({f"label_{t.name}": np.asarray(parsed[t.label], np.float32)
                 for t in config.tasks})
  return arrays


def _encode_test_rows(cols, rows, graph_dir, config):
  """The test rows through the Transform graph, as serving_default encodes them."""
  import tensorflow as tf
  import tensorflow_transform as tft

  output = tft.TFTransformOutput(graph_dir)
  layer = output.transform_features_layer()
  serialized = _raw_examples(cols, config.columns, rows)
  parts = []
  for start in range(0, len(serialized), 16384):
    raw = tf.io.parse_example(serialized[start:start + 16384], output.raw_feature_spec())
    parts.append({k: v.numpy() for k, v in layer(raw).items()})
  return _columns_of({k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, config)


def _read_split(examples_dir, split, graph_dir, config):
  """A split of Transform's output, every record in file order, as numpy arrays."""
  import glob

  import tensorflow as tf
  import tensorflow_transform as tft

  spec = tft.TFTransformOutput(graph_dir).transformed_feature_spec()
  files = sorted(glob.glob(os.path.join(examples_dir, f"Split-{split}", "*")))
  records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(65536)
  parts = [{k: v.numpy() for k, v in tf.io.parse_example(batch, spec).items()}
           for batch in records]
  return _columns_of({k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, config)


def prepare_data(work, config, train_rows, test_rows, seed):
  """Generates the world, runs ExampleGen .. Transform, writes `train.npz` (Transform's
  train split) and `test.npz` (the test rows, encoded) under `work`; reused when there.
  Returns {"examples", "graph", "train", "test"} paths."""
  from datagen import taobao
  from pipeline import configs as pipeline_configs

  marker = os.path.join(work, "data.json")
  if os.path.exists(marker):
    with open(marker) as f:
      return json.load(f)
  parts = pipeline_configs.TRAIN_BUCKETS + pipeline_configs.EVAL_BUCKETS
  input_rows = train_rows * parts // pipeline_configs.TRAIN_BUCKETS
  start = time.time()
  cols, _ = taobao.generate(input_rows + test_rows, seed)
  data_root = os.path.join(work, "data")
  os.makedirs(data_root, exist_ok=True)
  with open(os.path.join(data_root, taobao.DATA_FILE), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(taobao.columns())
    writer.writerows(zip(*(cols[c][:input_rows] for c in taobao.columns())))
  print(f"generated {input_rows:,} pipeline rows + {test_rows:,} test rows in "
        f"{time.time() - start:.0f}s", flush=True)
  # Beam's workers import the project's modules by name.
  os.environ["PYTHONPATH"] = os.pathsep.join(
      [PROJECT_DIR] + [p for p in [os.environ.get("PYTHONPATH")] if p])
  examples, graph = _transform(data_root, os.path.join(work, "pipeline"), config)
  paths = {"examples": examples, "graph": graph, "train": os.path.join(work, "train.npz"),
           "test": os.path.join(work, "test.npz")}
  np.savez(paths["train"], **_read_split(examples, "train", graph, config))
  np.savez(paths["test"], **_encode_test_rows(cols, range(input_rows, input_rows + test_rows),
                                              graph, config))
  with open(marker, "w") as f:
    json.dump(paths, f)
  print(f"data ready after {time.time() - start:.0f}s: {work}", flush=True)
  return paths


# --- the Trainer, in a process of its own ---------------------------------------------

def _step_clock(warmup: int):
  """A Keras callback adding up the wall time of the train steps after the first
  `warmup`: from one step's end to the next's within an epoch (an epoch's first step
  from its start), so the per-epoch evaluation and the epoch ends are left out.
  Counts a multi-step execution (steps_per_execution) by the steps it ran."""
  import tensorflow as tf

  class StepClock(tf.keras.callbacks.Callback):
    def __init__(self):
      super().__init__()
      self.before_epoch, self.seconds, self.cpu_seconds, self.steps = 0, 0.0, 0.0, 0
      self.done, self.last = 0, None

    def on_epoch_begin(self, epoch, logs=None):
      self.done, self.last = 0, None

    def on_train_batch_begin(self, batch, logs=None):
      if self.last is None:
        self.last = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, batch, logs=None):
      now, ran = (time.perf_counter(), time.process_time()), batch + 1 - self.done
      if self.before_epoch + self.done >= warmup:   # Keras passes the last step's index
        self.seconds += now[0] - self.last[0]
        self.cpu_seconds += now[1] - self.last[1]
        self.steps += ran
      self.done, self.last = batch + 1, now

    def on_epoch_end(self, epoch, logs=None):
      self.before_epoch += self.done

  return StepClock()


def _fn_args(paths, out_dir, training):
  """FnArgs as TFX's Trainer executor builds them from the Transform output."""
  from tfx.components.trainer import executor as trainer_executor
  from tfx.types import artifact_utils, standard_artifacts

  from models import trainer

  examples, graph = standard_artifacts.Examples(), standard_artifacts.TransformGraph()
  examples.uri, graph.uri = paths["examples"], paths["graph"]
  examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
  model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
  model.uri, model_run.uri = os.path.join(out_dir, "model"), os.path.join(out_dir, "model_run")
  with open(paths["config"]) as f:
    config_text = f.read()
  return trainer_executor.GenericExecutor()._GetFnArgs(
      {"examples": [examples], "transform_graph": [graph]},
      {"model": [model], "model_run": [model_run]},
      {"train_args": "{}", "eval_args": "{}",
       "custom_config": json.dumps({trainer.CONFIG_KEY: config_text,
                                    trainer.TRAINING_KEY: training})})


def tf_worker(args):
  """Trains with the Trainer's `train` of the tree at `args.code`; writes the steady
  examples/s, the training summary and the test rows' predictions."""
  sys.path.insert(0, args.code)   # that tree's `models`, not this one's
  from cli.tensorflow_import import setup_tensorflow
  setup_tensorflow()
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  tf.config.threading.set_inter_op_parallelism_threads(args.threads)
  from models import trainer

  with open(args.paths) as f:
    paths = json.load(f)
  training = {"seed": args.seed}
  if args.steps:
    training["num_steps"] = args.steps
  clock = _step_clock(args.warmup)
  out_dir = tempfile.mkdtemp(prefix="trainer-", dir=os.path.dirname(args.out))
  try:
    result = trainer.train(_fn_args(paths, out_dir, training), extra_callbacks=[clock])
    with np.load(paths["test"]) as test:
      inputs = {name: test[name] for name in test.files if not name.startswith("label_")}
    rows = len(next(iter(inputs.values())))
    scores = {t: [] for t in result.summary["eval_auc"]}
    for start in range(0, rows, 8192):
      outputs = result.model({k: v[start:start + 8192] for k, v in inputs.items()},
                             training=False)
      for task in scores:
        scores[task].append(np.ravel(outputs[task].numpy()))
  finally:
    shutil.rmtree(out_dir, ignore_errors=True)
  np.savez(args.predictions, **{t: np.concatenate(p) for t, p in scores.items()})
  summary = result.summary
  batch = summary.get("global_batch_size", summary["batch_size"])
  with open(args.out, "w") as f:
    json.dump({"examples_per_second": clock.steps * batch / clock.seconds,
               "examples_per_cpu_second": clock.steps * batch / clock.cpu_seconds,
               "fit_examples_per_second": summary["steps"] * batch / summary["train_seconds"],
               "parameters": summary["parameters"], "steps": summary["steps"],
               "epochs": summary["epochs_run"], "batch_size": batch,
               "threads": args.threads}, f)


# --- PyTorch's run ----------------------------------------------------------------

# The default config's backbone blocks the PyTorch model mirrors (bench/pytorch_aitm.py).
AITM_BLOCKS = ("user_side", "ad_side", "affinity", "share_bottom", "ctr_tower", "cvr_tower",
               "cvr_aitm")


def torch_spec(config, graph_dir, batch_size, steps, warmup, seed, threads):
  """bench/pytorch_aitm.py's SPEC: the config's tables, groups and widths, the Trainer's
  batch, Adam and learning-rate schedule for `steps` steps (models/training.py)."""
  import tensorflow_transform as tft

  from models.backbone import model_features
  from models.features import Encoding
  from models.preprocessing import embedding_rows
  from models.training import DEFAULT_LEARNING_RATE, FINAL_SHARE, WARMUP_SHARE

  model = config.proto.model_config
  blocks = {b.name: b.keras_layer for b in model.backbone.blocks}
  if tuple(blocks) != AITM_BLOCKS:
    raise SystemExit(f"the PyTorch model mirrors the default config's blocks {AITM_BLOCKS}; "
                     f"this config has {tuple(blocks)}")
  output = tft.TFTransformOutput(graph_dir)
  features = []
  for f in model_features(config):
    if f.encoding is Encoding.RAW:
      raise SystemExit(f"feature '{f.name}': the PyTorch model embeds ids only")
    features.append({"name": f.name, "kind": "tags" if f.encoding is Encoding.TAGS else "id",
                     "rows": embedding_rows(f, output), "dim": f.embedding_dim})
  towers = {t.tower_name: t for t in model.model_params.task_towers}
  adam = config.proto.train_config.optimizer_config[0].adam_optimizer
  warmup_steps = max(1, int(steps * WARMUP_SHARE))
  return {
      "features": features,
      "groups": {g.group_name: list(g.feature_names) for g in model.feature_groups},
      "user_side": list(blocks["user_side"].mlp.hidden_units),
      "ad_side": list(blocks["ad_side"].mlp.hidden_units),
      "share_bottom": list(blocks["share_bottom"].mlp.hidden_units),
      "tower": list(blocks["ctr_tower"].mlp.hidden_units),
      "transfer": list(blocks["cvr_aitm"].aitm.transfer_mlp.hidden_units),
      "dnn": list(towers["ctr"].dnn.hidden_units),
      "l2": model.model_params.l2_regularization,
      "embedding_l2": model.embedding_regularization,
      "order_weight": next(t.calibration_weight for t in config.tasks if t.name == "cvr"),
      "adam": {"beta1": adam.beta1, "beta2": adam.beta2, "epsilon": 1e-7},  # Keras' epsilon
      "learning_rate": {"peak": DEFAULT_LEARNING_RATE, "warmup_steps": warmup_steps,
                        "decay_steps": max(1, steps - warmup_steps), "alpha": FINAL_SHARE},
      "batch_size": batch_size, "steps": steps, "warmup": warmup, "seed": seed,
      "threads": threads,
  }


# --- the comparison ---------------------------------------------------------------

def _load() -> float:
  """The machine's 1-minute load average (`uptime`'s first)."""
  with open("/proc/loadavg") as f:
    return float(f.read().split()[0])


def _auc(labels, scores) -> float:
  from sklearn.metrics import roc_auc_score
  return float(roc_auc_score(labels, scores))


def _run(name, command, work, env=None):
  """Runs one worker; its result JSON with the load before and after and the test AUCs.
  The worker's output goes to `<work>/<name>.log`."""
  out = os.path.join(work, f"{name}.json")
  predictions = os.path.join(work, f"{name}-predictions.npz")
  log = os.path.join(work, f"{name}.log")
  load = _load()
  print(f"  {name}: load {load:.2f} ...", end=" ", flush=True)
  with open(log, "w") as f:
    code = subprocess.call(command + ["--out", out, "--predictions", predictions],
                           stdout=f, stderr=subprocess.STDOUT, env=env)
  if code:
    with open(log) as f:
      sys.exit(f"{name} failed (exit {code}); the end of {log}:\n{f.read()[-4000:]}")
  with open(out) as f:
    result = json.load(f)
  result.update(load_before=load, load_after=_load())
  return result, predictions


def _test_aucs(predictions, test_path):
  with np.load(test_path) as test, np.load(predictions) as scores:
    return {task: _auc(test[f"label_{task}"], scores[task]) for task in scores.files}


def _tf_command(args, code, paths_file, seed, steps):
  command = [sys.executable, os.path.abspath(__file__), "--worker", "tf", "--code", code,
             "--paths", paths_file, "--seed", str(seed), "--threads", str(args.threads),
             "--warmup", str(args.warmup)]
  return command + (["--steps", str(steps)] if steps else [])


def _trees(args, work):
  """{name: source dir}: this tree, and the baseline revision's files (git archive)."""
  trees = {THIS_TREE: PROJECT_DIR}
  if args.baseline:
    revision = subprocess.check_output(["git", "-C", PROJECT_DIR, "rev-parse", "--short",
                                        args.baseline], text=True).strip()
    target = os.path.join(work, f"tree-{revision}")
    if not os.path.isdir(target):
      os.makedirs(target)
      archive = subprocess.Popen(["git", "-C", PROJECT_DIR, "archive", revision],
                                 stdout=subprocess.PIPE)
      subprocess.check_call(["tar", "-x", "-C", target], stdin=archive.stdout)
      archive.wait()
    trees = {f"Trainer at {revision}": target, **trees}
  return trees


def throughput(args, paths, paths_file, config, trees, work):
  """`args.rounds` rounds of every Trainer and the PyTorch loop, one at a time."""
  from models.training import TrainingConfig

  rows = len(np.load(paths["train"])["label_ctr"])
  batch = TrainingConfig.from_config(config.proto).sized_for(rows).batch_size
  spec = torch_spec(config, paths["graph"], batch, args.steps, args.warmup, args.seed,
                    args.threads)
  spec.update(train=paths["train"], test=paths["test"])
  runs = {name: [] for name in list(trees) + ["PyTorch loop"]}
  for round_ in range(1, args.rounds + 1):
    print(f"round {round_}/{args.rounds}:", flush=True)
    for name, code in trees.items():
      label = f"r{round_}-{name.replace(' ', '_')}"
      result, predictions = _run(label, _tf_command(args, code, paths_file, args.seed,
                                                    args.steps), work)
      result["auc"] = _test_aucs(predictions, paths["test"])
      runs[name].append(result)
      print(f"{result['examples_per_second']:,.0f} examples/s", flush=True)
    label = f"r{round_}-pytorch"
    spec.update(out=os.path.join(work, f"{label}.json"),
                predictions=os.path.join(work, f"{label}-predictions.npz"))
    spec_path = os.path.join(work, f"{label}-spec.json")
    with open(spec_path, "w") as f:
      json.dump(spec, f)
    result, predictions = _run(label, [args.torch_python, TORCH_SCRIPT, spec_path], work,
                               env=dict(os.environ, OMP_WAIT_POLICY=args.omp_wait_policy))
    result["auc"] = _test_aucs(predictions, paths["test"])
    runs["PyTorch loop"].append(result)
    print(f"{result['examples_per_second']:,.0f} examples/s", flush=True)
  return runs, batch


def throughput_table(runs, steps, batch) -> str:
  """One row per configuration: median steady examples per second (wall) and per CPU
  second over the rounds, each with its ratio to the PyTorch loop's, the whole fit's
  examples/s, the parameters, test AUC per task (last round) and the load."""
  def median(results, key):
    return float(np.median([r[key] for r in results]))

  torch_runs = runs["PyTorch loop"]
  torch_rate = median(torch_runs, "examples_per_second")
  torch_cpu = median(torch_runs, "examples_per_cpu_second")
  lines = [f"{steps} steps of {batch} rows; medians over {len(torch_runs)} round(s), each "
           "round's in brackets; test AUC of the last round; load: 1-minute load average "
           "before-after each run",
           "", "| configuration | examples/s (steady) | x PyTorch loop | examples per CPU "
           "second | x PyTorch loop | Trainer's whole fit, examples/s | parameters | test AUC "
           "ctr | test AUC cvr | load |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for name, results in runs.items():
    rate, cpu = median(results, "examples_per_second"), median(results, "examples_per_cpu_second")
    fits = [r["fit_examples_per_second"] for r in results if "fit_examples_per_second" in r]
    last = results[-1]
    each = ", ".join(f"{r['examples_per_second']:,.0f}" for r in results)
    lines.append(
        f"| {name} | {rate:,.0f} ({each}) | "
        f"{rate / torch_rate:.2f} | {cpu:,.0f} | {cpu / torch_cpu:.2f} | "
        + (f"{np.median(fits):,.0f}" if fits else "-") + f" | {last['parameters']:,} | "
        f"{last['auc']['ctr']:.4f} | {last['auc']['cvr']:.4f} | "
        + ", ".join(f"{r['load_before']:.1f}-{r['load_after']:.1f}" for r in results) + " |")
  return "\n".join(lines)


def quality(args, paths, paths_file, trees, work):
  """Per training seed and tree: the Trainer's own schedule with early stopping, test AUC."""
  runs = {name: [] for name in trees}
  for seed in args.quality_seeds:
    for name, code in trees.items():
      label = f"quality-seed{seed}-{name.replace(' ', '_')}"
      result, predictions = _run(label, _tf_command(args, code, paths_file, seed, None), work)
      result.update(seed=seed, auc=_test_aucs(predictions, paths["test"]))
      runs[name].append(result)
      print(", ".join(f"{t} {a:.4f}" for t, a in result["auc"].items())
            + f" ({result['epochs']} epochs, {result['examples_per_second']:,.0f} examples/s)",
            flush=True)
  return runs


def quality_table(runs, seeds) -> str:
  """Test AUC per tree and task, mean ± sample std over the seeds; then each tree minus
  the first, paired by seed."""
  def mean_std(values):
    values = np.asarray(values)
    return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"

  tasks = list(next(iter(runs.values()))[0]["auc"])
  lines = [f"The Trainer's own schedule (early stopping on its eval split), training seeds "
           f"{', '.join(map(str, seeds))}, the same data; test AUC, mean ± sample std", "",
           "| Trainer | " + " | ".join(f"{t} AUC (per seed)" for t in tasks)
           + " | epochs | steady examples/s |", "|---" * (3 + len(tasks)) + "|"]
  for name, results in runs.items():
    cells = []
    for task in tasks:
      aucs = [r["auc"][task] for r in results]
      cells.append(f"{mean_std(aucs)} ({' / '.join(f'{a:.4f}' for a in aucs)})")
    lines.append(f"| {name} | " + " | ".join(cells) + " | "
                 + " / ".join(str(r["epochs"]) for r in results) + " | "
                 + " / ".join(f"{r['examples_per_second']:,.0f}" for r in results) + " |")
  names = list(runs)
  for name in names[1:]:
    gaps = {t: [b["auc"][t] - a["auc"][t] for a, b in zip(runs[names[0]], runs[name])]
            for t in tasks}
    lines.append(f"\n{name} minus {names[0]}: " + "; ".join(
        f"{t} {' / '.join(f'{g:+.4f}' for g in gaps[t])} (mean {mean_std(gaps[t])})"
        for t in tasks))
  return "\n".join(lines)


def _torch_python(args) -> str:
  """The interpreter of PyTorch's environment, checked; exits saying how to get one."""
  python = args.torch_python or os.environ.get("AITM_TORCH_PYTHON")
  how = ("PyTorch is not a project dependency: make an environment of its own, e.g.\n"
         "  python3 -m venv ~/torch-venv && ~/torch-venv/bin/pip install numpy torch\n"
         "and pass --torch-python ~/torch-venv/bin/python (or set AITM_TORCH_PYTHON).")
  if not python:
    sys.exit("no PyTorch environment given. " + how)
  try:
    version = subprocess.check_output(
        [python, "-c", "import numpy, torch; print(torch.__version__)"], text=True,
        stderr=subprocess.STDOUT).strip()
  except (OSError, subprocess.CalledProcessError) as error:
    output = getattr(error, "output", None) or str(error)
    sys.exit(f"{python} cannot import torch and numpy ({output.strip().splitlines()[-1]}). "
             + how)
  print(f"PyTorch {version} at {python}", flush=True)
  return python


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--torch-python", help="Python of an environment with torch and numpy "
                      "(default: $AITM_TORCH_PYTHON)")
  parser.add_argument("--train-rows", type=int, default=200_000,
                      help="rows in ExampleGen's train split (the input has 25%% more: eval)")
  parser.add_argument("--test-rows", type=int, default=50_000)
  parser.add_argument("--data-seed", type=int, default=7, help="the generated world's seed")
  parser.add_argument("--seed", type=int, default=7, help="training seed of the throughput runs")
  parser.add_argument("--steps", type=int, default=800, help="steps of each throughput run")
  parser.add_argument("--warmup", type=int, default=50,
                      help="first steps left out of examples/s (tracing, buffers filling)")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--threads", type=int, default=2,
                      help="TensorFlow's intra- and inter-op threads, torch's threads")
  parser.add_argument("--omp-wait-policy", default="PASSIVE", choices=("PASSIVE", "ACTIVE"),
                      help="OMP_WAIT_POLICY of the PyTorch loop (its OpenMP threads)")
  parser.add_argument("--baseline", help="a git revision whose Trainer runs beside this tree's")
  parser.add_argument("--quality-seeds", type=int, nargs="*", default=[],
                      help="training seeds of the quality comparison (none: skip it)")
  parser.add_argument("--work", help="where data and runs go (default: a temporary dir); "
                      "the data is reused from an earlier run with the same --work")
  # A worker: one Trainer run in this process (the comparison starts these).
  parser.add_argument("--worker", choices=("tf",), help=argparse.SUPPRESS)
  for name in ("--code", "--paths", "--out", "--predictions"):
    parser.add_argument(name, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    tf_worker(args)
    return

  torch_python = _torch_python(args)
  args.torch_python = torch_python
  from cli.tensorflow_import import setup_tensorflow
  setup_tensorflow()
  from models.config import load_config
  from pipeline import configs

  config = load_config(configs.CONFIG_PATH)
  work = args.work or tempfile.mkdtemp(prefix="aitm-vs-pytorch-")
  data = os.path.join(work, f"data-{args.train_rows}-{args.test_rows}-{args.data_seed}")
  os.makedirs(data, exist_ok=True)
  paths = dict(prepare_data(data, config, args.train_rows, args.test_rows, args.data_seed),
               config=configs.CONFIG_PATH)
  runs_dir = os.path.join(work, time.strftime("runs-%Y%m%d-%H%M%S"))
  os.makedirs(runs_dir)
  paths_file = os.path.join(runs_dir, "paths.json")
  with open(paths_file, "w") as f:
    json.dump(paths, f)
  trees = _trees(args, work)
  revision = subprocess.check_output(["git", "-C", PROJECT_DIR, "rev-parse", "--short", "HEAD"],
                                     text=True).strip()
  machine = (f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
             f"this tree at {revision}"
             + (" (uncommitted changes)" if subprocess.check_output(
                 ["git", "-C", PROJECT_DIR, "status", "--porcelain", "--", "models"],
                 text=True).strip() else ""))
  runs, batch = throughput(args, paths, paths_file, config, trees, runs_dir)
  report = [f"{machine}; {args.train_rows:,} train rows, {args.test_rows:,} test rows, "
            f"{args.threads} threads each", "", throughput_table(runs, args.steps, batch)]
  print("\n" + "\n".join(report), flush=True)
  if args.quality_seeds:
    report += ["", quality_table(quality(args, paths, paths_file, trees, runs_dir),
                                 args.quality_seeds)]
    print("\n" + report[-1], flush=True)
  with open(os.path.join(runs_dir, "trainer_vs_pytorch.md"), "w") as f:
    f.write("\n".join(report) + "\n")
  print(f"\nwritten to {runs_dir}/trainer_vs_pytorch.md")


if __name__ == "__main__":
  main()
