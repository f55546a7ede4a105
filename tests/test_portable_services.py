"""The environment Beam's local job service, worker pool and SDK workers get
(pipeline/portable_services.py); the services themselves run in
tests/test_portable_runner.py."""

import os
import stat
import sys

import pytest

from pipeline import configs
from pipeline.portable_services import worker_environment


def _program(path):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("#!/bin/sh\nexit 0\n")
  path.chmod(path.stat().st_mode | stat.S_IXUSR)
  return str(path)


def test_a_worker_gets_the_project_the_keras_flag_and_this_python_only(monkeypatch, tmp_path):
  other = _program(tmp_path / "other" / "python")
  monkeypatch.setenv("PATH", os.path.dirname(other))
  monkeypatch.setenv("AITM_ONLY_HERE", "1")
  env = worker_environment()
  assert env["PYTHONPATH"] == configs.PROJECT_DIR
  assert env["TF_USE_LEGACY_KERAS"] == "1"
  # Beam's worker pool runs `python` from PATH: this interpreter's comes first.
  assert env["PATH"].split(os.pathsep) == [os.path.dirname(sys.executable),
                                           os.path.dirname(other)]
  assert "AITM_ONLY_HERE" not in env


def test_a_path_whose_python_is_another_interpreter_is_refused(monkeypatch, tmp_path):
  """An interpreter whose directory has no `python` (a system python3.10, say): the pool
  would start the first `python` on PATH instead, and every worker would fail."""
  other = _program(tmp_path / "other" / "python")
  lonely = _program(tmp_path / "system" / "python3.10")
  monkeypatch.setenv("PATH", os.path.dirname(other))
  with pytest.raises(ValueError, match="starts `python` from PATH"):
    worker_environment(python=lonely)
