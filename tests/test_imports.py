"""Imports run one way: a package imports only from the packages below it (or its own),
function-level imports included, so each layer can be read and tested without the
ones above it."""

import ast
import os

import pytest

from pipeline import configs

# Lowest first; packages on one level don't import each other.
LAYERS = (("models",), ("serving",), ("components",), ("scoring",), ("pipeline",),
          ("datagen", "report"), ("cli",), ("bench",))
LEVEL = {package: level for level, packages in enumerate(LAYERS) for package in packages}


def _python_files(package):
  for folder, _, names in os.walk(os.path.join(configs.PROJECT_DIR, package)):
    for name in names:
      if name.endswith(".py"):
        yield os.path.join(folder, name)


def _imported_packages(path):
  """(line, the project's top-level package) for each import in the file."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      names = [node.module]
    else:
      continue
    for name in names:
      top = name.split(".")[0]
      if top in LEVEL:
        yield node.lineno, top


@pytest.mark.parametrize("package", sorted(LEVEL))
def test_a_package_imports_only_the_layers_below_it(package):
  upward = []
  for path in _python_files(package):
    for line, imported in _imported_packages(path):
      if imported != package and LEVEL[imported] >= LEVEL[package]:
        upward.append(f"{os.path.relpath(path, configs.PROJECT_DIR)}:{line} imports {imported}")
  assert not upward, "\n".join(upward)


def test_every_project_package_has_a_layer():
  with open(os.path.join(configs.PROJECT_DIR, "pyproject.toml")) as f:
    text = f.read()
  listed = text.split("packages = [", 1)[1].split("]", 1)[0]
  tops = {name.strip().strip('"').split(".")[0] for name in listed.split(",") if name.strip()}
  assert tops <= set(LEVEL), tops - set(LEVEL)


def test_kubeflow_holds_no_python_package():
  """Kubeflow's SDKs install into the `kubeflow` namespace; a package of ours by that
  name would shadow them. kubeflow/ keeps the image and the manifests."""
  assert not os.path.exists(os.path.join(configs.PROJECT_DIR, "kubeflow", "__init__.py"))
  assert not [p for p in _python_files("kubeflow")]
