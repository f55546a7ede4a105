"""`make test`'s parallel run keeps each module on one worker, and every test of the
session's pipeline run on one, so that each shared fixture runs once (tests/conftest.py).
pytest 9.2 with pytest-xdist 3.8 broke this silently: xdist renames items through
`item._nodeid`, which pytest 9.2 no longer reads, so every module was spread over both
workers and the slowest fixtures ran twice."""

import pytest


def _under_loadgroup(config) -> bool:
  """True in an xdist worker of a `--dist loadgroup` run (xdist sets the option there)."""
  return getattr(config.option, "loadgroup", False)


def test_a_module_is_one_group(request):
  assert request.node.get_closest_marker("xdist_group").args == ("test_xdist_groups",)
  if _under_loadgroup(request.config):
    # The suffix is what xdist's scheduler groups by.
    assert request.node.nodeid.endswith("@test_xdist_groups"), (
        f"{request.node.nodeid}: --dist loadgroup grouped nothing; pytest "
        f"{pytest.__version__} and this pytest-xdist don't work together (see "
        "requirements.in)")


def test_the_pipeline_run_s_users_are_one_group(request):
  items = [item for item in request.session.items if "pipeline_run" in item.fixturenames]
  if not items:   # this file run alone
    return
  assert {item.get_closest_marker("xdist_group").args for item in items} == {
      ("pipeline_run",)}
  if _under_loadgroup(request.config):
    assert all(item.nodeid.endswith("@pipeline_run") for item in items)
