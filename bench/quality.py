"""Model quality against known truth: AITM, its peers, LightGBM and the oracle.

    .venv/bin/python bench/quality.py --train-rows 500000 [--seeds 7 8 9] [--repeat-share S]

Per seed, generates one synthetic world (datagen/taobao.py, which knows every
impression's true P(click) and P(purchase); by default users see their own
few ads again and again, `--repeat-share 0` for a world without repeated
pairs) and draws from it the pipeline's input (enough rows for `--train-rows`
in ExampleGen's train split, the rest its eval split) and a separate test
set: later impressions of the same world, which repeat the input's user-ad
pairs as served impressions do. Every config in the model library is trained
by the pipeline with that seed (`aitm compare` up to the Trainer: ExampleGen
and Transform run once, then a Trainer per model; early stopping watches the
eval split) and scored on the test set through its `serving_raw` signature.
LightGBM gets the same train and eval splits, read back from ExampleGen's
output, one binary model per task. Reference rows: the well-specified learner
(the generator's form, its parameters learned from the same splits), the
oracle (the true probabilities), and the oracle without the per-user and
per-ad parts (what the profile, ad and tag columns explain).

Per model and task it prints the mean and sample std over the seeds of the
test AUC, the share of the oracle's (and the well-specified learner's) lift
over 0.5, (AUC - 0.5) / (reference AUC - 0.5), and the calibration, mean
prediction / mean label; then the first config (AITM) against every other
model, paired by seed: it wins where it is ahead on every seed by more than
the spread of the gap. Written to `<work>/quality.md`, the numbers to
`<work>/quality.json` (after every seed); run again with the same `--work` and
the seeds already in `quality.json` are reused, not re-run.
"""

import os

from cli.tensorflow_import import setup_tensorflow  # noqa: E402

setup_tensorflow()  # before anything loads TensorFlow

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402


import numpy as np  # noqa: E402

# Rows per call when scoring the test set through a SavedModel.
SCORE_BATCH = 8192


def _auc(labels, scores) -> float:
  from sklearn.metrics import roc_auc_score
  return float(roc_auc_score(labels, scores))


def _write_input(path, header, cols, rows):
  """Writes the CSV, leaving an identical existing file untouched: ExampleGen's
  input fingerprint includes modification times, so a rerun with the same
  --work and seed reuses the cached ExampleGen, Transform and Trainers."""
  import csv
  import filecmp
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fresh = path + ".new"
  with open(fresh, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(zip(*(cols[c][rows] for c in header)))
  if os.path.exists(path) and filecmp.cmp(fresh, path, shallow=False):
    os.remove(fresh)
  else:
    os.replace(fresh, path)


def _score_saved_model(model_dir, config, test_cols, n):
  """Test rows -> {task: probabilities} through the model's `serving_raw` signature."""
  import tensorflow as tf
  from models.features import ColumnType

  serve = tf.saved_model.load(model_dir).signatures["serving_raw"]
  inputs = serve.structured_input_signature[1]
  types = config.column_types
  out = {t.name: [] for t in config.tasks}
  for start in range(0, n, SCORE_BATCH):
    rows = slice(start, min(n, start + SCORE_BATCH))
    feed = {}
    for name in inputs:
      values = test_cols[name][rows]
      if types[name] == ColumnType.STRING:
        feed[name] = tf.constant(values.astype(str))
      elif types[name] == ColumnType.INT:
        feed[name] = tf.constant(values.astype(np.int64))
      else:
        feed[name] = tf.constant(values.astype(np.float32))
    for task, p in serve(**feed).items():
      out[task].append(p.numpy())
  return {task: np.concatenate(parts) for task, parts in out.items()}


def _latest_trainer_model(pipeline_root) -> str:
  """The SavedModel directory of the Trainer (cached or not) of the pipeline root's
  latest run, as ML Metadata recorded it."""
  from pipeline.configs import metadata_path
  from report.metadata import read_run
  model = read_run(metadata_path(pipeline_root)).output("Trainer", "Model")
  return os.path.join(model.uri, "Format-Serving")


def _read_split(examples_uri, split, columns, kinds):
  """ExampleGen's output split -> {column: np.ndarray}; a missing value is b'' (text),
  -1 (int) or NaN (float)."""
  import tensorflow as tf

  files = glob.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz"))
  cols = {c: [] for c in columns}
  dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(16384)
  for batch in dataset:
    example = tf.io.parse_example(batch, {c: tf.io.VarLenFeature(
        tf.int64 if kinds[c] == "int" else tf.float32 if kinds[c] == "float" else tf.string)
        for c in columns})
    for c in columns:
      dense = tf.sparse.to_dense(example[c], default_value=(
          -1 if kinds[c] == "int" else np.nan if kinds[c] == "float" else b""))[:, 0]
      cols[c].append(dense.numpy())
  return {c: np.concatenate(v) for c, v in cols.items()}


def _lightgbm(train, evaluation, test, features, kinds, labels, seed):
  """One LightGBM binary model per label; each string column is a categorical
  (a tag list as one category, plus its length), early stopping on eval AUC."""
  import lightgbm as lgb
  import pandas as pd

  def frame(cols, categories=None):
    df = pd.DataFrame({c: cols[c] for c in features})
    for c in features:
      if kinds[c] != "text":
        df[c] = pd.to_numeric(df[c])
        continue
      values = pd.Series(cols[c]).map(lambda v: v.decode() if isinstance(v, bytes) else str(v))
      if "tag" in c:
        df[c + "_len"] = values.map(lambda v: 0 if not v else v.count("|") + 1)
      df[c] = pd.Categorical(values, categories=None if categories is None else categories[c])
    return df

  x_train = frame(train)
  categories = {c: x_train[c].cat.categories for c in features
                if kinds[c] == "text"}
  x_eval, x_test = frame(evaluation, categories), frame(test, categories)
  out = {}
  for task, label in labels.items():
    model = lgb.LGBMClassifier(n_estimators=2000, learning_rate=0.05, num_leaves=63,
                               min_child_samples=50, cat_smooth=20, subsample=0.8,
                               subsample_freq=1, colsample_bytree=0.8, random_state=seed,
                               verbose=-1)
    model.fit(x_train, train[label].astype(int), eval_set=[(x_eval, evaluation[label].astype(int))],
              eval_metric="auc", callbacks=[lgb.early_stopping(50, verbose=False)])
    out[task] = model.predict_proba(x_test)[:, 1]
    print(f"  [LightGBM] {task}: {model.best_iteration_} trees", flush=True)
  return out


# The well-specified learner's settings: the best of nine (embedding size 4 to
# 32; L2 on the id embeddings 1e-6 to 1e-4) on 500k train rows, seed 7, judged
# on the test rows, which flatters it a little.
MF_DIM = 16
MF_ID_L2 = 1e-5


def _well_specified(train, evaluation, test, seed):
  """A learner given the generator's functional form, learning only its parameters
  from the train rows: a logistic factorization machine per step whose user side
  (cms_segid + age_level + final_gender_code + user_id vectors) meets the ad side
  (cate_id + adgroup_id vectors) in a dot product, plus a bias per column value,
  the two tag matches and spending power x price level; P(buy) = P(click) x
  P(buy | click). What learning the per-user and per-ad parts from these rows can
  reach, where the oracle rows need the true parameters."""
  import tensorflow as tf

  columns = ["pid", "adgroup_id", "cate_id", "customer", "brand", "user_id", "cms_segid",
             "cms_group_id", "age_level", "final_gender_code", "pvalue_level",
             "shopping_level", "occupation", "new_user_class_level", "price"]
  tag_lists = {"cate_id": "tag_category_list", "brand": "tag_brand_list"}

  def as_text(cols):  # ExampleGen's read-back gives bytes; decoded once per split
    return {c: np.array([v.decode() if isinstance(v, bytes) else str(v) for v in cols[c]])
            for c in columns + list(tag_lists.values())}

  train_text = as_text(train)
  vocab = {c: {v: i + 1 for i, v in enumerate(np.unique(train_text[c]))} for c in columns}
  rows = {c: len(vocab[c]) + 1 for c in columns}   # 0: a value train never saw
  rows["pvalue_x_price"] = rows["pvalue_level"] * rows["price"]

  def inputs(text):
    x = {c: np.array([vocab[c].get(v, 0) for v in text[c]], np.int64) for c in columns}
    x["pvalue_x_price"] = x["pvalue_level"] * rows["price"] + x["price"]
    x["tag_matches"] = np.array(
        [[a in tags.split("|") for a, tags in zip(text[ad], text[tag])]
         for ad, tag in tag_lists.items()], np.float32).T
    return x

  x_train, x_eval, x_test = (inputs(train_text), inputs(as_text(evaluation)),
                             inputs(as_text(test)))
  tf.keras.utils.set_random_seed(seed)
  layer_in = {c: tf.keras.Input(shape=(2,) if c == "tag_matches" else (),
                                dtype=tf.float32 if c == "tag_matches" else tf.int64, name=c)
              for c in x_train}

  def table(c, dim):
    reg = tf.keras.regularizers.l2(MF_ID_L2) if c in ("user_id", "adgroup_id") else None
    return tf.keras.layers.Embedding(rows[c], dim, embeddings_regularizer=reg)(layer_in[c])

  def logit():
    user = tf.add_n([table(c, MF_DIM) for c in ("cms_segid", "age_level",
                                                 "final_gender_code", "user_id")])
    ad = tf.add_n([table(c, MF_DIM) for c in ("cate_id", "adgroup_id")])
    terms = [tf.reduce_sum(user * ad, axis=1, keepdims=True), layer_in["tag_matches"]]
    terms += [table(c, 1) for c in rows]
    return tf.keras.layers.Dense(1)(tf.concat(terms, axis=1))

  p_click = tf.sigmoid(logit())
  model = tf.keras.Model(layer_in, {"clk": p_click, "buy": p_click * tf.sigmoid(logit())})
  model.compile(tf.keras.optimizers.Adam(0.005), loss="binary_crossentropy")
  labels = {label: np.asarray(train[label], np.float32) for label in ("clk", "buy")}
  best, best_weights, stale = -1.0, None, 0
  for epoch in range(30):
    model.fit(x_train, labels, batch_size=2048, epochs=1, verbose=0, shuffle=True)
    scored = model.predict(x_eval, batch_size=16384, verbose=0)
    auc = np.mean([_auc(evaluation[label], scored[label][:, 0]) for label in labels])
    print(f"  [well-specified] epoch {epoch + 1}: mean eval AUC {auc:.4f}", flush=True)
    if auc > best:
      best, best_weights, stale = auc, model.get_weights(), 0
    else:
      stale += 1
      if stale == 2:
        break
  model.set_weights(best_weights)
  return {label: scored[:, 0] for label, scored in
          model.predict(x_test, batch_size=16384, verbose=0).items()}


def _scores(test, predictions, tasks):
  """{task: {"auc": ..., "calibration": mean prediction / mean label}} on the test rows."""
  out = {}
  for task, label in tasks.items():
    labels = np.asarray(test[label], np.float64)
    out[task] = {"auc": _auc(labels, predictions[task]),
                 "calibration": float(np.mean(predictions[task]) / labels.mean())}
  return out


def run_seed(args, seed, configs, work):
  """One world and one training seed: every model's test scores, and per pipeline model
  the Trainer's own eval AUC (on ExampleGen's eval split, its best epoch)."""
  from datagen import taobao
  from models.features import ColumnType
  from pipeline import configs as pipeline_configs
  from report.compare import compare

  first = configs[0]
  tasks = {t.name: t.label for t in first.tasks}
  # Column -> "int" | "float" | "text": how ExampleGen wrote it, how LightGBM reads it.
  kinds = {name: "int" if kind == ColumnType.INT else "float" if kind == ColumnType.FLOAT
           else "text" for name, kind in first.column_types.items()}
  parts = pipeline_configs.TRAIN_BUCKETS + pipeline_configs.EVAL_BUCKETS
  input_rows = args.train_rows * parts // pipeline_configs.TRAIN_BUCKETS
  repeats = taobao.Repeats(share=args.repeat_share)

  start = time.time()
  cols, truth = taobao.generate(input_rows + args.test_rows, seed, repeats=repeats)
  cols = {c: np.asarray(v) for c, v in cols.items()}
  data_root = os.path.join(work, "data")
  _write_input(os.path.join(data_root, "data.csv"), taobao.columns(), cols,
               slice(0, input_rows))
  test = {c: v[input_rows:] for c, v in cols.items()}
  test_truth = {label: p[input_rows:] for label, p in truth.items()}
  _, shared_truth = taobao.generate(input_rows + args.test_rows, seed, personal_parts=False,
                                    repeats=repeats)
  seen_pairs = set(zip(cols["user_id"][:input_rows], cols["adgroup_id"][:input_rows]))
  repeated = np.mean([pair in seen_pairs for pair in zip(test["user_id"], test["adgroup_id"])])
  print(f"seed {seed}: generated {input_rows:,} pipeline rows + {args.test_rows:,} test rows "
        f"in {time.time() - start:.0f}s -> {work}; {repeated:.0%} of the test rows repeat a "
        f"user-ad pair of the pipeline's rows", flush=True)

  start = time.time()
  pipeline_root = os.path.join(work, "pipeline")
  predictions, trained = {}, {}
  for config in configs:  # one at a time, to score each model as soon as it exists
    # No Evaluator: the models are scored on the test rows below (at 125k eval
    # rows TFMA's 21 slices cost more than training on a busy 2-core machine).
    score, = compare([config], data_root=data_root, pipeline_root=pipeline_root,
                     evaluate=False, training={"seed": seed})
    trained[score.name] = {"eval_auc": score.auc, "train_seconds": score.train_seconds,
                           "epochs": score.epochs, "parameters": score.parameters}
    predictions[score.name] = _score_saved_model(
        _latest_trainer_model(pipeline_root), config, test, args.test_rows)
  pipeline_seconds = time.time() - start

  if not (args.no_lightgbm and args.no_well_specified):
    # The same train and eval splits as the pipeline's, read back from ExampleGen.
    examples_uri = sorted(glob.glob(os.path.join(pipeline_root, "FileBasedExampleGen",
                                                 "examples", "*")))[-1]
    features = [c.name for c in first.columns if c.name not in tasks.values()]
    columns = features + list(tasks.values())
    train = _read_split(examples_uri, "train", columns, kinds)
    evaluation = _read_split(examples_uri, "eval", columns, kinds)
  if not args.no_lightgbm:
    start = time.time()
    predictions["LightGBM"] = _lightgbm(train, evaluation, test, features, kinds, tasks, seed)
    trained["LightGBM"] = {"train_seconds": time.time() - start}
  if not args.no_well_specified:
    start = time.time()
    scored = _well_specified(train, evaluation, test, seed)
    predictions[WELL_SPECIFIED] = {task: scored[label] for task, label in tasks.items()}
    trained[WELL_SPECIFIED] = {"train_seconds": time.time() - start}
  predictions[SHARED_ORACLE] = {task: shared_truth[label][input_rows:]
                                for task, label in tasks.items()}
  predictions[ORACLE] = {task: test_truth[label] for task, label in tasks.items()}
  return {"seed": seed, "pipeline_seconds": pipeline_seconds, "repeated_test_share": repeated,
          "scores": {name: _scores(test, scored, tasks) for name, scored in predictions.items()},
          "trained": trained,
          "positive_rates": {task: float(np.mean(test[label])) for task, label in tasks.items()}}


WELL_SPECIFIED = "well-specified learner (the generator's form)"
SHARED_ORACLE = "oracle without per-user/per-ad parts"
ORACLE = "oracle (true probabilities)"
REFERENCES = ("LightGBM", WELL_SPECIFIED, SHARED_ORACLE, ORACLE)


def _mean_std(values):
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def summarize(runs, tasks, candidate):
  """Markdown: per model the mean and spread (sample std) over the seeds of AUC, lift
  share and calibration; then `candidate` against every other model, paired by seed."""
  names = list(runs[0]["scores"])
  seeds = [r["seed"] for r in runs]

  def values(name, task, what):
    return [r["scores"][name][task][what] for r in runs]

  def lift(name, task, reference):
    return [(a - 0.5) / (o - 0.5) for a, o in zip(values(name, task, "auc"),
                                                    values(reference, task, "auc"))]

  has_ws = WELL_SPECIFIED in names
  head = ["model"]
  for task in tasks:
    head += [f"{task} AUC", f"{task} lift (oracle)"] + (
        [f"{task} lift (well-spec.)"] if has_ws else []) + [f"{task} calibration"]
  head.append("train s")
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for name in names:
    cells = [f"**{name}**" if name == candidate else name]
    for task in tasks:
      mean, std = _mean_std(values(name, task, "auc"))
      cells.append(f"{mean:.4f} ± {std:.4f}")
      cells.append(f"{np.mean(lift(name, task, ORACLE)):.1%}")
      if has_ws:
        cells.append(f"{np.mean(lift(name, task, WELL_SPECIFIED)):.1%}")
      cal_mean, cal_std = _mean_std(values(name, task, "calibration"))
      cells.append(f"{cal_mean:.3f} ± {cal_std:.3f}")
    seconds = [r["trained"].get(name, {}).get("train_seconds") for r in runs]
    cells.append(f"{np.mean(seconds):.0f}" if all(s is not None for s in seconds) else "")
    lines.append("| " + " | ".join(cells) + " |")

  others = [n for n in names if n not in (candidate, WELL_SPECIFIED, SHARED_ORACLE, ORACLE)]
  head = [f"{candidate} minus"] + [f"{task} AUC, per seed {'/'.join(map(str, seeds))}" for task in tasks]
  head += [f"{task}: mean ± spread" for task in tasks] + ["wins on both"]
  diffs = ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  verdicts = {}
  for name in others:
    cells, wins = [name], []
    per_task = {}
    for task in tasks:
      gap = np.subtract(values(candidate, task, "auc"), values(name, task, "auc"))
      per_task[task] = gap
      cells.append(" / ".join(f"{g:+.4f}" for g in gap))
    for task in tasks:
      gap = per_task[task]
      mean, spread = _mean_std(gap)
      # A win: ahead on every seed, by more than the seeds' spread of the gap.
      wins.append(bool(np.all(gap > 0) and mean > spread))
      cells.append(f"{mean:+.4f} ± {spread:.4f}")
    verdicts[name] = all(wins)
    cells.append("yes" if verdicts[name] else "no")
    diffs.append("| " + " | ".join(cells) + " |")
  agree = ["", "| eval split vs test rows (pipeline models) | " + " | ".join(
      f"{task}: eval AUC - test AUC per seed" for task in tasks) + " |",
             "|" + "---|" * (1 + len(tasks))]
  for name in names:
    if "eval_auc" not in runs[0]["trained"].get(name, {}):
      continue
    cells = [name]
    for task in tasks:
      gaps = [r["trained"][name]["eval_auc"][task] - r["scores"][name][task]["auc"]
              for r in runs]
      cells.append(" / ".join(f"{g:+.4f}" for g in gaps))
    agree.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines + diffs + agree), verdicts


def _finished_runs(work, args, configs):
  """{seed: run} of an earlier bench in `work` with the same rows, repeats and models."""
  try:
    with open(os.path.join(work, "quality.json")) as f:
      earlier = json.load(f)
  except (OSError, ValueError):
    return {}
  names = {c.stem for c in configs}
  same = (earlier.get("train_rows"), earlier.get("test_rows"), earlier.get("repeat_share")) == (
      args.train_rows, args.test_rows, args.repeat_share)
  return {r["seed"]: r for r in earlier.get("runs", [])
          if same and names <= set(r["trained"])}


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--train-rows", type=int, default=500_000,
                      help="rows in ExampleGen's train split (the input has 25%% more: eval)")
  parser.add_argument("--test-rows", type=int, default=100_000)
  parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9],
                      help="one world and one training run per seed (default 7 8 9)")
  parser.add_argument("--repeat-share", type=float, default=None,
                      help="share of a user's impressions on the user's own few ads "
                      "(datagen.taobao.Repeats; default: the generator's; 0: no repeats)")
  parser.add_argument("--configs", nargs="+", help="EasyRec configs (default: the model library)")
  parser.add_argument("--edit-config-json", metavar="JSON",
                      help="EasyRec's --edit_config_json, applied to every config, e.g. "
                      "'{\"train_config.num_steps\": 2000}' for EasyRec's samples")
  parser.add_argument("--work", help="working directory (default: a new temporary one)")
  parser.add_argument("--no-lightgbm", action="store_true")
  parser.add_argument("--no-well-specified", action="store_true",
                      help="leave out the learner given the generator's form")
  args = parser.parse_args()

  from datagen import taobao
  from models.config import load_config
  from pipeline import configs as pipeline_configs

  if args.repeat_share is None:
    args.repeat_share = taobao.Repeats().share
  work = args.work or tempfile.mkdtemp(prefix="aitm-quality-")
  from models.config.edit import parse_edit_json
  edits = parse_edit_json(args.edit_config_json) if args.edit_config_json else None
  configs = [load_config(p, edits) for p in (args.configs or pipeline_configs.PEER_CONFIGS)]
  tasks = [t.name for t in configs[0].tasks]
  # The model the others are measured against: the first config's (AITM's by default).
  candidate = configs[0].stem
  runs = []
  done = _finished_runs(work, args, configs)
  for seed in args.seeds:
    if seed in done:  # an interrupted bench picks up where it stopped
      print(f"seed {seed}: reusing {work}/quality.json", flush=True)
      runs.append(done[seed])
    else:
      runs.append(run_seed(args, seed, configs, os.path.join(work, f"seed{seed}")))
    with open(os.path.join(work, "quality.json"), "w") as f:
      json.dump({"train_rows": args.train_rows, "test_rows": args.test_rows,
                 "repeat_share": args.repeat_share, "runs": runs}, f, indent=2)
    table, _ = summarize(runs, tasks, candidate)
    print(f"\nafter seed(s) {', '.join(str(r['seed']) for r in runs)}:\n{table}", flush=True)

  table, verdicts = summarize(runs, tasks, candidate)
  rates = ", ".join(f"{t} {np.mean([r['positive_rates'][t] for r in runs]):.2%}" for t in tasks)
  machine = (f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
             f"Python {platform.python_version()}")
  minutes = sum(r["pipeline_seconds"] for r in runs) / 60
  report = (f"{args.train_rows:,} train rows, {args.test_rows:,} test rows per seed (positive "
            f"rates: {rates}; {np.mean([r['repeated_test_share'] for r in runs]):.0%} of the "
            f"test rows repeat a user-ad pair of the pipeline's rows), repeat share "
            f"{args.repeat_share:g}, seeds {', '.join(map(str, args.seeds))}; AUC and "
            f"calibration (mean prediction / mean label) on the test rows, mean ± sample std "
            f"over the seeds; pipelines {minutes:.0f} min on {machine}\n\n" + table
            + f"\n\n{candidate} beats " + (", ".join(n for n, won in verdicts.items() if won)
                                             or "none") + " on both tasks")
  print("\n" + report)
  with open(os.path.join(work, "quality.md"), "w") as f:
    f.write(report + "\n")


if __name__ == "__main__":
  main()
