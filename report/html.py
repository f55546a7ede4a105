"""The page: plain data -> one HTML document with inline CSS and SVG; no scripts, fonts,
images or anything fetched."""

import time
from typing import Dict, Optional, Sequence, Tuple

from models.gate_thresholds import BASELINE, CANDIDATE
from report.evaluation import ModelInfo, ReportData, TaskResult, Threshold
from report.formatting import (_e, change_class, format_value, metric_columns, metric_label,
                               slice_label, sort_rows, task_title)
from report.svg import bar_metric, svg_calibration, svg_roc, svg_slice_bars


_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2327;
       background: #f5f6f8; margin: 0; }
main { max-width: 1360px; margin: 0 auto; padding: 20px 24px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #d8dce1; }
h3 { font-size: 15px; margin: 20px 0 8px; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 14px 18px;
        margin: 12px 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.facts dt { color: #5b6570; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
code { font: 12px ui-monospace, "SFMono-Regular", Menlo, monospace; background: #f0f2f4;
       padding: 1px 4px; border-radius: 3px; }
.verdict { display: inline-block; font-weight: 700; padding: 2px 10px; border-radius: 12px; }
.verdict.blessed { background: #dff3e4; color: #1e6b34; }
.verdict.rejected { background: #fbe1df; color: #a0261c; }
.verdict.unvalidated { background: #eceff2; color: #4a545e; }
ul.reasons { margin: 8px 0 0; padding-left: 20px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; background: #fff; font-size: 13px; }
th, td { border: 1px solid #e1e4e8; padding: 4px 8px; vertical-align: top; }
th { background: #eef1f4; font-weight: 600; text-align: center; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.slice { white-space: nowrap; }
tr.overall td { font-weight: 600; background: #fbfcfd; }
tr.group td { background: #f6f7f9; color: #5b6570; font-style: italic; font-weight: 600; }
td .chg { display: block; font-size: 11px; font-weight: 400; }
.better { color: #1e7b3a; } .worse { color: #b3261e; } .same { color: #68737d; }
td.fail { background: #fde8e6; outline: 2px solid #d9473b; outline-offset: -2px; }
.plots { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.plots svg { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; }
.missing { color: #7a4b00; background: #fff6e0; border: 1px solid #f0d9a0; border-radius: 6px;
           padding: 6px 12px; margin: 6px 0; width: fit-content; }
.note { color: #5b6570; font-size: 12px; }
.card.warning { border-left: 6px solid #a0261c; background: #fdf1f0; }
footer { margin-top: 36px; color: #7b858f; font-size: 12px; }
"""


def _fmt_time(seconds: Optional[float]) -> str:
  if seconds is None:
    return "unknown"
  return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(seconds))


_TRAINING_LABELS = {
    "parameters": "parameters", "train_rows": "train rows", "batch_size": "batch size",
    "epochs_run": "epochs run", "exported_epoch": "exported epoch",
    "best_epoch": "best epoch", "steps": "steps", "train_seconds": "train seconds",
    "seed": "seed", "shuffle_labels": "shuffled labels",
}


def _warm_start_text(warm_start: Dict[str, object]) -> str:
  """The Trainer's warm-start decision (models/warm_start.py), in one phrase."""
  if not warm_start["warm"]:
    return f"warm start: fresh start, {warm_start['reason']}"
  return (f"warm start: from {warm_start['base_model']} ({len(warm_start['copied'])} weights "
          f"copied, {len(warm_start['remapped'])} vocabulary tables remapped by token)")


def _training_text(training: Dict[str, object]) -> str:
  parts = []
  for key, value in training.items():
    if key == "model_name" or (key == "warm_start" and value is None):  # not asked for
      continue
    if key == "warm_start":
      parts.append(_warm_start_text(value))
      continue
    label = _TRAINING_LABELS.get(key, key.replace("_", " "))
    if isinstance(value, dict):
      inner = ", ".join(f"{k} {format_value('', v) if isinstance(v, float) else v}"
                        for k, v in value.items())
      parts.append(f"{label}: {inner}")
    elif isinstance(value, bool):
      parts.append(f"{label}: {'yes' if value else 'no'}")
    elif isinstance(value, int):
      parts.append(f"{label} {value:,}")
    else:
      parts.append(f"{label} {value}")
  return "; ".join(parts)


def _model_html(model: ModelInfo) -> str:
  name = f"<strong>{_e(model.name)}</strong> " if model.name else ""
  training = _training_text(model.training)
  extra = (f'<div class="note">Trainer summary: {_e(training)}</div>' if training else
           '<div class="note">no training_summary.json found for this model</div>')
  return f"{name}<code>{_e(model.uri)}</code>{extra}"


def threshold_sentence(t: Threshold) -> str:
  """A threshold's outcome in one sentence: task, metric and slice, the value (or its
  change against the baseline) and the rule it had to meet."""
  where = f"{t.task} " if t.task else ""
  subject = f"{where}{metric_label(t.metric)} on {slice_label(t.slice)}"
  if t.kind == "change":
    value = format_value(t.metric, t.value, signed=True)
    return f"{subject} changed by {value} against the baseline; required: {t.rule}"
  return f"{subject} is {format_value(t.metric, t.value)}; required: {t.rule}"


def _threshold_result(t: Threshold) -> Tuple[str, str]:
  if t.skipped:
    return "same", "not applied (no baseline)"
  return ("worse", "failed") if t.failed else ("better", "passed")


def render_verdict(data: ReportData) -> str:
  """The Blessing card: blessed, not blessed or not validated, the failed thresholds
  and notes, what the baseline was, and every threshold checked."""
  v = data.verdict
  if v.blessed is None:
    badge = '<span class="verdict unvalidated">not validated</span>'
    why = ("The Evaluator checked no thresholds (the EvalConfig has none), so it neither "
           "blessed nor rejected the model.")
  elif v.blessed:
    badge = '<span class="verdict blessed">BLESSED</span>'
    applied = [t for t in v.thresholds if not t.skipped]
    why = (f"All {len(applied)} thresholds passed." if applied else "Every threshold passed.")
  else:
    badge = '<span class="verdict rejected">NOT BLESSED</span>'
    count = len(v.failures)
    why = f"{count} threshold{'s' if count != 1 else ''} failed:" if count else \
        "The validation failed (see the notes below)."
  items = "".join(f"<li>{_e(threshold_sentence(t))}</li>" for t in v.failures)
  items += "".join(f"<li>{_e(note)}</li>" for note in v.notes)
  if data.baseline is not None:
    base = ("Compared against the baseline model " +
            (f"<strong>{_e(data.baseline.name)}</strong> " if data.baseline.name else "") +
            f"<code>{_e(data.baseline.uri)}</code>: the table shows its value and the "
            "change (candidate minus baseline) under each metric.")
  else:
    base = "No baseline model was compared"
    base += (" (ML Metadata resolved none, e.g. no earlier blessed model), so the change "
             "thresholds were not applied: the absolute floors alone decided."
             if v.rubber_stamp else ".")
  checked = ""
  if v.thresholds:
    rows = "".join(
        f'<tr><td>{_e(t.task or "all outputs")}</td><td>{_e(metric_label(t.metric))}</td>'
        f'<td>{_e(slice_label(t.slice))}</td><td>{_e(t.rule)}</td>'
        f'<td class="{_threshold_result(t)[0]}">{_threshold_result(t)[1]}</td></tr>'
        for t in v.thresholds)
    checked = ('<details open><summary>Thresholds checked</summary><table class="thresholds">'
               '<tr><th>task</th><th>metric</th><th>slice</th><th>required</th><th>result</th>'
               f'</tr>{rows}</table></details>')
  return (f'<section class="card" id="verdict"><h2 style="margin-top:0">Blessing</h2>'
          f'<p>{badge} {_e(why)}</p>'
          + (f'<ul class="reasons">{items}</ul>' if items else "")
          + f"<p>{base}</p>{checked}</section>")


def render_warnings(warnings: Sequence[str]) -> str:
  """Signs that the numbers below may not measure the model, above everything else."""
  if not warnings:
    return ""
  items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
  return ('<section class="card warning" id="warnings"><h2 style="margin-top:0">'
          'These numbers may not measure the model</h2>'
          f'<ul class="reasons">{items}</ul></section>')


def render_header(data: ReportData) -> str:
  """The page header: pipeline, run, when evaluated, the candidate and baseline models
  and the evaluation's uri."""
  names = data.pipeline_name or "pipeline"
  evaluated = _fmt_time(data.evaluated_at)
  if data.cached:
    evaluated += " (reused from the cache by this run)"
  facts = [
      ("pipeline", _e(data.pipeline_name)),
      ("run", f"<code>{_e(data.run_id)}</code>"),
      ("evaluated", _e(evaluated)),
      ("model", _model_html(data.candidate)),
  ]
  if data.baseline is not None:
    facts.append(("baseline", _model_html(data.baseline)))
  facts.append(("evaluation", f"<code>{_e(data.evaluation_uri)}</code>"))
  rows = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
  return (f"<header><h1>Evaluation report: {_e(names)}</h1>"
          f'<div class="card"><dl class="facts">{rows}</dl></div></header>')


def render_metrics_table(task: TaskResult, has_baseline: bool, features: Sequence[str] = (),
                         failures: Sequence[Threshold] = ()) -> str:
  """Rows = slices (Overall first, then by feature), columns = every metric present."""
  columns = metric_columns(task.rows)
  failed = {(t.metric, t.slice): t for t in failures if t.task == task.name}
  head = "".join(f'<th data-metric="{_e(m)}" title="{_e(m)}">{_e(metric_label(m))}</th>'
                 for m in columns)
  body, group = [], None
  for row in sort_rows(task.rows, features):
    names = ", ".join(f for f, _ in row.slice)
    if row.slice and names != group:
      group = names
      body.append(f'<tr class="group"><td colspan="{len(columns) + 1}">by {_e(names)}</td></tr>')
    label = "Overall" if not row.slice else ", ".join(str(v) for _, v in row.slice)
    cells = []
    for metric in columns:
      value = row.values.get(metric)
      classes = ["num"]
      title = ""
      fail = failed.get((metric, row.slice))
      if fail is not None:
        classes.append("fail")
        title = f' title="{_e(threshold_sentence(fail))}"'
      data_value = "" if value is None else f' data-value="{value!r}"'
      cell = f'<span class="v">{_e(format_value(metric, value))}</span>'
      if has_baseline and metric in row.baseline:
        base = row.baseline[metric]
        diff = row.diff.get(metric)
        if diff is None and value is not None:
          diff = value - base
        if diff != 0 or value != base:  # identical (counts, mean label): nothing to say
          css = change_class(metric, value, base, diff)
          cell += (f' <span class="chg {css}">\u0394 '
                   f'{_e(format_value(metric, diff, signed=True, like=base))} '
                   f'<span class="same">(was {_e(format_value(metric, base))})</span></span>')
      cells.append(f'<td class="{" ".join(classes)}" data-metric="{_e(metric)}"'
                   f'{data_value}{title}>{cell}</td>')
    css = "overall" if not row.slice else "slice-row"
    body.append(f'<tr class="{css}" data-slice="{_e(slice_label(row.slice))}">'
                f'<td class="slice">{_e(label)}</td>{"".join(cells)}</tr>')
  return (f'<div class="table-wrap"><table class="metrics" data-task="{_e(task.name)}">'
          f'<thead><tr><th>slice</th>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
          '</table></div>')


MISSING_CALIBRATION = ("No calibration plot in this evaluation: add "
                       "MetricConfig(class_name=\"CalibrationPlot\") for this output to the "
                       "EvalConfig.")
MISSING_ROC = ("No ROC curve in this evaluation: add "
               "MetricConfig(class_name=\"ConfusionMatrixPlot\") for this output to the "
               "EvalConfig.")


def render_task(task: TaskResult, data: ReportData) -> str:
  """One task's section: its metrics table by slice, then its plots (calibration and
  ROC, or what the EvalConfig needs for them, and the metric by slice)."""
  names = {CANDIDATE: data.candidate.name or "candidate",
           BASELINE: (data.baseline.name if data.baseline and data.baseline.name else
                      "baseline")}
  if data.baseline and names[BASELINE] == names[CANDIDATE]:
    names = {CANDIDATE: f"{names[CANDIDATE]} (candidate)",
             BASELINE: f"{names[BASELINE]} (baseline)"}
  anchor = f"task-{task.name}" if task.name else "task-all-outputs"
  label = f' <span class="note">label <code>{_e(task.label)}</code></span>' if task.label else ""
  parts = [f'<section class="task" id="{_e(anchor)}" data-task="{_e(task.name)}">'
           f'<h2>{_e(task_title(task.name))}{label}</h2>']
  parts.append(render_metrics_table(task, data.baseline is not None, data.slice_features,
                                    data.verdict.failures))
  plots, missing = [], []
  if task.name:  # per-output plots; metrics on all outputs have none
    if task.calibration:
      plots.append(svg_calibration(task.name, task.calibration, names))
    else:
      missing.append(f'<p class="missing calibration">{_e(MISSING_CALIBRATION)}</p>')
    if task.confusion:
      plots.append(svg_roc(task.name, task.confusion, names))
    else:
      missing.append(f'<p class="missing roc">{_e(MISSING_ROC)}</p>')
  metric = bar_metric(task)
  if metric and any(r.slice and metric in r.values for r in task.rows):
    plots.append(svg_slice_bars(task, metric, data.slice_features))
  if plots or missing:
    parts.append(f'<h3>Plots</h3>{"".join(missing)}<div class="plots">{"".join(plots)}</div>')
  parts.append("</section>")
  return "".join(parts)


def render_page(data: ReportData) -> str:
  """The whole page: header, blessing and why, one section per task."""
  tasks = "".join(render_task(task, data) for task in data.tasks)
  if not data.tasks:
    tasks = '<p class="missing">The evaluation holds no metrics.</p>'
  notes = "".join(f'<p class="note">{_e(n)}</p>' for n in data.notes)
  warnings = render_warnings(data.warnings)
  title = f"{data.pipeline_name} evaluation, run {data.run_id}"
  return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          f"<title>{_e(title)}</title>"
          '<meta name="viewport" content="width=device-width, initial-scale=1">'
          f"<style>{_CSS}</style></head><body><main>"
          f"{render_header(data)}{warnings}{render_verdict(data)}{notes}{tasks}"
          "<footer>Written by <code>aitm report</code> from TFMA's evaluation output and ML "
          "Metadata. Values are on the eval split; \u0394 = candidate minus baseline, green "
          "where it is better, red where worse. Log loss is the mean binary cross-entropy; "
          "calibration is mean prediction / mean label (1 is calibrated). Small slices are "
          "noisy: read their example counts.</footer>"
          "</main></body></html>\n")
