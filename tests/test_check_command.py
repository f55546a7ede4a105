"""`aitm check`: every shipped and reference config checks, builds and prints; the
printed shapes, weights and parameter counts are the model's, derived here by hand
from the config numbers where that is short."""

import glob
import os
import re
import subprocess
import sys

import pytest

from cli import main as cli
from models.backbone import build_model
from models.config import load_config, topological_order
from models.features import Encoding
from models.model_summary import embedding_rows, summary_lines
from pipeline import configs

# Every shipped config; EasyRec's samples among them as configs/easyrec_<sample>.config.
CONFIGS = sorted(glob.glob(os.path.join(configs.PROJECT_DIR, "configs", "*.config")))


def _sample(name):
  return os.path.join(configs.PROJECT_DIR, "configs", f"easyrec_{name}.config")


AITM_SAMPLE = _sample("aitm_on_taobao")


def _check(capsys, *args):
  """`aitm check ARGS` in this process: its stdout lines."""
  cli.main(["check", *args])
  return capsys.readouterr().out.splitlines()


def _section(lines, title):
  """The rows of the table under the line starting with `title`, by first cell; the
  cells are split where two or more spaces are."""
  start = next(i for i, line in enumerate(lines) if line.startswith(title))
  header = re.split(r"\s{2,}", lines[start + 1].strip())
  rows = {}
  for line in lines[start + 2:]:
    if not line.startswith("  ") or line.startswith("   "):
      break
    cells = re.split(r"\s{2,}", line.strip())
    rows.setdefault(cells[0], []).append(dict(zip(header, cells)))
  return rows


def _one(rows, name):
  found, = rows[name]
  return found


def _int(text):
  return int(text.replace(",", ""))


def _counted(lines):
  """(trainable, non-trainable) over the blocks and towers, and the embedding
  parameters the table lists, "?" ones left out."""
  trainable = non_trainable = 0
  for title in ("blocks", "towers"):
    for rows in _section(lines, title).values():
      for row in rows:
        trainable += _int(row["trainable"])
        non_trainable += _int(row["non-trainable"])
  embeddings = sum(_int(row["parameters"]) for rows in _section(lines, "embeddings").values()
                   for row in rows if row["parameters"] != "?")
  return trainable, non_trainable, embeddings


def _batch_normed_dnn(inputs, units):
  """(trainable, non-trainable) parameters of EasyRec's DNN with its default batch
  norm, so no bias: per layer a kernel, gamma and beta; moving mean and variance."""
  widths = [inputs] + units
  return sum(a * b + 2 * b for a, b in zip(widths, units)), 2 * sum(units)


def test_the_configs_are_all_there():
  assert len(CONFIGS) == len(set(CONFIGS)) == 16
  assert sum(os.path.basename(path).startswith("easyrec_") for path in CONFIGS) == 9


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_config_checks_and_its_summary_adds_up(path, capsys):
  lines = _check(capsys, "--config", path)
  assert lines[0] == f"config       {path}"
  config = load_config(path)
  assert lines[2] == f"model_class  {config.proto.model_config.model_class}"
  blocks = _section(lines, "blocks (topological order)")
  assert list(blocks) == topological_order(config.model.backbone)
  assert list(_section(lines, "towers")) == [t.name for t in config.tasks]
  trainable, non_trainable, embeddings = _counted(lines)
  totals = _section(lines, "totals")
  unknown = any(f.encoding is Encoding.VOCABULARY for f in config.features)
  more = " + ?" if unknown else ""
  assert _one(totals, "dense")["trainable"] == f"{trainable:,}"
  assert _one(totals, "dense")["non-trainable"] == f"{non_trainable:,}"
  assert _one(totals, "embeddings")["trainable"] == f"{embeddings:,}{more}"
  assert _one(totals, "all")["total"] == f"{trainable + non_trainable + embeddings:,}{more}"
  assert not any("no block or tower" in line for line in lines)
  assert any(line.startswith("? compute_vocabulary") for line in lines) == unknown


@pytest.mark.parametrize("path", [AITM_SAMPLE, _sample("mmoe_backbone_on_taobao"),
                                  _sample("dbmtl_on_taobao"), _sample("esmm_on_taobao"),
                                  _sample("ple_on_taobao"),
                                  os.path.join(configs.PROJECT_DIR, "configs",
                                               "aitm_taobao.config")],
                         ids=os.path.basename)
def test_blocks_towers_and_embeddings_are_every_parameter_of_the_model(path):
  config = load_config(path)
  model = build_model(config, embedding_rows(config))
  trainable, non_trainable, embeddings = _counted(summary_lines(config, model))
  # A learned vocabulary's table is built with a placeholder and printed as "?".
  placeholders = sum(model.get_layer("features").tables[f.name].input_dim * f.embedding_dim
                     for f in config.features if f.encoding is Encoding.VOCABULARY)
  assert trainable + non_trainable + embeddings + placeholders == model.count_params()
  assert ("aitm_taobao" in path) == (placeholders > 0)


def test_mmoe_backbone_block_shapes_and_senet_parameters(capsys):
  blocks = _section(_check(capsys, "--config", _sample("mmoe_backbone_on_taobao")), "blocks")
  # 17 features of embedding_dim 16, as a list; SENet concatenates them: 17 x 16 = 272.
  assert _one(blocks, "all")["output"] == "17 x [B, 16]"
  assert _one(blocks, "all")["layer"] == "input_layer"
  senet = _one(blocks, "senet")
  assert (senet["layer"], senet["inputs"], senet["output"]) == ("SENet", "all", "[B, 272]")
  # Squeeze: max and mean of 2 groups per field, 17 x 2 x 2 = 68 -> 68 // 4 = 17 relu
  # units -> 272 excitations, both with a bias; the output layer norm's gamma and beta.
  assert _int(senet["trainable"]) == (68 * 17 + 17) + (17 * 272 + 272) + 2 * 272 == 6_613
  assert senet["non-trainable"] == "0"
  mmoe = _one(blocks, "mmoe")
  assert (mmoe["layer"], mmoe["output"]) == ("MMoE", "2 x [B, 128]")


def test_a_block_without_a_layer_passes_its_input_on(capsys):
  lines = _check(capsys, "--config", _sample("simple_multi_task_backbone_on_taobao"))
  identity = _one(_section(lines, "blocks"), "identity")
  assert (identity["layer"], identity["inputs"], identity["output"]) == (
      "identity", "group:all", "[B, 272]")
  assert (identity["trainable"], identity["non-trainable"]) == ("0", "0")
  for tower in ("ctr", "cvr"):
    assert _one(_section(lines, "towers"), tower)["input"] == "identity (shared)"


def test_esmm_concatenates_its_group_dnns_and_names_easyrec_losses(capsys):
  lines = _check(capsys, "--config", _sample("esmm_on_taobao"))
  assert lines[3] == "style        esmm (translated to a backbone)"
  bottom = _one(_section(lines, "blocks"), "bottom")
  # The user, item and combo DNNs end in 64, 64 and 32 units.
  assert (bottom["layer"], bottom["output"]) == ("concat", "[B, 160]")
  assert _one(_section(lines, "towers"), "cvr")["conditional_on"] == "ctr"
  losses = _section(lines, "losses")
  assert [_one(losses, t)["EasyRec name"] for t in ("ctr", "cvr")] == [
      "weighted_cross_entropy_loss_ctr", "weighted_cross_entropy_loss_cvr"]


def test_ple_towers_read_the_last_level_expert_width(capsys):
  lines = _check(capsys, "--config", _sample("ple_on_taobao"))
  assert _one(_section(lines, "blocks"), "ple")["output"] == "2 x [B, 16]"
  towers = _section(lines, "towers")
  for index, tower in enumerate(("ctr", "cvr")):
    # The third extraction network's task experts end in 16 units.
    assert _one(towers, tower)["input"] == f"ple[{index}]"
    assert _one(towers, tower)["input shape"] == "[B, 16]"


def test_dbmtl_relation_input_is_its_own_and_the_related_towers_features(capsys):
  lines = _check(capsys, "--config", _sample("dbmtl_on_taobao"))
  assert lines[1:4] == ["model_name   (not set; the model is called DBMTL)",
                        "model_class  DBMTL", "style        dbmtl (translated to a backbone)"]
  towers = _section(lines, "towers")
  ctr, cvr = _one(towers, "ctr"), _one(towers, "cvr")
  assert ctr["input"] == cvr["input"] == "bottom_dnn (shared)"
  assert ctr["input shape"] == "[B, 256]"   # bottom_dnn [1024, 512, 256]
  # cvr's dnn ends in 32, ctr's relation_dnn too: 32 + 32 = 64.
  assert cvr["relation input"] == "32 + ctr 32 = [B, 64]"
  assert ctr["relation input"] == "[B, 32]"
  assert ctr["relation_dnn"] == cvr["relation_dnn"] == "32"
  # Then a head 32 -> 1 with a bias, and the calibration intercept (not trainable).
  dnn = _batch_normed_dnn(256, [256, 128, 64, 32])
  ctr_relation, cvr_relation = _batch_normed_dnn(32, [32]), _batch_normed_dnn(64, [32])
  assert _int(ctr["trainable"]) == dnn[0] + ctr_relation[0] + 33 == 110_625
  assert _int(cvr["trainable"]) == dnn[0] + cvr_relation[0] + 33 == 111_649
  assert _int(ctr["non-trainable"]) == dnn[1] + ctr_relation[1] + 1 == 1_025


def test_aitm_sample_loss_weights_and_their_edit(capsys):
  losses = _section(_check(capsys, "--config", AITM_SAMPLE), "losses")
  assert [(r["loss"], r["weight"], r["EasyRec name"]) for r in losses["ctr"]] == [
      ("CLASSIFICATION", "1 x 1 = 1", "cross_entropy_loss_ctr")]
  assert [(r["loss"], r["weight"], r["EasyRec name"]) for r in losses["cvr"]] == [
      ("CLASSIFICATION", "1 x 1 = 1", "cross_entropy_loss_cvr"),
      ("ORDER_CALIBRATE_LOSS", "1 x 1 = 1", "order_calibrate_loss")]
  assert losses["cvr"][1]["details"] == "p_cvr <= p_ctr"  # the preceding tower

  edit = ('{"model_config.model_params.task_towers[1].weight": 0.5, '
          '"model_config.model_params.task_towers[1].losses[1].weight": 0.2}')
  lines = _check(capsys, "--config", AITM_SAMPLE, "--edit-config-json", edit)
  assert f"{AITM_SAMPLE}, edited by --edit-config-json:" in lines
  cvr = _section(lines, "losses")["cvr"]
  assert [r["weight"] for r in cvr] == ["1 x 0.5 = 0.5", "0.2 x 0.5 = 0.1"]
  # ... which is what the model trains with.
  config = load_config(AITM_SAMPLE, {
      "model_config.model_params.task_towers[1].weight": 0.5,
      "model_config.model_params.task_towers[1].losses[1].weight": 0.2})
  model = build_model(config, embedding_rows(config))
  assert model.get_layer("cvr_order_calibrate_loss").weight == pytest.approx(0.1)
  assert config.tasks[1].classification_weight == pytest.approx(0.5)


def test_edit_config_json_changes_what_is_printed(capsys):
  path = _sample("mmoe_on_taobao")
  before = _one(_section(_check(capsys, "--config", path), "blocks"), "mmoe")
  lines = _check(capsys, "--config", path, "--edit-config-json",
                 '{"model_config.mmoe.num_expert": 2}')
  assert "  edit: model_config.mmoe.num_expert = 2 (1 field)" in lines
  after = _one(_section(lines, "blocks"), "mmoe")
  # An expert is expert_dnn 256,192,128,64 on the 272 concatenated embeddings; each of
  # the 2 tasks' gates is a linear layer with a bias over the experts.
  expert, _ = _batch_normed_dnn(272, [256, 192, 128, 64])
  gates = 2 * (272 + 1)
  assert _int(before["trainable"]) == 4 * expert + 4 * gates == 613_512
  assert _int(after["trainable"]) == 2 * expert + 2 * gates == 306_756
  assert before["output"] == after["output"] == "2 x [B, 64]"


def test_several_configs_in_one_call(capsys):
  lines = _check(capsys, "--config", _sample("esmm_on_taobao"), "--config",
                 _sample("ple_on_taobao"))
  assert [line for line in lines if line.startswith("config ")] == [
      f"config       {_sample('esmm_on_taobao')}", f"config       {_sample('ple_on_taobao')}"]


def test_a_bad_config_exits_1_naming_the_file_and_line(tmp_path):
  with open(configs.CONFIG_PATH) as f:
    text = f.read().replace('inputs { block_name: "ctr_tower" }', 'inputs { block_name: "ctr" }')
  bad = tmp_path / "bad.config"
  bad.write_text(text)
  line = next(i for i, l in enumerate(text.splitlines(), 1) if 'block_name: "ctr" }' in l)
  result = subprocess.run([sys.executable, "-m", "cli.main", "check", "--config", str(bad)],
                          capture_output=True, text=True, timeout=300,
                          cwd=configs.PROJECT_DIR)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"error: {bad}:{line}: block_name: block 'cvr_aitm': no block 'ctr'"]
  assert result.stdout == ""


def test_a_model_that_does_not_build_is_an_error_naming_the_config(capsys):
  path = _sample("mmoe_backbone_on_taobao")
  with pytest.raises(SystemExit) as stop:
    _check(capsys, "--config", path, "--edit-config-json",
           '{"model_config.backbone.blocks[name=senet].keras_layer.senet.num_squeeze_group": 3}')
  assert str(stop.value.code) == (
      f"error: {path} (edited: model_config.backbone.blocks[name=senet].keras_layer.senet."
      "num_squeeze_group): the model doesn't build: SENet field 0 has width 16, which is "
      "not a positive multiple of num_squeeze_group 3")


def test_a_schema_is_checked_only_when_given(capsys):
  path = os.path.join(configs.PROJECT_DIR, "configs", "aitm_click_cart_buy.config")
  assert _check(capsys, "--config", path)[0] == f"config       {path}"
  with pytest.raises(SystemExit) as stop:
    _check(capsys, "--config", path, "--schema", configs.SCHEMA_PATH)
  assert str(stop.value.code).startswith("error: ")
  assert "'cart' is not in the schema" in str(stop.value.code)
