"""The CLI refuses a bad config before any work, naming file, line and field."""

import os
import subprocess
import sys

import pytest

from pipeline import configs


def _aitm(*args, cwd):
  return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True,
                        text=True, timeout=300, cwd=cwd)


def test_bad_config_is_refused_before_any_work(tmp_path):
  with open(configs.CONFIG_PATH) as f:
    text = f.read().replace('inputs { block_name: "ctr_tower" }', 'inputs { block_name: "ctr" }')
  bad = tmp_path / "bad.config"
  bad.write_text(text)
  line = next(i for i, l in enumerate(text.splitlines(), 1) if 'block_name: "ctr" }' in l)
  result = _aitm("run", "--config", str(bad), "--data", str(tmp_path),
                 "--pipeline-root", str(tmp_path / "root"), cwd=configs.PROJECT_DIR)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (f"error: {bad}:{line}: block_name: block 'cvr_aitm': "
                                   "no block 'ctr'")
  assert not os.path.exists(tmp_path / "root")


def test_bad_edit_config_json_is_refused_before_any_work(tmp_path):
  result = _aitm("run", "--edit-config-json", '{"train_config.num_steps": 200,}',
                 "--data", str(tmp_path), "--pipeline-root", str(tmp_path / "root"),
                 cwd=configs.PROJECT_DIR)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      "error: --edit-config-json: not valid JSON (Expecting property name"), result.stderr
  assert "edit:" not in result.stdout
  assert not os.path.exists(tmp_path / "root")


def test_config_that_disagrees_with_the_schema_is_refused(tmp_path):
  with open(configs.CONFIG_PATH) as f:
    text = f.read().replace('input_name: "cms_segid" input_type: STRING',
                            'input_name: "cms_segid" input_type: INT32')
  bad = tmp_path / "float_price.config"
  bad.write_text(text)
  result = _aitm("compare", "--configs", str(bad), "--data", str(tmp_path),
                 "--pipeline-root", str(tmp_path / "root"), cwd=configs.PROJECT_DIR)
  assert result.returncode == 1
  assert "don't match the schema" in result.stderr
  assert "'cms_segid' is INT in the config but BYTES in the schema" in result.stderr
  assert not os.path.exists(tmp_path / "root")


def test_serve_and_predict_refuse_bad_arguments_with_a_named_reason(tmp_path):
  both = _aitm("serve", "--model-base-path", str(tmp_path), "--model-config-file",
               str(tmp_path / "x.config"), cwd=configs.PROJECT_DIR)
  assert both.returncode == 1 and "not both" in both.stderr
  bad = tmp_path / "models.config"
  bad.write_text("model_config_list { config { name: 'aitm' } }")
  result = _aitm("serve", "--model-config-file", str(bad), cwd=configs.PROJECT_DIR)
  assert result.returncode == 1 and f"{bad}: every config needs a name and a base_path" in \
      result.stderr
  missing = _aitm("predict", "--input", str(tmp_path / "rows.csv"), cwd=configs.PROJECT_DIR)
  assert missing.returncode == 1 and "rows.csv is not a file" in missing.stderr
  rows = tmp_path / "rows.csv"
  rows.write_text("pid\n430548_1007\n")
  nobody = _aitm("predict", "--server", "127.0.0.1:1", "--input", str(rows), "--timeout", "2",
                 cwd=configs.PROJECT_DIR)
  assert nobody.returncode == 1 and "UNAVAILABLE" in nobody.stderr.splitlines()[-1]


def test_split_settings_are_refused_with_the_reason(tmp_path):
  label = _aitm("run", "--split", "columns=clk", "--data", str(tmp_path),
                "--pipeline-root", str(tmp_path / "root"), cwd=configs.PROJECT_DIR)
  assert label.returncode == 1
  assert label.stderr.strip().splitlines()[-1].endswith(
      "the split can't hash the label 'clk': a split must never depend on the labels")
  unknown = _aitm("run", "--split", "nonsense", cwd=configs.PROJECT_DIR)
  assert unknown.returncode == 2 and "expected row, span or columns=NAME" in unknown.stderr
  no_spans = _aitm("run", "--split", "span", "--data", str(tmp_path),
                   "--pipeline-root", str(tmp_path / "root"), cwd=configs.PROJECT_DIR)
  assert no_spans.returncode == 1 and "need --data with span-N/ directories" in no_spans.stderr
  (tmp_path / "span-1").mkdir()
  first = _aitm("run", "--split", "span", "--data", str(tmp_path),
                "--pipeline-root", str(tmp_path / "root"), cwd=configs.PROJECT_DIR)
  assert first.returncode == 1 and "has none before it" in first.stderr
  assert not os.path.exists(tmp_path / "root")


def test_generate_data_repeats_impressions_unless_told_not_to(tmp_path):
  import csv
  from collections import Counter
  shares = {}
  for share in ("0.5", "0"):
    out = tmp_path / share
    result = _aitm("generate-data", "--out", str(out), "--rows", "5000", "--repeat-share",
                   share, cwd=configs.PROJECT_DIR)
    assert result.returncode == 0, result.stderr
    with open(out / "data.csv") as f:
      pairs = Counter((row["user_id"], row["adgroup_id"]) for row in csv.DictReader(f))
    shares[share] = sum(n for n in pairs.values() if n > 1) / 5000
  assert shares["0.5"] > shares["0"] + 0.15
  bad = _aitm("generate-data", "--out", str(tmp_path / "x"), "--repeat-share", "2",
              cwd=configs.PROJECT_DIR)
  assert bad.returncode == 1 and "--repeat-share" in bad.stderr


def test_version_and_help_defaults_come_from_the_code():
  import argparse
  import re as regex
  from cli.main import build_parser
  from components.label_blind_split import Split
  from models.gate_thresholds import DEFAULT_MAX_AUC_DROP, DEFAULT_MIN_AUC
  from models.training import TrainingConfig
  result = _aitm("--version", cwd=configs.PROJECT_DIR)
  with open(os.path.join(configs.PROJECT_DIR, "pyproject.toml")) as f:
    version = regex.search(r'^version = "([^"]+)"', f.read(), regex.M).group(1)
  assert result.returncode == 0 and result.stdout.strip() == f"aitm {version}"
  parser = build_parser()
  commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
  checked = 0
  for name, sub in commands.choices.items():
    for action in sub._actions:
      text = (action.help or "") % {"default": action.default} if action.help else ""
      # Numbers and the split: a help that states them must state the code's.
      if "default" not in text or isinstance(action.default, bool) or not isinstance(
          action.default, (int, float, Split)):
        continue
      shown = regex.findall(r"default:? ([^\s,;)]+)", text)
      assert any(str(action.default) in s or repr(action.default) in text for s in shown) or \
          str(action.default) in text, (name, action.dest, action.default, text)
      checked += 1
  assert checked >= 5
  run = commands.choices["run"]
  helps = {a.dest: a.help for a in run._actions}
  assert f"default {TrainingConfig().patience})" in helps["patience"]
  assert f"default {DEFAULT_MIN_AUC})" in helps["min_auc"]
  assert f"default {DEFAULT_MAX_AUC_DROP})" in helps["max_auc_drop"]
  assert (commands.choices["compile-kfp"].get_default("output")
          == commands.choices["schedule-kfp"].get_default("package"))


REFUSALS = {
    "evaluator": dict(blessed=False,
                      not_blessed=["not blessed: ctr AUC 0.510 is below the floor 0.55"]),
    "infra validator": dict(blessed=True, infra_blessed=False,
                            infra_reason="failed to load in the model server: IndexError: "
                            "Read less bytes than requested"),
}


@pytest.mark.parametrize("refused_by", sorted(REFUSALS))
def test_run_exits_with_its_own_code_when_the_model_was_not_blessed(tmp_path, monkeypatch,
                                                                    capsys, refused_by):
  from cli import main as cli
  from pipeline import local_runner
  from report import run_summary
  from report.run_summary import RunSummary

  def run_local(**kwargs):
    assert kwargs["training"]["seed"] == 5
    return "metadata.sqlite"

  def not_blessed(metadata_path, labels=()):
    assert metadata_path == "metadata.sqlite"
    fields = dict(REFUSALS[refused_by])
    return RunSummary("run", {}, {}, {"train": 8, "eval": 2}, {"ctr": 0.51},
                      fields.pop("blessed"), None, **fields)
  monkeypatch.setattr(local_runner, "run_local", run_local)
  monkeypatch.setattr(run_summary, "summarize", not_blessed)
  (tmp_path / "data").mkdir()
  with pytest.raises(SystemExit) as stop:
    cli.main(["run", "--data", str(tmp_path / "data"), "--pipeline-root",
              str(tmp_path / "root"), "--seed", "5"])
  assert stop.value.code == configs.EXIT_NOT_BLESSED == 3
  out = capsys.readouterr().out
  assert "the model was not blessed" in out and "nothing pushed" in out
  if refused_by == "infra validator":
    assert ("infra validated       no: failed to load in the model server: IndexError: "
            "Read less bytes than requested") in out


def test_make_test_without_chromium_stops_before_the_suite_saying_how():
  """Not root (or no apt-get): make names the one command and runs no test; with
  Chromium on PATH, nothing to do."""
  missing = subprocess.run(["make", "-s", "chromium", "CHROMIUM=no-such-chromium", "AS_ROOT=no"],
                           capture_output=True, text=True, timeout=60, cwd=configs.PROJECT_DIR)
  assert missing.returncode != 0
  assert "sudo apt-get install chromium" in missing.stderr
  present = subprocess.run(["make", "-s", "chromium", f"CHROMIUM={sys.executable}"],
                           capture_output=True, text=True, timeout=60, cwd=configs.PROJECT_DIR)
  assert present.returncode == 0 and present.stdout == ""
  with open(os.path.join(configs.PROJECT_DIR, "Makefile")) as f:
    assert "\ntest: $(STAMP) chromium\n" in f.read()
