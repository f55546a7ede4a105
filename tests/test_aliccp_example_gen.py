"""The Ali-CCP ExampleGen on small raw files written here in Ali-CCP's own format
(\\x01 \\x02 \\x03 separators): every sample's tf.Example exactly (own + common
features, labels, ids joined by '|', unknown fields dropped), buy-without-click
samples dropped and counted, the 4:1 split, bad input named by file and line,
and the Ali-CCP config against the columns the ExampleGen writes."""

import glob
import json
import os
import random
import re

import pytest
import tensorflow as tf

from components.aliccp_example_gen import (PAPER_FIELDS, aliccp_example_gen, check_config,
                                           emitted_columns, executor, raw_format)
from components.csv_example_gen.csv_parser import BadInputError
from components.label_blind_split import Split
from models.config import ConfigError, load_config, parse_config
from pipeline import configs
from pipeline.local_runner import run_example_gen_executor

ALICCP_CONFIG = os.path.join(configs.PROJECT_DIR, "configs", "aitm_aliccp.config")
ALICCP_SCHEMA = os.path.join(configs.PROJECT_DIR, "schemas", "aliccp_raw.pbtxt")
COLUMN_OF = dict(PAPER_FIELDS)
# Small ranges, so most lines straddle or start at a range boundary somewhere.
TEST_CHUNK_BYTES = 97


# --- writing raw files ------------------------------------------------------------

def _features(items):
  """[(field, id, value)] -> (feature_count, features) as Ali-CCP writes them."""
  return str(len(items)), "\x01".join(f"{f}\x02{i}\x03{v}" for f, i, v in items)


def _skeleton_line(sample_id, click, buy, index, items):
  return ",".join([sample_id, str(click), str(buy), index, *_features(items)])


def _common_line(index, items):
  return ",".join([index, *_features(items)])


def _ids(items):
  """The kept ids by column, in order, each once: what a column must hold."""
  by_column = {}
  for field, feature_id, _ in items:
    if field in COLUMN_OF:
      ids = by_column.setdefault(COLUMN_OF[field], [])
      if feature_id not in ids:
        ids.append(feature_id)
  return by_column


def _write(directory, name, lines, newline="\n"):
  with open(os.path.join(directory, name), "w", newline="") as f:
    f.write("".join(line + newline for line in lines))


def write_pair(directory, suffix, rng, samples, dropped, newline="\n"):
  """One sample_skeleton_<suffix>.csv + common_features_<suffix>.csv pair.

  10 common indexes shared by the samples, plus one no sample uses; `dropped`
  samples with buy=1 and click=0. Returns the expected examples by item id
  (which is unique) and the item ids of the dropped samples."""
  # The same index strings in every pair: the join must stay within a pair.
  indexes = [f"{n * 7919:016x}" for n in range(11)]
  common_items = {}
  for n, index in enumerate(indexes):
    items = [("101", f"u_{suffix}_{n}", "1.0"), ("121", str(n % 4), "1.0"),
             ("122", str(n % 3), "1.0"), ("124", str(n % 2 + 1), "1.0"),
             ("125", str(n % 6), "1.0"), ("126", "1", "1.0"), ("127", "2", "1.0"),
             ("128", "1", "1.0"), ("129", str(n % 5), "1.0")]
    # The users' histories: long, and not kept.
    items += [("109_14", f"c{k}", str(k + 1)) for k in range(6)]
    items += [("150_14", f"t{k}", "2.0") for k in range(3)]
    if n == 0:
      items.append(("853", "common_853", "1.0"))  # merged after the sample's own 853 ids
    if n == 4:
      del items[5]  # no 126 for this user: a missing value
    common_items[index] = items
  expected, dropped_items, skeleton = {}, [], []
  # The last samples, every 10th: none of the ones the tests look at by name.
  buy_without_click = set(range(samples - 1, samples - 1 - 10 * dropped, -10))
  for n in range(samples):
    sample_id, item = f"{suffix}-{n}", f"i_{suffix}_{n}"
    index = indexes[n % 10]
    items = [("205", item, "1.0"), ("206", f"cat{n % 13}", "1.0"),
             ("207", f"shop{n % 29}", "1.0"),
             ("210", f"intent{n % 5}", "1.0"), ("210", f"intent{n % 7}", "1.0"),  # not kept
             ("999", "unknown", "3.0"),  # a field nobody knows: dropped
             ("508", f"x508_{n % 17}", "1.0"), ("509", f"x509_{n % 31}", "1.0"),
             ("702", f"x702_{n % 11}", "1.0"), ("301", str(n % 3 + 1), "1.0")]
    if n % 7:
      items.append(("216", f"brand{n % 19}", "1.0"))  # every 7th sample has no brand
    # 853 holds 1-3 ids, one of them sometimes twice.
    items += [("853", f"x853_{(n + k) % 23}", "1.0") for k in range(n % 3 + 1)]
    if n % 5 == 0:
      items.append(("853", f"x853_{n % 23}", "1.0"))
    rng.shuffle(items)
    if n in buy_without_click:
      click, buy = 0, 1
      dropped_items.append(item)
    else:
      click = int(rng.random() < 0.3)
      buy = int(click and rng.random() < 0.4)
      features = _ids(items)
      for column, ids in _ids(common_items[index]).items():
        features.setdefault(column, []).extend(
            i for i in ids if i not in features.get(column, []))
      expected[item] = {"click": [click], "buy": [buy],
                        **{c: ["|".join(ids).encode()] for c, ids in features.items()}}
    skeleton.append(_skeleton_line(sample_id, click, buy, index, items))
  common = [_common_line(index, items) for index, items in common_items.items()]
  rng.shuffle(common)
  _write(directory, f"sample_skeleton_{suffix}.csv", skeleton, newline)
  _write(directory, f"common_features_{suffix}.csv", common, newline)
  return expected, dropped_items


# --- running the executor -----------------------------------------------------

def run_example_gen(input_base, output_dir, **factory_args):
  """The factory's component, run through its executor's Do() on DirectRunner.
  Returns (the executor, the output Examples artifact)."""
  component = aliccp_example_gen(input_base, chunk_bytes=factory_args.pop(
      "chunk_bytes", TEST_CHUNK_BYTES), **factory_args)
  return run_example_gen_executor(component, output_dir)


def read_split(examples, split):
  """The split's examples as {feature: values}, keyed by item_id."""
  files = glob.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
  found = {}
  for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
    example = tf.train.Example.FromString(record.numpy())
    values = {}
    for name, feature in example.features.feature.items():
      kind = feature.WhichOneof("kind")
      values[name] = list(getattr(feature, kind).value)
    found[values["item_id"][0].decode()] = values
  return found


@pytest.fixture(scope="module")
def aliccp_run(tmp_path_factory):
  """Ali-CCP's train and test pairs in one directory, read with the default
  pattern (*.csv) and hash split."""
  raw = tmp_path_factory.mktemp("aliccp_raw")
  rng = random.Random(5)
  expected, dropped = write_pair(str(raw), "train", rng, samples=330, dropped=4)
  more, more_dropped = write_pair(str(raw), "test", rng, samples=100, dropped=2, newline="\r\n")
  expected.update(more)
  runner, examples = run_example_gen(str(raw), str(tmp_path_factory.mktemp("aliccp_out")))
  return expected, dropped + more_dropped, runner.counters, examples


# --- tests ----------------------------------------------------------------------

def test_every_sample_is_its_own_plus_its_common_features(aliccp_run):
  expected, _, _, examples = aliccp_run
  found = {**read_split(examples, "train"), **read_split(examples, "eval")}
  assert sorted(found) == sorted(expected)
  for item, values in expected.items():
    assert found[item] == values, item
  # Spot checks of what `expected` encodes: a user's profile came from the common line
  # of its own pair; own 853 ids first, then the common one; no unkept field.
  first = found["i_train_0"]
  assert first["user_id"] == [b"u_train_0"] and first["user_gender"] == [b"1"]
  assert first["user_item_intentions"] == [b"x853_0|common_853"]
  assert found["i_test_0"]["user_id"] == [b"u_test_0"]
  # Ids keep their order in the line, which write_pair shuffled.
  assert sorted(found["i_train_5"]["user_item_intentions"][0].split(b"|")) == [
      b"x853_5", b"x853_6", b"x853_7"]
  assert "item_brand" not in found["i_train_7"] and "user_consumption_1" not in found["i_train_4"]
  assert {name for values in found.values() for name in values} == {
      c.name for c in emitted_columns()}


def test_buy_without_click_is_dropped_and_counted(aliccp_run):
  expected, dropped, counters, examples = aliccp_run
  found = {**read_split(examples, "train"), **read_split(examples, "eval")}
  assert len(dropped) == 6 and not set(dropped) & set(found)
  assert counters["samples_read"] == 430
  assert counters["dropped_buy_without_click"] == 6
  assert counters["examples_written"] == len(expected) == 424
  assert counters["common_lines_read"] == 22 and counters["common_lines_unused"] == 2
  # 853 holds several ids on most samples; 126 never does.
  assert counters["multi_valued_user_item_intentions"] > 200
  assert counters.get("multi_valued_user_consumption_1", 0) == 0


def test_split_is_four_to_one(aliccp_run):
  _, _, _, examples = aliccp_run
  assert examples.split_names == '["train", "eval"]'
  train, evaluation = len(read_split(examples, "train")), len(read_split(examples, "eval"))
  assert train + evaluation == 424
  assert 0.72 < train / 424 < 0.88  # 4:1 by hash; 0.8 +- 4 standard deviations


def test_the_split_never_reads_the_labels(aliccp_run, tmp_path_factory):
  """The same samples with other labels (clicks flipped where nothing was bought) land
  in the same splits: a sample's split is its skeleton file and sample_id."""
  _, _, _, examples = aliccp_run
  raw = os.path.dirname(glob.glob(os.path.join(
      str(tmp_path_factory.getbasetemp()), "aliccp_raw*", "sample_skeleton_train.csv"))[0])
  flipped = tmp_path_factory.mktemp("aliccp_flipped")
  for name in os.listdir(raw):
    with open(os.path.join(raw, name), newline="") as f:
      lines = f.read().splitlines(keepends=True)
    if name.startswith("sample_skeleton_"):
      out = []
      for line in lines:
        parts = line.split(",", 3)
        if parts[2] == "0":
          parts[1] = "1" if parts[1] == "0" else "0"
        out.append(",".join(parts))
      lines = out
    with open(flipped / name, "w", newline="") as f:
      f.write("".join(lines))
  _, again = run_example_gen(str(flipped), str(tmp_path_factory.mktemp("aliccp_again")))
  for split in ("train", "eval"):
    before, after = read_split(examples, split), read_split(again, split)
    assert sorted(before) == sorted(after)
    assert any(before[item]["click"] != after[item]["click"] for item in before)


def test_split_by_user_keeps_each_user_on_one_side(tmp_path):
  raw = tmp_path / "raw"
  raw.mkdir()
  write_pair(str(raw), "train", random.Random(8), samples=200, dropped=0)
  _, examples = run_example_gen(str(raw), str(tmp_path / "out"),
                                split=Split.parse("columns=user_id"))
  users = {split: {v["user_id"][0] for v in read_split(examples, split).values()}
           for split in ("train", "eval")}
  assert users["train"] and users["eval"] and not users["train"] & users["eval"]
  with pytest.raises(ValueError, match="Ali-CCP has no spans"):
    aliccp_example_gen(str(raw), split=Split("span"))
  with pytest.raises(ValueError, match="never depend on the labels"):
    aliccp_example_gen(str(raw), split=Split.parse("columns=click"))


def test_factory_builds_the_csv_example_gens_split_or_keeps_aliccps_own():
  default = aliccp_example_gen("/data/aliccp")
  properties = default.exec_properties
  assert json.loads(properties["input_config"])["splits"] == [
      {"name": "single_split", "pattern": "*.csv"}]
  assert json.loads(properties["output_config"])["split_config"]["splits"] == [
      {"name": "train", "hash_buckets": 4}, {"name": "eval", "hash_buckets": 1}]
  settings = executor.settings_from(properties)
  assert settings.fields == PAPER_FIELDS and settings.chunk_bytes == 64 << 20
  own = aliccp_example_gen("/data/aliccp",
                           input_splits={"train": "*_train.csv", "eval": "*_test.csv"})
  assert json.loads(own.exec_properties["input_config"])["splits"] == [
      {"name": "train", "pattern": "*_train.csv"}, {"name": "eval", "pattern": "*_test.csv"}]
  assert "hash_buckets" not in own.exec_properties["output_config"]


def test_aliccps_own_split_joins_each_pair(tmp_path):
  raw = tmp_path / "raw"
  raw.mkdir()
  rng = random.Random(3)
  train, _ = write_pair(str(raw), "train", rng, samples=20, dropped=1)
  test, _ = write_pair(str(raw), "test", rng, samples=10, dropped=1)
  _, examples = run_example_gen(str(raw), str(tmp_path / "out"), chunk_bytes=4096,
                                input_splits={"train": "*_train.csv", "eval": "*_test.csv"})
  assert read_split(examples, "train") == train
  assert read_split(examples, "eval") == test


def _raw_dir(tmp_path, skeleton, common):
  raw = tmp_path / "raw"
  raw.mkdir()
  _write(str(raw), "sample_skeleton_train.csv", skeleton)
  _write(str(raw), "common_features_train.csv", common)
  return str(raw)


GOOD_COMMON = [_common_line("c1", [("101", "u1", "1.0"), ("125", "3", "1.0")]),
               _common_line("c2", [("101", "u2", "1.0")])]


def _good_sample(n, index="c1"):
  return _skeleton_line(str(n), 0, 0, index, [("205", f"i{n}", "1.0"), ("301", "1", "1.0")])


def test_malformed_line_stops_the_run_naming_file_line_and_field(tmp_path):
  skeleton = [_good_sample(n) for n in range(1, 7)]
  # Line 7 says 3 items but was cut after 2.
  skeleton.append("7,1,0,c2,3," + _features([("205", "i7", "1.0"), ("301", "2", "1.0")])[1])
  skeleton += [_good_sample(n) for n in range(8, 12)]
  raw = _raw_dir(tmp_path, skeleton, GOOD_COMMON)
  with pytest.raises(Exception) as failure:
    run_example_gen(raw, str(tmp_path / "out"), chunk_bytes=64)
  assert re.search(r"Bad input in \S*sample_skeleton_train\.csv, line 7, field 'features': "
                   r"feature_count is 3 but the line holds 2 feature item\(s\)",
                   str(failure.value)), str(failure.value)


def test_sample_whose_common_index_is_missing_is_named(tmp_path):
  skeleton = [_good_sample(1), _good_sample(2), _good_sample(3, index="nowhere"),
              _good_sample(4, index="c2")]
  raw = _raw_dir(tmp_path, skeleton, GOOD_COMMON)
  with pytest.raises(Exception) as failure:
    run_example_gen(raw, str(tmp_path / "out"), chunk_bytes=50)
  assert re.search(r"Bad input in \S*sample_skeleton_train\.csv, line 3, field "
                   r"'common_feature_index': 'nowhere' is not in \S*common_features_train\.csv",
                   str(failure.value)), str(failure.value)


def test_common_index_twice_is_named(tmp_path):
  common = GOOD_COMMON + [_common_line("c1", [("101", "u9", "1.0")])]
  raw = _raw_dir(tmp_path, [_good_sample(1)], common)
  with pytest.raises(Exception) as failure:
    run_example_gen(raw, str(tmp_path / "out"))
  assert re.search(r"Bad input in \S*common_features_train\.csv, line 3, field "
                   r"'common_feature_index': 'c1' appears again \(first on line 1\)",
                   str(failure.value)), str(failure.value)


@pytest.mark.parametrize("line, pattern", [
    ("1,0,0,c1,1", r"5 comma-separated fields where a sample_skeleton line has 6"),
    ("1,2,0,c1,0,", r"field 'click': label must be 0 or 1, got '2'"),
    ("1,0,yes,c1,0,", r"field 'buy': label must be 0 or 1, got 'yes'"),
    ("1,0,0,,0,", r"field 'common_feature_index': is empty"),
    ("1,0,0,c1,two,", r"field 'feature_count': 'two' is not an integer"),
    ("1,0,0,c1,1,205\x02i1", r"field 'features': item 1 '205\\x02i1' is not "
                             r"field_id\\x02feature_id\\x03value"),
    ("1,0,0,c1,1,205\x02a|b\x031.0", r"feature id 'a\|b' of field 205 holds the separator"),
])
def test_each_kind_of_malformed_skeleton_line(line, pattern):
  keep = dict(PAPER_FIELDS)
  with pytest.raises(raw_format.MalformedLine) as problem:
    raw_format.parse_skeleton_line(line, keep)
  field = f"field '{problem.value.field}': " if problem.value.field else ""
  assert re.search(pattern, field + str(problem.value)), field + str(problem.value)


def test_each_kind_of_malformed_common_line():
  keep = dict(PAPER_FIELDS)
  with pytest.raises(raw_format.MalformedLine, match="2 comma-separated fields where a "
                     "common_features line has 3"):
    raw_format.parse_common_line("c1,0", keep)
  assert raw_format.parse_common_line("c1,0,", keep) == ("c1", {})


def test_file_naming_convention_is_enforced(tmp_path):
  paths = [str(tmp_path / n) for n in ("sample_skeleton_a.csv", "common_features_a.csv")]
  assert executor.pair_files(paths, "*.csv") == ([paths[0]], [paths[1]])
  with pytest.raises(BadInputError, match=r"common_features_b\.csv, which doesn't exist"):
    executor.pair_files(paths + [str(tmp_path / "sample_skeleton_b.csv")], "*.csv")
  with pytest.raises(BadInputError, match=r"notes\.csv.*neither sample_skeleton_\* nor"):
    executor.pair_files(paths + [str(tmp_path / "notes.csv")], "*.csv")
  with pytest.raises(BadInputError, match=r"common_features_c\.csv'\] match \*\.csv but no"):
    executor.pair_files(paths + [str(tmp_path / "common_features_c.csv")], "*.csv")
  with pytest.raises(BadInputError, match=r"no sample_skeleton_\* files match"):
    executor.pair_files([], "*.csv")


def test_ranges_read_every_line_once_with_its_offset(tmp_path):
  path = tmp_path / "lines.txt"
  lines = [b"a" * (n % 9) + b"\n" for n in range(60)] + [b"last without newline"]
  path.write_bytes(b"".join(lines))
  raw = executor.RawFile(str(path), compressed=False)
  offsets = [sum(len(l) for l in lines[:n]) for n in range(len(lines))]
  for chunk_bytes in (1, 2, 7, 64, 10_000):
    read = [entry for start, end in executor.file_chunks(raw, chunk_bytes)
            for entry in executor.read_chunk(raw, start, end)]
    assert read == list(zip(offsets, lines)), chunk_bytes
  assert executor.line_number(raw, offsets[37]) == 38


def test_aliccp_config_reads_what_the_example_gen_writes():
  config = load_config(ALICCP_CONFIG)
  check_config(config)
  assert config.columns == emitted_columns()
  assert config.labels == ("click", "buy")
  assert set(config.feature_columns) == {column for _, column in PAPER_FIELDS}
  assert {f.column for f in config.features} == set(config.feature_columns)
  assert [(t.name, t.label) for t in config.tasks] == [("ctr", "click"), ("cvr", "buy")]
  tags = {f.name: f.separator for f in config.features if f.encoding.value == "tags"}
  assert tags and set(tags.values()) == {raw_format.SEPARATOR}
  from pipeline.schema_check import check_schema
  check_schema(config, ALICCP_SCHEMA)
  with pytest.raises(ConfigError, match=r"'item_intention' \(STRING\) is missing"):
    check_config(config, PAPER_FIELDS + (raw_format.ITEM_INTENTION,))
  taobao = load_config(configs.CONFIG_PATH)
  with pytest.raises(ConfigError, match="'clk' is not written by the ExampleGen"):
    check_config(taobao)


def test_aliccp_config_builds_a_model_that_scores_the_examples(aliccp_run):
  """The config's model on a few of the ExampleGen's examples, encoded as Transform
  would (learned vocabularies swapped for hashing: they need an analysis pass)."""
  from models.backbone import build_model, model_features
  from models.preprocessing import embedding_rows, transform_features
  expected, _, _, _ = aliccp_run
  with open(ALICCP_CONFIG) as f:
    config = parse_config(f.read().replace("compute_vocabulary: true", "hash_bucket_size: 100"),
                          source=ALICCP_CONFIG)
  rows = [expected[f"i_train_{n}"] for n in range(16)]
  raw = {c.name: tf.constant([row[c.name][0] if c.name in row else b"" for row in rows])
         for c in config.columns if c.name not in config.labels}
  encoded = transform_features(raw, config)
  model = build_model(config, {f.name: embedding_rows(f) for f in config.features})
  scores = model({f.name: encoded[f.name] for f in model_features(config)}, training=False)
  assert list(scores) == ["ctr", "cvr"]
  for p in scores.values():
    assert p.shape == (16, 1) and bool(tf.reduce_all((p >= 0) & (p <= 1)))
  # Multi-valued columns arrive as tag ids, one per id: 853 of i_train_5 holds three.
  assert int(tf.reduce_sum(tf.cast(encoded["user_item_intentions"][5] > 0, tf.int32))) == 3


def test_the_pipeline_reads_aliccp_with_its_config_and_refuses_a_mismatched_one(tmp_path):
  from pipeline.pipeline import create_pipeline
  from components.aliccp_example_gen import executor as aliccp_executor
  kwargs = dict(pipeline_root=str(tmp_path / "root"), data_root=str(tmp_path / "data"),
                serving_dir=str(tmp_path / "serving"), data_format="aliccp",
                schema_path=os.path.join(configs.PROJECT_DIR, "schemas", "aliccp_raw.pbtxt"))
  pipeline = create_pipeline(config=load_config(ALICCP_CONFIG), **kwargs)
  example_gen, = [c for c in pipeline.components if c.id == "FileBasedExampleGen"]
  assert example_gen.executor_spec.executor_class is aliccp_executor.Executor
  with pytest.raises(ConfigError, match="doesn't match the Ali-CCP ExampleGen"):
    create_pipeline(config=load_config(configs.CONFIG_PATH), **kwargs)
