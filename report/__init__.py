"""`aitm report`: the latest evaluation of a pipeline root as one self-contained HTML page.

Three layers, so the page can be tested without TFMA or ML Metadata:

- `report.metadata` finds the evaluation in ML Metadata (`find_evaluation`).
- `report.evaluation` reads it with TFMA into plain data classes (`report_data`).
- `report.formatting`, `report.svg` and `report.html` turn plain data into the page
  (`render_page`).

`report.writer` puts them together: `load_report` and `write_report`.
"""

from report.evaluation import (BASELINE, CANDIDATE, ModelInfo, ReportData, SliceRow,
                               TaskResult, Threshold, Verdict)
from report.formatting import format_value
from report.html import render_page
from report.metadata import EvaluationRecord, NoEvaluation, find_evaluation
from report.svg import (calibration_points, roc_auc, roc_points, svg_calibration, svg_roc,
                        svg_slice_bars)
from report.writer import REPORT_FILE, load_report, write_report

__all__ = ["BASELINE", "CANDIDATE", "EvaluationRecord", "ModelInfo", "NoEvaluation",
           "REPORT_FILE", "ReportData", "SliceRow", "TaskResult", "Threshold", "Verdict",
           "calibration_points", "find_evaluation", "format_value", "load_report",
           "render_page", "roc_auc", "roc_points", "svg_calibration", "svg_roc",
           "svg_slice_bars", "write_report"]
