"""A pipeline run's results, read back once and shown three ways: `aitm report`'s
self-contained HTML page, `aitm run`'s printed summary and `aitm compare`'s table.

Readers, then formatters, so the page can be tested without TFMA or ML Metadata:

- `report.metadata` is the one reader of ML Metadata: a run's executions and outputs
  (`read_run`) and the latest evaluation (`find_evaluation`).
- `report.evaluation` is the one reader of TFMA's output: the page's plain data classes
  (`report_data`) and the metrics and validation failures the summary prints.
- `report.formatting`, `report.svg` and `report.html` turn plain data into the page
  (`render_page`); `report.formatting` names the metrics for the summary as well.
- `report.run_summary` prints a run (`summarize`, `RunSummary.table`), and
  `report.compare` runs and scores several model configs (`aitm compare`).

`report.writer` puts the page together: `load_report` and `write_report`.
"""

from models.gate_thresholds import BASELINE, CANDIDATE
from report.evaluation import ModelInfo, ReportData, SliceRow, TaskResult, Threshold, Verdict
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
