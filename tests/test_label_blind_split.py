"""ExampleGen's train/eval split never reads the labels (components/label_blind_split.py).

On generated logs that repeat impressions (the same user shown the same ad, one
row each, the copies differing in their labels only): the CSV ExampleGen's
executor puts copies in both splits, gives both splits the same label rates,
and a model that learns repeated pairs scores the eval split as it scores new
impressions of the same source. TFX's own hash of whole examples, on the same
rows, makes that model look worse than chance.
"""

import bisect
import collections
import glob
import hashlib
import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from components.label_blind_split import (KeyedExample, Split, partition, span_of,
                                          spans_to_read)
from datagen import taobao
from models.config import load_config
from models.evaluation_checks import rate_gap
from pipeline import configs
from pipeline.local_runner import run_example_gen_executor
from pipeline.pipeline import Extent, create_pipeline

CONFIG = load_config(configs.CONFIG_PATH)
# Enough rows for a few thousand clicks in the eval split and in the held-out rows.
INPUT_ROWS, HELD_OUT_ROWS = 200_000, 60_000
SEED = 5
KEY = ("user_id", "adgroup_id", "pid")


# --- running the executor -----------------------------------------------------

def run_example_gen(data_root, output_dir, split=Split()):
  """The pipeline's CSV ExampleGen, run through its executor's Do() on DirectRunner;
  {split name: {column: values}} read back."""
  pipeline = create_pipeline(config=CONFIG, pipeline_root=str(output_dir) + "-root",
                             data_root=str(data_root), serving_dir="/unused",
                             extent=Extent.TRANSFORM, split=split)
  _, examples = run_example_gen_executor(pipeline.components[0], str(output_dir))
  return {name: read_split(examples.uri, name) for name in ("train", "eval")}


def read_split(uri, split):
  files = glob.glob(os.path.join(uri, f"Split-{split}", "*.gz"))
  spec = {name: tf.io.FixedLenFeature([], tf.string, default_value="") for name in KEY}
  spec.update({label: tf.io.FixedLenFeature([], tf.int64) for label in ("clk", "buy")})
  columns = collections.defaultdict(list)
  for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(65536):
    for name, values in tf.io.parse_example(batch, spec).items():
      columns[name].append(values.numpy())
  return {name: np.concatenate(parts) for name, parts in columns.items()}


def pair_memorizer(train, prior=20.0):
  """A model that learns repeated impressions: each (user, ad, placement) seen in train
  scores its click rate, shrunk towards the ad's and the user's (an estimate a trained
  model's id embeddings approximate)."""
  overall = train["clk"].mean()

  def rates(keys, weight, prior_of):
    clicks, shown = collections.Counter(), collections.Counter()
    for key, clk in zip(keys, train["clk"]):
      clicks[key] += clk
      shown[key] += 1
    return {k: (clicks[k] + weight * prior_of(k)) / (shown[k] + weight) for k in shown}

  ad = rates(train["adgroup_id"], prior, lambda _: overall)
  user = rates(train["user_id"], prior, lambda _: overall)
  triple = list(zip(*(train[c] for c in KEY)))
  pair = rates(triple, prior, lambda k: (ad[k[1]] + user[k[0]]) / 2)

  def score(rows):
    return np.array([pair.get(k, (ad.get(k[1], overall) + user.get(k[0], overall)) / 2)
                     for k in zip(*(rows[c] for c in KEY))])
  return score


@pytest.fixture(scope="module")
def repeated_logs(tmp_path_factory):
  """Generated impressions with repeated user-ad pairs (the generator's default): the
  pipeline's input, and later impressions of the same world, held out."""
  cols, _ = taobao.generate(INPUT_ROWS + HELD_OUT_ROWS, seed=SEED)
  cols = {c: np.asarray(v) for c, v in cols.items()}
  data = tmp_path_factory.mktemp("repeated") / "data"
  data.mkdir()
  header = taobao.columns()
  import csv
  with open(data / "data.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(zip(*(cols[c][:INPUT_ROWS] for c in header)))
  held_out = {c: np.array([v.encode() for v in cols[c][INPUT_ROWS:]]) for c in KEY}
  held_out.update({label: cols[label][INPUT_ROWS:].astype(int) for label in ("clk", "buy")})
  splits = run_example_gen(data, tmp_path_factory.mktemp("split"))
  return cols, data, splits, held_out


# --- the split on repeated impressions -----------------------------------------

def test_every_row_lands_in_one_split_four_to_one(repeated_logs):
  _, _, splits, _ = repeated_logs
  train, evaluation = len(splits["train"]["clk"]), len(splits["eval"]["clk"])
  assert train + evaluation == INPUT_ROWS
  assert abs(evaluation / INPUT_ROWS - 0.2) < 0.005


def test_copies_of_an_impression_fall_into_both_splits(repeated_logs):
  _, _, splits, _ = repeated_logs
  where = collections.defaultdict(set)
  for name, rows in splits.items():
    for key in zip(*(rows[c] for c in KEY)):
      where[key].add(name)
  sizes = collections.Counter()
  for name, rows in splits.items():
    sizes.update(zip(*(rows[c] for c in KEY)))
  big = [key for key, n in sizes.items() if n >= 8]
  assert len(big) > 300   # the generator repeats impressions
  assert np.mean([len(where[key]) == 2 for key in big]) > 0.8


def test_both_splits_have_the_same_label_rates(repeated_logs):
  _, _, splits, _ = repeated_logs
  for label in ("clk", "buy"):
    train, evaluation = splits["train"][label], splits["eval"][label]
    gap = rate_gap((train.mean(), len(train)), (evaluation.mean(), len(evaluation)))
    assert gap < 4, (label, train.mean(), evaluation.mean(), gap)


def test_eval_auc_agrees_with_held_out_impressions(repeated_logs):
  """A model of repeated pairs scores the eval split as it scores new impressions of the
  same source; under TFX's hash of whole examples, labels included, it looks worse
  than chance on eval, though it ranks new impressions as well as before."""
  _, _, splits, held_out = repeated_logs
  assert splits["eval"]["clk"].sum() > 2000 and held_out["clk"].sum() > 2000
  score = pair_memorizer(splits["train"])
  eval_auc = roc_auc_score(splits["eval"]["clk"], score(splits["eval"]))
  held_out_auc = roc_auc_score(held_out["clk"], score(held_out))
  assert held_out_auc > 0.65
  assert abs(eval_auc - held_out_auc) < 0.02, (eval_auc, held_out_auc)

  # The same rows split as TFX's ExampleGen would (sha256 of the serialized example
  # modulo 5, the first 4 buckets train): copies with different labels part ways.
  rows = {c: np.concatenate([splits["train"][c], splits["eval"][c]]) for c in splits["eval"]}
  keys = [b"|".join([*(rows[c][i] for c in KEY), str(rows["clk"][i]).encode(),
                     str(rows["buy"][i]).encode()]) for i in range(len(rows["clk"]))]
  in_eval = np.array([bisect.bisect([4, 5], int(hashlib.sha256(k).hexdigest(), 16) % 5) == 1
                      for k in keys])
  whole = {name: {c: v[mask] for c, v in rows.items()}
           for name, mask in (("train", ~in_eval), ("eval", in_eval))}
  leaky = pair_memorizer(whole["train"])
  leaky_eval = roc_auc_score(whole["eval"]["clk"], leaky(whole["eval"]))
  leaky_held_out = roc_auc_score(held_out["clk"], leaky(held_out))
  assert leaky_eval < leaky_held_out - 0.05, (leaky_eval, leaky_held_out)


@pytest.fixture(scope="module")
def small_logs(tmp_path_factory):
  """20k generated impressions, for what needs no statistics."""
  data = tmp_path_factory.mktemp("small") / "data"
  taobao.write_csv(str(data), 20_000, seed=SEED)
  return data, run_example_gen(data, tmp_path_factory.mktemp("small_split"))


def test_the_split_is_the_same_every_run(small_logs, tmp_path):
  data, splits = small_logs
  again = run_example_gen(data, tmp_path / "again")
  for name in ("train", "eval"):
    rows = [sorted(zip(*(run[name][c] for c in KEY + ("clk", "buy")))) for run in (again, splits)]
    assert rows[0] == rows[1]


def test_split_by_user_keeps_each_user_on_one_side(small_logs, tmp_path):
  data, _ = small_logs
  splits = run_example_gen(data, tmp_path / "by_user", Split.parse("columns=user_id"))
  train_users, eval_users = set(splits["train"]["user_id"]), set(splits["eval"]["user_id"])
  assert train_users and eval_users and not train_users & eval_users
  assert len(splits["train"]["clk"]) + len(splits["eval"]["clk"]) == 20_000
  assert 0.1 < len(eval_users) / len(train_users | eval_users) < 0.3


# --- by span --------------------------------------------------------------------

@pytest.fixture(scope="module")
def span_data(tmp_path_factory):
  data = tmp_path_factory.mktemp("spans")
  taobao.write_spans(str(data), 300, 3, seed=2)
  return data


def test_split_by_span_evaluates_the_newest_span(span_data, tmp_path):
  splits = run_example_gen(span_data, tmp_path / "newest", Split("span"))
  assert len(splits["eval"]["clk"]) == 300 and len(splits["train"]["clk"]) == 600
  third = read_csv_column(span_data / "span-3" / "data.csv", "user_id")
  assert sorted(splits["eval"]["user_id"]) == sorted(third)


def test_split_by_span_reads_the_named_span_and_the_window_before_it(span_data, tmp_path):
  splits = run_example_gen(span_data, tmp_path / "second", Split("span", span=2))
  assert len(splits["eval"]["clk"]) == 300 and len(splits["train"]["clk"]) == 300
  assert sorted(splits["train"]["user_id"]) == sorted(
      read_csv_column(span_data / "span-1" / "data.csv", "user_id"))
  one = run_example_gen(span_data, tmp_path / "window", Split("span", train_spans=1))
  assert sorted(one["train"]["user_id"]) == sorted(
      read_csv_column(span_data / "span-2" / "data.csv", "user_id"))


def test_split_by_span_needs_an_earlier_span(span_data, tmp_path):
  with pytest.raises(ValueError, match="there is none: add an earlier span"):
    run_example_gen(span_data, tmp_path / "first", Split("span", span=1))


def read_csv_column(path, column):
  import csv
  with open(path) as f:
    return [row[column].encode() for row in csv.DictReader(f)]


# --- the pieces -------------------------------------------------------------------

def _keyed(row_key, clk, user="u1", span=None):
  example = tf.train.Example()
  example.features.feature["clk"].int64_list.value.append(clk)
  example.features.feature["user_id"].bytes_list.value.append(user.encode())
  return KeyedExample(row_key, span, example)


def test_no_split_depends_on_the_labels():
  names = ["train", "eval"]
  for split in (Split(), Split.parse("columns=user_id")):
    for n in range(200):
      key = f"data.csv@{105 * n}".encode()
      assert (partition(_keyed(key, 0, f"u{n}"), 2, [4, 5], split, names)
              == partition(_keyed(key, 1, f"u{n}"), 2, [4, 5], split, names))
  by_user = Split.parse("columns=user_id")
  sides = {partition(_keyed(f"r{n}".encode(), n % 2, "u7"), 2, [4, 5], by_user, names)
           for n in range(50)}
  assert len(sides) == 1
  rows = [partition(_keyed(f"data.csv@{105 * n}".encode(), 0), 2, [4, 5], Split(), names)
          for n in range(5000)]
  assert abs(np.mean(rows) - 0.2) < 0.02
  assert partition(_keyed(b"x", 0, span=3), 2, [4, 5], Split("span"), names, 3) == 1
  assert partition(_keyed(b"x", 1, span=2), 2, [4, 5], Split("span"), names, 3) == 0


def test_split_settings_are_parsed_and_checked():
  assert Split.parse("row") == Split()
  assert Split.parse("columns=user_id, adgroup_id").columns == ("user_id", "adgroup_id")
  assert Split.parse("span").kind == "span"
  for bad in ("rows", "columns=", "span=3", "user_id"):
    with pytest.raises(ValueError):
      Split.parse(bad)
  with pytest.raises(ValueError, match="never depend on the labels"):
    Split.parse("columns=clk").check_columns(["clk", "user_id"], ["clk"], "c.config")
  with pytest.raises(ValueError, match="'uid' is not a column"):
    Split.parse("columns=uid").check_columns(["clk", "user_id"], ["clk"], "c.config")
  assert Split.from_json(Split("span", span=4, train_spans=2).to_json()) == Split(
      "span", span=4, train_spans=2)
  with pytest.raises(ValueError, match="split by span"):
    Split("row", span=3)


def test_spans_are_read_from_their_directories():
  assert span_of("span-12/data.csv") == 12 and span_of("data.csv") is None
  files = ["span-1/a.csv", "span-2/a.csv", "span-3/a.csv", "span-3/b.csv"]
  assert spans_to_read(files, Split("span")) == (3, [1, 2])
  assert spans_to_read(files, Split("span", train_spans=1)) == (3, [2])
  assert spans_to_read(files, Split("span", span=2)) == (2, [1])
  with pytest.raises(ValueError, match="span 5 is not among"):
    spans_to_read(files, Split("span", span=5))
  with pytest.raises(ValueError, match="span-N/ directories"):
    spans_to_read(["data.csv"], Split("span"))
