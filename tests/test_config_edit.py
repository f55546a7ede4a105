"""--edit-config-json: EasyRec's edit_config grammar on our messages, each of EasyRec's
obscure or silent failures refused by name, and load_config checking the edited config."""

import os
import re

import pytest
from google.protobuf import text_format

from models.config import ConfigError, load_config, messages, parse_config
from models.config.edit import apply_edits, parse_edit_json
from pipeline import configs

REFERENCE = os.path.join(configs.PROJECT_DIR, "configs", "easyrec_aitm_on_taobao.config")
TOWERS = "model_config.model_params.task_towers"
BLOCKS = "model_config.backbone.blocks"


def _proto():
  """EasyRec's aitm_on_taobao sample, parsed and unchecked."""
  with open(REFERENCE, encoding="utf-8") as f:
    return text_format.Parse(f.read(), messages.EasyRecConfig())


def _edited(edits):
  proto = _proto()
  return proto, apply_edits(proto, edits)


def _dims(proto):
  return {f.input_names[0]: f.embedding_dim for f in proto.feature_config.features}


def _changed_dims(proto):
  return [name for name, dim in _dims(proto).items() if dim != 16]


def _refused(edits, pattern):
  proto = _proto()
  with pytest.raises(ConfigError) as error:
    apply_edits(proto, edits)
  message = str(error.value)
  assert message.startswith("--edit-config-json: "), message
  assert re.search(pattern, message), message
  assert proto == _proto(), "a refused edit must leave the config as it was"
  return message


NAMES = list(_dims(_proto()))


# --- the grammar --------------------------------------------------------------

def test_scalars_are_converted_to_the_fields_type():
  proto, applied = _edited({"train_config.num_steps": 200, "data_config.batch_size": "1024",
                            f"{TOWERS}[1].weight": 2, "model_config.model_name": 7,
                            "model_config.model_params.l2_regularization": 1e-5})
  assert proto.train_config.num_steps == 200 and proto.data_config.batch_size == 1024
  assert proto.model_config.model_params.task_towers[1].weight == 2.0
  assert proto.model_config.model_name == "7"   # str(value), as EasyRec
  assert proto.model_config.model_params.l2_regularization == pytest.approx(1e-5)
  assert applied == [("train_config.num_steps", 1), ("data_config.batch_size", 1),
                     (f"{TOWERS}[1].weight", 1), ("model_config.model_name", 1),
                     ("model_config.model_params.l2_regularization", 1)]


@pytest.mark.parametrize("value, expected", [
    (True, True), ("True", True), ("true", True), (False, False), ("False", False),
    ("false", False)])
def test_bools_take_easyrec_spellings_and_json_bools(value, expected):
  proto, _ = _edited({"data_config.shuffle": value, "train_config.sync_replicas": value})
  assert proto.data_config.shuffle is expected and proto.train_config.sync_replicas is expected


@pytest.mark.parametrize("index, name", [("0", "pid"), ("6", "user_id"), ("-1", "price"),
                                         ("-18", "pid")])
def test_an_index_selects_one_element_negative_from_the_end(index, name):
  proto, applied = _edited({f"feature_config.features[{index}].embedding_dim": 8})
  assert _changed_dims(proto) == [name] and applied[0][1] == 1


@pytest.mark.parametrize("selector, selected", [
    (":", NAMES), (":2", NAMES[:2]), ("16:", NAMES[16:]), ("1:-1", NAMES[1:-1]),
    ("-2:", NAMES[-2:]), (" 3 : 5 ", NAMES[3:5])])
def test_a_range_selects_a_python_slice(selector, selected):
  proto, applied = _edited({f"feature_config.features[{selector}].embedding_dim": 8})
  assert _changed_dims(proto) == selected
  assert applied[0][1] == len(selected)


def test_a_condition_key_is_a_path_on_each_element():
  proto, applied = _edited({"feature_config.features[input_names[0]=price].embedding_dim": 4})
  assert _dims(proto)["price"] == 4 and _changed_dims(proto) == ["price"]
  assert applied == [("feature_config.features[input_names[0]=price].embedding_dim", 1)]


def test_greater_or_equal_compares_strings():
  proto, _ = _edited({"feature_config.features[input_names[0]>=tag].embedding_dim": 8})
  assert _changed_dims(proto) == [n for n in NAMES if n >= "tag"]
  assert _changed_dims(proto) == ["user_id", "tag_category_list", "tag_brand_list"]


@pytest.mark.parametrize("condition, towers", [
    ("tower_name=cvr", ["cvr"]), ("tower_name>ctr", ["cvr"]), ("tower_name<cvr", ["ctr"]),
    ("tower_name<=ctr", ["ctr"]), ("tower_name>=ctr", ["ctr", "cvr"]),
    # A float with a dot: EasyRec splits the path at it and fails.
    ("weight=1.0", ["ctr", "cvr"]), ("weight>0.5", ["ctr", "cvr"]),
    ("dnn.hidden_units[0]=64", ["ctr", "cvr"]), ("loss_type=CLASSIFICATION", ["ctr", "cvr"]),
    ("losses[1].loss_type=ORDER_CALIBRATE_LOSS", None)])
def test_conditions_try_operators_in_easyrec_order(condition, towers):
  if towers is None:   # ctr has no losses[1]: EasyRec's IndexError, named here
    _refused({f"{TOWERS}[{condition}].weight": 3},
             r"on task_towers\[0\]: 'losses\[1\]': index 1 is out of range: losses has 0 "
             "elements")
    return
  proto, _ = _edited({f"{TOWERS}[{condition}].weight": 3})
  assert [t.tower_name for t in proto.model_config.model_params.task_towers
          if t.weight == 3] == towers


def test_an_enum_condition_and_value_take_names():
  proto, applied = _edited({
      "feature_config.features[feature_type=TagFeature].embedding_dim": 4,
      # LossType and FieldType are file-level enums: EasyRec can't set these by name.
      f"{TOWERS}[0].loss_type": "ORDER_CALIBRATE_LOSS",
      "data_config.input_fields[input_name=price].input_type": "INT64",
      "feature_config.features[input_names[0]=pid].feature_type": "RawFeature"})
  assert _changed_dims(proto) == ["tag_category_list", "tag_brand_list"]
  tower = proto.model_config.model_params.task_towers[0]
  assert tower.DESCRIPTOR.fields_by_name["loss_type"].enum_type.values_by_number[
      tower.loss_type].name == "ORDER_CALIBRATE_LOSS"
  assert messages.ENUMS["FieldType"][proto.data_config.input_fields[-1].input_type] == "INT64"
  assert messages.ENUMS["FeatureType"][proto.feature_config.features[0].feature_type] == \
      "RawFeature"
  assert [count for _, count in applied] == [2, 1, 1, 1]


def test_an_enum_value_also_takes_its_number():
  number = messages.ENUMS["FeatureType"].index("TagFeature")
  proto, _ = _edited({"feature_config.features[0].feature_type": str(number)})
  assert proto.feature_config.features[0].feature_type == number


@pytest.mark.parametrize("value, expected", [
    ([32, 16], [32, 16]), ("[32, 16]", [32, 16]), (8, [8]), ([], [])])
def test_a_list_value_fills_a_repeated_scalar(value, expected):
  proto, applied = _edited({f"{TOWERS}[0].dnn.hidden_units": value})
  assert list(proto.model_config.model_params.task_towers[0].dnn.hidden_units) == expected
  assert applied[0][1] == 1


def test_a_list_of_strings_fills_a_repeated_string_field():
  proto, _ = _edited({"data_config.label_fields": ["buy", "clk"]})
  assert list(proto.data_config.label_fields) == ["buy", "clk"]


def test_an_element_of_a_repeated_scalar_is_set_in_place():
  proto, _ = _edited({f"{BLOCKS}[name=share_bottom].keras_layer.mlp.hidden_units[1]": "64",
                      f"{BLOCKS}[name=share_bottom].keras_layer.mlp.hidden_units[-2]": 300})
  assert list(proto.model_config.backbone.blocks[0].keras_layer.mlp.hidden_units) == [300, 64]


def test_a_message_is_replaced_from_text_format():
  proto, applied = _edited({
      f"{TOWERS}[0].dnn": "{hidden_units: [32, 8] use_bn: false}",
      f"{TOWERS}[1].dnn": "hidden_units: 4",   # the braces are optional
      "feature_config.features[input_names[0]=price]":
          "{input_names: 'price' feature_type: RawFeature embedding_dim: 4}"})
  ctr, cvr = proto.model_config.model_params.task_towers
  assert text_format.MessageToString(ctr.dnn, as_one_line=True) == \
      "hidden_units: 32 hidden_units: 8 use_bn: false"
  assert list(cvr.dnn.hidden_units) == [4]
  price = proto.feature_config.features[-1]
  assert not price.HasField("num_buckets")   # replaced, not merged
  assert (price.input_names[0], price.embedding_dim) == ("price", 4)
  assert [count for _, count in applied] == [1, 1, 1]


def test_empty_braces_clear_a_message():
  proto, _ = _edited({f"{TOWERS}[0].dnn": "{}", f"{TOWERS}[1]": "{}"})
  ctr, cvr = proto.model_config.model_params.task_towers
  assert not ctr.dnn.ListFields() and ctr.tower_name == "ctr"
  assert not cvr.ListFields()


def test_reading_through_a_message_never_sets_it_and_writing_inside_switches_its_oneof():
  proto, applied = _edited({
      # Every block's (unset unless AITM) aitm.project_dim reads 0: all four match.
      f"{BLOCKS}[keras_layer.aitm.project_dim=0].input_concat_axis": -1,
      "train_config.optimizer_config[0].adam_optimizer.learning_rate."
      "exponential_decay_learning_rate.decay_steps": 1000})
  assert applied[0][1] == 4
  assert [b.keras_layer.WhichOneof("params") for b in proto.model_config.backbone.blocks] == \
      ["mlp", "mlp", "mlp", "aitm"]
  rate = proto.train_config.optimizer_config[0].adam_optimizer.learning_rate
  assert rate.WhichOneof("learning_rate") == "exponential_decay_learning_rate"
  assert rate.exponential_decay_learning_rate.decay_steps == 1000


def test_semicolons_pair_keys_with_values():
  proto, applied = _edited({"data_config.batch_size; train_config.num_steps": "1024; 200"})
  assert proto.data_config.batch_size == 1024 and proto.train_config.num_steps == 200
  assert applied == [("data_config.batch_size", 1), ("train_config.num_steps", 1)]


def test_edits_apply_in_order_each_seeing_the_ones_before():
  proto, applied = _edited({"feature_config.features[0].embedding_dim": 3,
                            "feature_config.features[embedding_dim=3].hash_bucket_size": 7,
                            "feature_config..features[ 0 ].embedding_dim": 5})
  assert proto.feature_config.features[0].hash_bucket_size == 7
  assert proto.feature_config.features[0].embedding_dim == 5   # empty tokens dropped
  assert [count for _, count in applied] == [1, 1, 1]


# --- what EasyRec fails at obscurely or silently, refused by name -----------------

@pytest.mark.parametrize("edits, pattern", [
    ({"train_config.num_step": 1},
     r"^--edit-config-json: train_config\.num_step: unknown field 'num_step' in train_config "
     r"\(a TrainConfig\); did you mean 'num_steps'\? Its fields: optimizer_config, num_steps, "),
    ({"export_config.exporter_type": "final"},
     r"unknown field 'export_config' in the config \(an EasyRecConfig\)\. Its fields: .*"
     r"train_config, eval_config, data_config"),
    ({"feature_config.features[0].embeding_dim": 1},
     r"unknown field 'embeding_dim' in feature_config\.features\[0\] \(a FeatureConfig\); "
     r"did you mean 'embedding_dim'\?"),
    ({"feature_config.features[input_names[0]=nothing].embedding_dim": 1},
     r": 'features\[input_names\[0\]=nothing\]' matches none of the 18 elements \(their "
     r"input_names\[0\]: 'pid', 'adgroup_id', .*, \.\.\.\)$"),
    ({f"{TOWERS}[:].losses[weight>5].weight": 2},
     r"'losses\[weight>5\]' matches none of the 2 elements \(their weight: 1\.0, 1\.0\)"),
    ({"feature_config.features[18:].embedding_dim": 1}, r"selects none of the 18 elements"),
    ({"feature_config.features[18].embedding_dim": 1},
     r"'features\[18\]': index 18 is out of range: features has 18 elements"),
    ({"feature_config.features[-19].embedding_dim": 1}, r"index -19 is out of range"),
    ({f"{TOWERS}[:].dnn.hidden_units[1]": 1},
     r"'hidden_units\[1\]': index 1 is out of range: hidden_units has 1 element$"),
    ({"feature_config.features[:]": "{embedding_dim: 1}"},
     r"'features\[:\]': a range must be followed by a field"),
    ({"feature_config.features[2:4]": "{}"}, r"a range must be followed by a field"),
    ({f"{TOWERS}[0].dnn.hidden_units[:]": 1}, r"a range must be followed by a field"),
    ({"train_config.num_steps": "200.0"},
     r"train_config\.num_steps: '200\.0' is not an integer \(num_steps is a uint32\)"),
    ({"train_config.num_steps": True}, r"'True' is not an integer"),
    ({"model_config.model_params.l2_regularization": "small"}, r"'small' is not a number"),
    ({"data_config.shuffle": "yes"}, r"'yes' is not a bool: use true or false"),
    ({"data_config.shuffle": 1}, r"'1' is not a bool"),
    ({f"{TOWERS}[0].loss_type": "NO_SUCH_LOSS"},
     r"'NO_SUCH_LOSS' is not a LossType: one of CLASSIFICATION, .*ORDER_CALIBRATE_LOSS"),
    ({"data_config.batch_size": -1}, r"'-1' doesn't fit batch_size, a uint32"),
    ({f"{TOWERS}[0].dnn.hidden_units": "[64, wide]"}, r"can't read 'hidden_units:\[64, wide\]'"),
    ({f"{TOWERS}[0].dnn.hidden_units": "64 use_bn: false"}, r"sets more than hidden_units"),
    ({f"{TOWERS}[0].dnn": "{hidden_unit: 64}"},
     r"can't read 'hidden_unit: 64' as a DNN in text format"),
    ({"feature_config.features[input_names[0]=price].feature_type": 99},
     r"'99' is not a FeatureType"),
    ({"train_config": {"num_steps": 200}},
     r'^--edit-config-json: train_config: a JSON object is not a value .*use dotted keys, '
     r'e\.g\. "train_config\.num_steps": 200$'),
    ({"model_config": {"model_params": {"l2_regularization": 0.1}}},
     r'e\.g\. "model_config\.model_params\.l2_regularization": 0\.1$'),
    ({"data_config.batch_size;train_config.num_steps": 200},
     r"2 ';'-separated paths but 1 value in '200'; they are paired in order"),
    ({"feature_config.features.embedding_dim": 1},
     r"'features' is a repeated field: select elements with features\[i\]"),
    ({"feature_config.features": "{}"}, r"features is a repeated message field"),
    ({"train_config.num_steps.value": 1}, r"'num_steps' is a uint32, not a message"),
    ({"feature_config.features[input_names=pid].embedding_dim": 1},
     r"on features\[0\]: a condition compares one scalar field of each element, and its key "
     r"'input_names' is a repeated field; pick one element, e.g. input_names\[0\]"),
    ({"feature_config.features[first].embedding_dim": 1},
     r"expected an index \[i\], a range \[a:b\] or \[:\], or a condition \[key=value\]"),
    ({"train_config.num_steps[0]": 1}, r"num_steps is not a repeated field"),
    ({"feature_config.features[0.embedding_dim": 1}, r"unbalanced '\['"),
    ({" . ": 1}, r"an empty path"),
    # A ':' in a condition's value keeps it a condition (EasyRec takes it for a slice).
    ({f"{BLOCKS}[name=share:bottom].name": "x"},
     r"'blocks\[name=share:bottom\]' matches none of the 4 elements \(their name: "
     r"'share_bottom', 'ctr_tower'"),
    ({"feature_config.features[0].input_names": [{"name": "pid"}]},
     r"a JSON object is not a value"),
])
def test_refused_with_the_reason(edits, pattern):
  _refused(edits, pattern)


def test_a_refused_edit_leaves_the_earlier_ones_unapplied():
  proto = _proto()
  with pytest.raises(ConfigError, match="num_step"):
    apply_edits(proto, {"data_config.batch_size": 64, "train_config.num_step": 1})
  assert proto.data_config.batch_size == 4096


def test_the_flags_json_is_an_object():
  assert parse_edit_json('{"train_config.num_steps": 200, "a;b": "1;2"}') == {
      "train_config.num_steps": 200, "a;b": "1;2"}
  with pytest.raises(ConfigError, match=r"^--edit-config-json: not valid JSON \(Expecting "):
    parse_edit_json("{train_config.num_steps: 200}")
  with pytest.raises(ConfigError, match=r"^--edit-config-json: expected a JSON object .* got "
                                        r"an array"):
    parse_edit_json("[1, 2]")
  with pytest.raises(ConfigError, match=r"^--edit-config-json: train_config\.num_steps: given "
                                        "twice"):
    parse_edit_json('{"train_config.num_steps": 1, "train_config.num_steps": 2}')


# --- load_config: edits first, then every check ---------------------------------

def test_load_config_checks_the_edited_config_and_hands_out_its_text():
  edits = {"train_config.num_steps": 200, f"{TOWERS}[tower_name=cvr].weight": 2.5}
  config = load_config(REFERENCE, edits)
  assert config.source == (f"{REFERENCE} (edited: train_config.num_steps, "
                           f"{TOWERS}[tower_name=cvr].weight)")
  assert config.edits == (("train_config.num_steps", "200", 1),
                          (f"{TOWERS}[tower_name=cvr].weight", "2.5", 1))
  assert config.stem == "easyrec_aitm_on_taobao"
  # The checks ran on the edited config: the task reads the edited weight.
  assert [t.classification_weight for t in config.tasks] == [1.0, 2.5]
  # Components receive the edited text, and it reads back as the edited config.
  assert "num_steps: 200" in config.text and "weight: 2.5" in config.text
  assert parse_config(config.text).proto == config.proto
  unedited = load_config(REFERENCE)
  expected = _proto()
  expected.train_config.num_steps = 200
  expected.model_config.model_params.task_towers[1].weight = 2.5
  assert config.proto == expected and unedited.proto == _proto()
  assert unedited.edits == () and unedited.source == REFERENCE
  assert load_config(REFERENCE, {}).source == REFERENCE


def test_an_edit_that_breaks_the_config_is_refused_by_its_checks():
  with pytest.raises(ConfigError) as error:
    load_config(REFERENCE, {f"{TOWERS}[0].weight": -1})
  assert re.match(re.escape(f"{REFERENCE} (edited: {TOWERS}[0].weight):") +
                  r"\d+: weight: tower 'ctr': the weight must be a finite number >= 0",
                  str(error.value)), str(error.value)


def test_an_edit_can_mend_a_config_the_checks_refuse(tmp_path):
  with open(REFERENCE, encoding="utf-8") as f:
    text = f.read().replace("batch_size: 4096", "batch_size: 0")
  bad = tmp_path / "zero_batch.config"
  bad.write_text(text)
  with pytest.raises(ConfigError, match=r"zero_batch.config:\d+: batch_size: must be positive"):
    load_config(str(bad))
  assert load_config(str(bad), {"data_config.batch_size": 512}).proto.data_config.batch_size \
      == 512


def test_an_edit_error_names_the_config_it_edited():
  with pytest.raises(ConfigError) as error:
    load_config(REFERENCE, {"train_config.num_step": 1})
  message = str(error.value)
  assert message.startswith("--edit-config-json: train_config.num_step: unknown field")
  assert message.endswith(f"(editing {REFERENCE})")


def test_the_cli_reads_the_flag_and_prints_each_edit(capsys):
  from cli.common_flags import config_edits, load_configs
  from cli.main import build_parser
  for command in ("run", "compare"):
    args = build_parser().parse_args(
        [command, "--data", "d", "--edit-config-json", '{"train_config.num_steps": 200}'])
    assert config_edits(args) == {"train_config.num_steps": 200}
  assert config_edits(build_parser().parse_args(["run"])) is None
  config, = load_configs([REFERENCE], edits={
      "train_config.num_steps": 200, "feature_config.features[:].embedding_dim": 8})
  assert config.proto.train_config.num_steps == 200
  assert capsys.readouterr().out.splitlines() == [
      f"{REFERENCE}, edited by --edit-config-json:",
      "  edit: train_config.num_steps = 200 (1 field)",
      "  edit: feature_config.features[:].embedding_dim = 8 (18 fields)"]
