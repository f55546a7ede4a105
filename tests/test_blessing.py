"""The blessing gate end to end, against the session run's model as the baseline: a
model trained on shuffled labels is rejected by the change threshold, a retrain of the
session model is blessed and pushed (conftest: pipeline_run, gate_runs)."""

import os

import pytest

from pipeline.pipeline import RESOLVER_ID

pytestmark = pytest.mark.e2e
TASKS = ("ctr", "cvr")


def _versions(serving_dir):
  model_dir = os.path.join(serving_dir, "aitm")
  return os.listdir(model_dir) if os.path.isdir(model_dir) else []


def test_first_run_has_no_baseline_and_is_blessed_on_the_floors(pipeline_run):
  first = pipeline_run.first
  assert first.component_states[RESOLVER_ID] == "COMPLETE"
  assert first.baseline_auc == {} and first.blessed is True and first.not_blessed == []


def test_a_rerun_does_not_take_its_own_model_as_the_baseline(pipeline_run):
  """The cached Trainer's model is the one blessed last time; the resolver leaves it
  out, so the Evaluator and Pusher come from the cache and nothing is pushed twice."""
  second = pipeline_run.second
  assert second.component_states["Evaluator"] == "CACHED"
  assert second.component_states["Pusher"] == "CACHED"
  assert second.baseline_auc == {} and len(_versions(pipeline_run.serving_dir)) == 1


def test_weak_model_is_rejected_by_the_change_threshold(gate_runs, pipeline_run):
  weak = gate_runs.weak
  assert weak.component_states["Trainer"] == "COMPLETE"
  assert weak.baseline_auc == pytest.approx(pipeline_run.first.auc)  # the session model
  assert weak.blessed is False and weak.pushed_dir is None
  assert _versions(gate_runs.weak_serving_dir) == []
  # At least one task falls by more than the allowed 0.01; each such task is named.
  dropped = [t for t in TASKS if weak.auc[t] < weak.baseline_auc[t] - 0.01]
  assert dropped, (weak.auc, weak.baseline_auc)
  assert sorted(weak.not_blessed) == sorted(
      f"not blessed: {task} AUC {weak.auc[task]:.3f} is "
      f"{weak.baseline_auc[task] - weak.auc[task]:.3f} below the serving model's "
      f"{weak.baseline_auc[task]:.3f} (allowed drop 0.010)" for task in dropped)
  table = weak.table()
  assert "blessed               no" in table and weak.not_blessed[0] in table
  assert "nothing pushed" in table


def test_normal_model_is_blessed_against_the_baseline_and_pushed(gate_runs, pipeline_run):
  normal = gate_runs.normal
  assert normal.component_states["Trainer"] == "COMPLETE"
  assert normal.baseline_auc == pytest.approx(pipeline_run.first.auc)
  for task in TASKS:  # the same seed and settings: (nearly) the same model
    assert abs(normal.auc[task] - pipeline_run.first.auc[task]) < 0.01, (
        normal.auc, pipeline_run.first.auc)
  assert normal.blessed is True and normal.not_blessed == []
  versions = _versions(gate_runs.normal_serving_dir)
  assert len(versions) == 1
  assert os.path.normpath(normal.pushed_dir) == os.path.join(gate_runs.normal_serving_dir,
                                                             "aitm", versions[0])
