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
