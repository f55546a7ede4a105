"""The config reader: EasyRec's files parse as written, and bad ones are refused
before any work with the file, line and field named."""

import dataclasses
import os
import re
import subprocess
import sys

import pytest

from models.config import ConfigError, load_config, parse_columns, parse_config
from models.features import ColumnType, Encoding
from pipeline import configs

CONFIG_DIR = os.path.join(configs.PROJECT_DIR, "configs")
REFERENCE = os.path.join(CONFIG_DIR, "easyrec_aitm_on_taobao.config")


def _text(name="aitm_taobao.config"):
  with open(os.path.join(CONFIG_DIR, name)) as f:
    return f.read()


def _refused(text, pattern):
  with pytest.raises(ConfigError) as error:
    parse_config(text, source="bad.config")
  assert re.search(pattern, str(error.value)), str(error.value)
  return str(error.value)


def _line_of(text, needle):
  return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_easyrec_reference_config_reads_as_written():
  config = load_config(REFERENCE)
  assert [c.name for c in config.columns][:3] == ["clk", "buy", "pid"]
  assert config.column_types["price"] is ColumnType.INT
  assert config.labels == ("clk", "buy")
  by_name = {f.name: f for f in config.features}
  assert by_name["user_id"].encoding is Encoding.HASH and by_name["user_id"].buckets == 100000
  assert by_name["price"].encoding is Encoding.IDENTITY and by_name["price"].buckets == 50
  assert by_name["tag_brand_list"].encoding is Encoding.TAGS
  assert by_name["tag_brand_list"].separator == "|"
  assert {f.embedding_dim for f in config.features} == {16}
  assert [(t.name, t.label, t.output_block) for t in config.tasks] == [
      ("ctr", "clk", "ctr_tower"), ("cvr", "buy", "cvr_aitm")]
  # Upstream leaves relation_tower_names out; the calibrator compares with the
  # preceding tower of the AITM chain instead of doing nothing.
  assert config.tasks[1].calibrate_against == ("ctr",)
  assert config.tasks[1].calibration_weight == 1.0 and config.tasks[0].calibration_weight == 0
  train = config.proto.train_config
  assert train.num_steps == 500 and config.proto.data_config.batch_size == 4096
  lr = train.optimizer_config[0].adam_optimizer.learning_rate.constant_learning_rate
  assert lr.learning_rate == pytest.approx(1e-4)


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(CONFIG_DIR)
                                        if n.endswith(".config")))
def test_every_shipped_config_reads(name):
  config = load_config(os.path.join(CONFIG_DIR, name))
  assert config.tasks and config.features


def test_peers_share_data_and_features_so_transform_is_reused():
  texts = {load_config(path).transform_text() for path in configs.PEER_CONFIGS}
  assert len(texts) == 1


def test_peer_towers():
  esmm = load_config(os.path.join(CONFIG_DIR, "esmm.config"))
  assert esmm.tasks[1].conditional_on == "ctr" and esmm.tasks[1].calibration_weight == 0
  mmoe = load_config(os.path.join(CONFIG_DIR, "mmoe.config"))
  assert [(t.output_block, t.output_index) for t in mmoe.tasks] == [("mmoe", 0), ("mmoe", 1)]
  three = load_config(os.path.join(CONFIG_DIR, "aitm_click_cart_buy.config"))
  assert [(t.name, t.calibrate_against) for t in three.tasks] == [
      ("ctr", ()), ("cart", ("ctr",)), ("cvr", ("cart",))]


def test_relation_tower_names_win_over_the_chain():
  text = _text().replace('tower_name: "cvr"', 'tower_name: "cvr"\n      relation_tower_names: "ctr"')
  assert parse_config(text).tasks[1].calibrate_against == ("ctr",)
  bad = _text().replace('tower_name: "cvr"', 'tower_name: "cvr"\n      relation_tower_names: "nope"')
  _refused(bad, r"bad\.config:\d+: relation_tower_names: tower 'cvr': 'nope' is not a tower "
                r"before it")


def test_unknown_field_names_line_and_column():
  text = _text().replace("hidden_units: [512, 256]", "hidden_unit: [512, 256]")
  line = _line_of(text, "hidden_unit:")
  _refused(text, rf"bad\.config:{line}:\d+ : .*MLP\" has no field named \"hidden_unit\"")


def test_wrong_type_names_the_line():
  text = _text().replace("num_buckets: 50", 'num_buckets: "fifty"')
  line = _line_of(text, '"fifty"')
  _refused(text, rf"bad\.config:{line}:\d+ : .*Couldn't parse integer")


def test_unknown_enum_value_is_refused():
  _refused(_text().replace("loss_type: ORDER_CALIBRATE_LOSS", "loss_type: F1_LOSS"),
           r"has no value named F1_LOSS")


def test_block_input_that_does_not_exist():
  text = _text().replace('inputs { block_name: "ctr_tower" }', 'inputs { block_name: "ctr_twr" }')
  line = _line_of(text, '"ctr_twr"')
  _refused(text, rf"bad\.config:{line}: block_name: block 'cvr_aitm': no block 'ctr_twr'")


def test_feature_group_that_does_not_exist():
  text = _text().replace('inputs { feature_group_name: "all" }',
                         'inputs { feature_group_name: "everything" }')
  _refused(text, r"bad\.config:\d+: feature_group_name: block 'share_bottom': no feature group "
                 r"'everything'")


def test_cycle_is_named():
  text = _text().replace('name: "share_bottom"\n      inputs { feature_group_name: "all" }',
                         'name: "share_bottom"\n      inputs { block_name: "cvr_aitm" }')
  message = _refused(text, r"bad\.config:\d+: block_name: the backbone has a cycle: ")
  assert "share_bottom" in message and "cvr_aitm" in message


@pytest.mark.parametrize("outputs, pattern", [
    ('["ctr_tower"]', r"1 output_blocks for 2 task_towers: they map one to one, in order"),
    ('["ctr_tower", "cvr_aitm", "cvr_tower"]', r"3 output_blocks for 2 task_towers"),
    ('["ctr_tower", "nothing"]', r"'nothing' is not a block"),
])
def test_output_blocks_must_match_the_towers(outputs, pattern):
  text = _text().replace('output_blocks: ["ctr_tower", "cvr_aitm"]', f"output_blocks: {outputs}")
  line = _line_of(text, "output_blocks:")
  _refused(text, rf"bad\.config:{line}: output_blocks: " + pattern)


def test_multi_output_block_must_have_one_output_per_tower():
  text = _text("mmoe.config").replace("num_task: 2", "num_task: 3")
  _refused(text, r"output_blocks: 'mmoe' has 3 outputs but there are 2 task_towers")


def test_unknown_layer_and_wrong_params():
  _refused(_text().replace('class_name: "AITMTower"', 'class_name: "AITM"'),
           r"class_name: block 'cvr_aitm': unknown layer 'AITM'")
  _refused(_text().replace('class_name: "AITMTower"', 'class_name: "MLP"'),
           r"block 'cvr_aitm': MLP takes its settings in 'mlp \{ \}', got aitm")


@pytest.mark.parametrize("name, old, new, pattern", [
    ("mmoe.config", "num_expert: 4", "num_expert: 0", r"block 'mmoe' needs num_expert >= 1"),
    ("mmoe.config", "num_task: 2", "num_task: 0", r"block 'mmoe' needs num_task >= 1"),
    ("ple.config", "num_task: 2", "num_task: 0", r"block 'ple' needs num_task >= 1"),
    ("ple.config", "hidden_units: [256, 128]", "", r"block 'ple': the MLP needs hidden_units"),
    ("aitm_taobao.config", "transfer_mlp { hidden_units: 128 ", "transfer_mlp { ",
     r"block 'cvr_aitm': the MLP needs hidden_units"),
])
def test_layer_settings_the_registry_checks(name, old, new, pattern):
  text = _text(name)
  assert old in text
  _refused(text.replace(old, new, 1), pattern)


def test_every_layer_kind_has_its_own_params_field():
  """A kind's settings are one KerasLayer field, and every such field is a kind's."""
  from models.config import messages
  from models.layer_registry import LAYER_KINDS
  oneof = messages.message_class("KerasLayer").DESCRIPTOR.oneofs_by_name["params"]
  assert sorted(kind.params for kind in LAYER_KINDS.values()) == sorted(
      field.name for field in oneof.fields)


def test_checking_a_config_does_not_load_tensorflow():
  code = (f"import sys; from models.config import load_config; "
          f"load_config({configs.CONFIG_PATH!r}); "
          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        cwd=configs.PROJECT_DIR, timeout=120,
                        env=dict(os.environ, PYTHONPATH=configs.PROJECT_DIR))
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip() == "[]"


def test_aitm_tower_needs_a_list_of_two_inputs():
  text = _text().replace("merge_inputs_into_list: true\n", "")
  _refused(text, r"AITMTower block 'cvr_aitm' takes the current tower then the preceding ones")


def test_feature_and_label_references():
  _refused(_text().replace('feature_names: "brand"', 'feature_names: "brnd"'),
           r"feature_names: group 'all': 'brnd' is not a feature in feature_config")
  _refused(_text().replace('label_name: "buy"', 'label_name: "purchase"'),
           r"label_name: tower 'cvr': 'purchase' is not in data_config.label_fields")
  _refused(_text().replace('features { input_names: "brand"', 'features { input_names: "brnd"'),
           r"input_names: 'brnd' is not one of data_config.input_fields")
  _refused(_text().replace("num_buckets: 50", "hash_bucket_size: 50 num_buckets: 50"),
           r"IdFeature 'price' needs exactly one of hash_bucket_size, num_buckets")
  _refused(_text().replace('input_name: "clk" input_type: INT32', 'input_name: "clk" input_type: STRING'),
           r"label_fields: 'clk' must be an INT32/INT64 input field")


@pytest.mark.parametrize("old, new, pattern", [
    ('"pid", "age_level"', '"pid", "age"', r"slice_fields: 'age' is not one of "
                                           r"data_config.input_fields"),
    ('"pid", "age_level"', '"pid", "clk"', r"slice_fields: 'clk' is a label, not an input"),
    ('"pid", "age_level"', '"pid", "pid"', r"slice_fields: 'pid' is listed twice"),
    ('user_id_field: "user_id"', 'user_id_field: "uid"',
     r"user_id_field: 'uid' is not one of data_config.input_fields"),
    ('user_id_field: "user_id"', 'user_id_field: "buy"',
     r"user_id_field: 'buy' is a label, not an input"),
])
def test_slice_and_user_fields_name_input_fields(old, new, pattern):
  text = _text().replace(old, new, 1)
  line = _line_of(text, new)
  _refused(text, rf"bad\.config:{line}: " + pattern)


def test_slice_and_user_fields_are_read_in_order():
  config = load_config(configs.CONFIG_PATH)
  assert config.slice_fields == ("pid", "age_level", "new_user_class_level", "shopping_level")
  assert config.user_id_field == "user_id"
  reference = load_config(REFERENCE)
  assert reference.slice_fields == () and reference.user_id_field is None


def test_order_calibration_needs_a_preceding_tower():
  text = _text().replace('tower_name: "ctr"\n      label_name: "clk"\n      losses { loss_type: CLASSIFICATION }',
                         'tower_name: "ctr"\n      label_name: "clk"\n      losses { loss_type: CLASSIFICATION }\n'
                         '      losses { loss_type: ORDER_CALIBRATE_LOSS }')
  _refused(text, r"tower 'ctr' has an ORDER_CALIBRATE_LOSS but no preceding tower")


def test_unreadable_file():
  with pytest.raises(ConfigError, match=r"nope\.config: can't read the config"):
    load_config("nope.config")


def test_transform_text_keeps_only_what_transform_reads():
  config = load_config(configs.CONFIG_PATH)
  data = parse_config(config.transform_text(), require_model=False)
  assert not data.proto.HasField("model_config")
  # Every encoding as configured; the embedding sizes are the model's alone.
  assert data.features == tuple(dataclasses.replace(f, embedding_dim=0) for f in config.features)
  assert all(f.embedding_dim > 0 for f in config.features if f.encoding is not Encoding.RAW)
  assert data.columns == config.columns and data.labels == config.labels
  assert data.user_id_field == "user_id"  # Transform computes user_activity from it


def test_a_model_only_change_leaves_what_example_gen_and_transform_read_unchanged():
  text = _text()
  for old, new in (("embedding_dim: 16", "embedding_dim: 8"),
                   ("data_config {", "data_config {\n  batch_size: 333\n  num_epochs: 2")):
    assert old in text
    changed = parse_config(text.replace(old, new), source="changed.config")
    original = parse_config(text, source="original.config")
    assert changed.text != original.text
    assert changed.transform_text() == original.transform_text()
    assert changed.columns_text() == original.columns_text()
  # What Transform does read does change it; ExampleGen reads only the columns.
  bigger = parse_config(text.replace("hash_bucket_size: 10000", "hash_bucket_size: 20000", 1))
  assert bigger.transform_text() != parse_config(text).transform_text()
  assert bigger.columns_text() == parse_config(text).columns_text()


def test_columns_text_holds_the_columns_and_labels():
  config = load_config(configs.CONFIG_PATH)
  assert parse_columns(config.columns_text()) == (config.columns, config.labels)


def test_shipped_configs_match_their_schemas():
  from pipeline.schema_check import check_schema
  schemas = os.path.join(configs.PROJECT_DIR, "schemas")
  for name in os.listdir(CONFIG_DIR):
    if name.endswith(".config"):
      schema = ("aliccp_raw.pbtxt" if "aliccp" in name else
                "taobao_cart_raw.pbtxt" if "cart" in name else "taobao_raw.pbtxt")
      check_schema(load_config(os.path.join(CONFIG_DIR, name)), os.path.join(schemas, schema))
  with pytest.raises(ConfigError, match="'cart' is in the schema but not in data_config"):
    check_schema(load_config(configs.CONFIG_PATH), os.path.join(schemas, "taobao_cart_raw.pbtxt"))


def test_a_config_that_is_not_utf8_names_its_line(tmp_path):
  bad = tmp_path / "latin1.config"
  bad.write_bytes(_text().encode("utf-8").replace(b"# AITM", b"# AITM \xe9", 1))
  with pytest.raises(ConfigError, match=r"latin1.config:1: the config is not UTF-8 text"):
    load_config(str(bad))


@pytest.mark.parametrize("old, new", [
    ("weight: 1.0", "weight: -1.0"), ("weight: 1.0", "weight: nan"),
    ("losses { loss_type: ORDER_CALIBRATE_LOSS }",
     "losses { loss_type: ORDER_CALIBRATE_LOSS weight: inf }")])
def test_tower_and_loss_weights_are_finite_and_not_negative(old, new):
  text = _text()
  assert old in text
  with pytest.raises(ConfigError, match=r":\d+: weight: tower '\w+': (the|a loss) weight must "
                                        r"be a finite number >= 0"):
    parse_config(text.replace(old, new, 1), source="c.config")


BENCH_CONFIG_DIR = os.path.join(os.path.dirname(CONFIG_DIR), "bench", "configs")


@pytest.mark.parametrize("name", sorted(os.listdir(BENCH_CONFIG_DIR)))
def test_bench_controls_are_their_peer_plus_the_affinity_block_and_share_its_transform(name):
  """bench/quality.py's affinity controls: the peer config with AITM's affinity block;
  the same data and features as every peer, so the bench runs Transform once."""
  control = load_config(os.path.join(BENCH_CONFIG_DIR, name))
  peer = load_config(os.path.join(CONFIG_DIR, name.replace("_affinity", "")))
  aitm = load_config(configs.PEER_CONFIGS[0])
  blocks = {b.name for b in control.proto.model_config.backbone.blocks}
  peer_blocks = {b.name for b in peer.proto.model_config.backbone.blocks}
  assert blocks - peer_blocks == {"user_side", "ad_side", "affinity"}
  assert control.transform_text() == aitm.transform_text() == peer.transform_text()


def test_a_checked_config_pickles_with_its_translated_model():
  """Beam and TF Transform pickle what a function closes over, a checked config among
  them: every message class it holds must be found by reference."""
  import pickle
  config = load_config(os.path.join(CONFIG_DIR, "easyrec_dbmtl_on_taobao.config"))
  again = pickle.loads(pickle.dumps(config))
  assert again.model == config.model and again.tasks == config.tasks
  assert again.model.backbone.blocks[0].name == "bottom_dnn"
