"""`load_report` and `write_report`: ML Metadata and TFMA output -> ReportData -> the page
on disk."""

import os
from typing import Optional

from report.evaluation import ReportData, report_data
from report.html import render_page
from report.metadata import find_evaluation

REPORT_FILE = "report.html"


def load_report(pipeline_root: str, since: Optional[float] = None) -> ReportData:
  """ML Metadata + TFMA output -> ReportData. Raises NoEvaluation."""
  return report_data(find_evaluation(pipeline_root, since))


def write_report(pipeline_root: str, output: Optional[str] = None,
                 since: Optional[float] = None) -> str:
  """Renders the latest evaluation under pipeline_root to `output` (default
  <pipeline_root>/report.html); returns the path written. Raises NoEvaluation."""
  data = load_report(pipeline_root, since)
  path = output or os.path.join(pipeline_root, REPORT_FILE)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(render_page(data))
  return path
