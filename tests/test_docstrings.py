"""Every public function and class of the product packages says what it is: module-level
functions and classes, and the methods of module-level classes, whose name doesn't
start with "_", each have a docstring."""

import ast
import os

from pipeline import configs

PACKAGES = ("models", "serving", "components", "pipeline", "report", "datagen", "cli")
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _public_definitions(tree):
  """Module-level functions and classes, and what those classes define (methods, nested
  classes); what a function defines inside itself is left out."""
  for node in tree.body:
    if isinstance(node, _DEFINITIONS):
      yield node
      if isinstance(node, ast.ClassDef):
        yield from (member for member in node.body if isinstance(member, _DEFINITIONS))


def _undocumented(package):
  """`path:line name` of each public definition in the package without a docstring."""
  found = []
  for folder, _, names in sorted(os.walk(os.path.join(configs.PROJECT_DIR, package))):
    for name in sorted(names):
      if not name.endswith(".py"):
        continue
      path = os.path.join(folder, name)
      with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
      relative = os.path.relpath(path, configs.PROJECT_DIR)
      found += [f"{relative}:{node.lineno} {node.name}" for node in _public_definitions(tree)
                if not node.name.startswith("_") and ast.get_docstring(node) is None]
  return found


def test_every_public_function_and_class_has_a_docstring():
  missing = [entry for package in PACKAGES for entry in _undocumented(package)]
  assert not missing, (f"{len(missing)} public functions and classes without a docstring:\n"
                       + "\n".join(missing))
