"""Benchmarks run as `python bench/NAME.py`, which puts bench/ first on sys.path:
a script named like a project package would shadow it (bench/serving.py once hid
the `serving` package from every pipeline a benchmark ran)."""

import os

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_no_benchmark_shadows_a_project_package():
  packages = {name for name in os.listdir(PROJECT_DIR)
              if os.path.isfile(os.path.join(PROJECT_DIR, name, "__init__.py"))}
  scripts = {name[:-3] for name in os.listdir(os.path.join(PROJECT_DIR, "bench"))
             if name.endswith(".py")}
  assert "serving" in packages and "quality" in scripts   # the listing works
  assert not scripts & packages, f"rename bench/{sorted(scripts & packages)}.py"


def test_well_specified_learner_learns_the_generated_world():
  """bench/quality.py's reference learner, on a small world: it must beat chance
  clearly and stay below the oracle's true probabilities."""
  import importlib.util

  import numpy as np

  from datagen import taobao
  spec = importlib.util.spec_from_file_location(
      "quality_bench", os.path.join(PROJECT_DIR, "bench", "quality.py"))
  quality = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(quality)
  cols, truth = taobao.generate(100_000, seed=3)
  cols = {c: np.asarray(v) for c, v in cols.items()}
  parts = [slice(0, 70_000), slice(70_000, 80_000), slice(80_000, 100_000)]
  train, evaluation, test = ({c: v[s] for c, v in cols.items()} for s in parts)
  scored = quality._well_specified(train, evaluation, test, seed=3)
  for label in ("clk", "buy"):
    auc = quality._auc(test[label], scored[label])
    oracle = quality._auc(test[label], truth[label][parts[2]])
    assert 0.65 < auc < oracle, (label, auc, oracle)
