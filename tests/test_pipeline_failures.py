"""A run over bad data stops with the cause named and pushes nothing."""

import os
import re

import pytest

from datagen import taobao
from models.config import load_config
from pipeline import configs
from pipeline.local_runner import run_local

pytestmark = pytest.mark.e2e


def _rewrite(path, change):
  with open(path) as f:
    lines = f.read().splitlines()
  lines = change(lines)
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def _run(tmp_path):
  return run_local(config=load_config(configs.CONFIG_PATH), data_root=str(tmp_path / "data"), pipeline_root=str(tmp_path / "pipeline"),
                   serving_dir=str(tmp_path / "serving"))


def test_non_numeric_price_fails_in_example_gen_and_pushes_nothing(tmp_path):
  path = taobao.write_csv(str(tmp_path / "data"), 300, seed=2)

  def break_price(lines):
    lines[57] = lines[57].rsplit(",", 1)[0] + ",12EUR"
    return lines

  _rewrite(path, break_price)
  with pytest.raises(Exception) as failure:
    _run(tmp_path)
  assert re.search(r"Bad input in .*data\.csv, line 58, field 'price': '12EUR' is not an integer", str(failure.value))
  assert not os.path.exists(tmp_path / "serving")


def test_schema_anomaly_stops_the_run_before_training(tmp_path):
  path = taobao.write_csv(str(tmp_path / "data"), 400, seed=3)
  _rewrite(path, lambda lines: [lines[0]] + [l.replace("430548_1007", "999999_1") for l in lines[1:]])
  with pytest.raises(Exception) as failure:
    _run(tmp_path)
  message = str(failure.value)
  assert "ExampleValidator found anomalies" in message
  assert "pid" in message and "999999_1" in message
  assert not os.path.exists(tmp_path / "pipeline" / "Trainer")
  assert not os.path.exists(tmp_path / "serving")


def test_cli_reports_a_missing_column_in_one_line(tmp_path):
  import subprocess
  import sys
  path = taobao.write_csv(str(tmp_path / "data"), 50, seed=4)
  _rewrite(path, lambda lines: [l.rsplit(",", 1)[0] for l in lines])  # drop price
  result = subprocess.run(
      [sys.executable, "-m", "cli.main", "run", "--data", str(tmp_path / "data"),
       "--pipeline-root", str(tmp_path / "pipeline"), "--serving-dir", str(tmp_path / "serving")],
      capture_output=True, text=True, timeout=600,
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 1, result.stderr[-2000:]
  assert re.search(r"error: Bad input in .*data\.csv, line 1 \(header\): missing column\(s\) "
                   r"\['price'\]", result.stderr), result.stderr[-2000:]
  assert "nothing was pushed" in result.stderr
  assert not os.path.exists(tmp_path / "serving")


def test_input_without_data_rows_stops_the_run_saying_so(tmp_path):
  path = taobao.write_csv(str(tmp_path / "data"), 50, seed=5)
  _rewrite(path, lambda lines: lines[:1])   # the header alone
  with pytest.raises(Exception) as failure:
    _run(tmp_path)
  assert re.search(r"Bad input: .*data/\* matches 1 CSV file\(s\) with a header but no data "
                   r"rows", str(failure.value)), str(failure.value)[-2000:]
  assert not os.path.exists(tmp_path / "serving")


def test_bytes_that_are_not_utf8_stop_the_run_naming_the_line(tmp_path):
  path = taobao.write_csv(str(tmp_path / "data"), 50, seed=6)
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  lines[9] = lines[9].replace(b"430548_1007", b"430548_1007\xff")
  with open(path, "wb") as f:
    f.write(b"\n".join(lines))
  with pytest.raises(Exception) as failure:
    _run(tmp_path)
  assert re.search(r"Bad input in .*data\.csv, line 10: not UTF-8 text", str(failure.value))
  assert not os.path.exists(tmp_path / "serving")
