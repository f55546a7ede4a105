"""`aitm report`: a pipeline root's latest evaluation as an HTML page (report/)."""

import os
import sys

from pipeline import configs

LOADS_TENSORFLOW = True


def add_parser(subparsers):
  """Adds `report` and its flags to `subparsers`; returns its parser."""
  parser = subparsers.add_parser(
      "report", help="render the latest evaluation of a pipeline root as a self-contained "
      "HTML page (tables by task and slice, plots, blessing)")
  parser.add_argument("--pipeline-root", default=configs.DEFAULT_PIPELINE_ROOT,
                      help="the pipeline root of `aitm run` (default: %(default)s)")
  parser.add_argument("--output", help="HTML file to write (default: <pipeline-root>/"
                      "report.html, replaced by each run)")
  return parser


def run(args):
  """Writes the pipeline root's latest evaluation as an HTML page; exits with an error
  when there is none."""
  from report import NoEvaluation, write_report
  try:
    path = write_report(args.pipeline_root, args.output)
  except NoEvaluation as e:
    sys.exit(f"error: {e}")
  print(f"evaluation report: {os.path.abspath(path)}")


def report_after_run(pipeline_root, since, failed=False):
  """The run's evaluation as an HTML page; its path is the last line printed."""
  from report import NoEvaluation, write_report
  try:
    path = write_report(pipeline_root, since=since)
  except NoEvaluation:
    why = "the run stopped before the Evaluator finished, so " if failed else ""
    print(f"\nno report: {why}no evaluation exists for this run in {pipeline_root}")
    return
  except Exception as e:  # noqa: BLE001 - the report must not hide the run's own outcome
    print(f"\nno report: writing it failed: {type(e).__name__}: {e}")
    return
  print(f"\nevaluation report: {os.path.abspath(path)}")
