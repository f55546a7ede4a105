"""The page's charts as inline SVG drawn here: calibration, ROC, and a metric by slice."""

import math
from typing import Dict, List, Optional, Sequence, Tuple

from models.gate_thresholds import BASELINE, CANDIDATE
from report.evaluation import CalibrationBucket, ConfusionPoint, SliceRow, TaskResult
from report.formatting import (_e, format_value, is_count, metric_columns, metric_label,
                               slice_label, sort_rows, task_title)


# --------------------------------------------------------------------------- plot data


def calibration_points(buckets: Sequence[CalibrationBucket], bins: int = 10
                       ) -> List[Tuple[float, float, float]]:
  """(mean prediction, mean label, examples) over about `bins` equal-count groups of
  TFMA's fixed-width buckets: with 1,000 buckets on [0, 1] and rare positives most
  buckets hold a handful of examples, so they are merged in prediction order."""
  filled = [b for b in sorted(buckets, key=lambda b: b[0]) if b[2] > 0]
  total = sum(b[2] for b in filled)
  if total <= 0:
    return []
  points, n, labels, predictions = [], 0.0, 0.0, 0.0
  for _, _, count, label, prediction in filled:
    n, labels, predictions = n + count, labels + label, predictions + prediction
    if n >= total / bins:
      points.append((predictions / n, labels / n, n))
      n, labels, predictions = 0.0, 0.0, 0.0
  if n > 0:
    points.append((predictions / n, labels / n, n))
  return points


def roc_points(matrices: Sequence[ConfusionPoint]) -> List[Tuple[float, float]]:
  """(false positive rate, true positive rate) per threshold, from (0, 0) to (1, 1)."""
  points = {(0.0, 0.0), (1.0, 1.0)}
  for _, tp, fp, tn, fn in matrices:
    if tp + fn > 0 and fp + tn > 0:
      points.add((fp / (fp + tn), tp / (tp + fn)))
  return sorted(points)


def roc_auc(points: Sequence[Tuple[float, float]]) -> float:
  """Trapezoid area under the ROC points (a check on the drawing, close to TFMA's AUC)."""
  return sum((x2 - x1) * (y1 + y2) / 2 for (x1, y1), (x2, y2) in zip(points, points[1:]))


# --------------------------------------------------------------------------- SVG


_COLORS = {CANDIDATE: "#1f6fb2", BASELINE: "#e08a1e"}
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _nice_step(span: float, ticks: int = 5) -> float:
  raw = span / max(ticks, 1)
  if raw <= 0:
    return 1.0
  power = 10 ** math.floor(math.log10(raw))
  for factor in (1, 2, 2.5, 5, 10):
    if raw <= factor * power:
      return factor * power
  return 10 * power


def _ticks(low: float, high: float) -> List[float]:
  step = _nice_step(high - low)
  first = math.ceil(low / step - 1e-9) * step
  values, value = [], first
  while value <= high + step * 1e-6:
    values.append(round(value, 10))
    value += step
  return values


def _tick_label(value: float) -> str:
  return f"{value:.10g}" if abs(value) >= 0.001 or value == 0 else f"{value:.1e}"


def _svg(width: int, height: int, body: str, title: str, css_class: str) -> str:
  return (f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" width="{width}" '
          f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
          f'aria-label="{_e(title)}"><title>{_e(title)}</title>{body}</svg>')


def svg_xy_plot(curves: Sequence[Tuple[str, Sequence[Tuple[float, float]], str]], *,
                title: str, x_label: str, y_label: str, x_max: float = 1.0,
                y_max: float = 1.0, diagonal: str = "", markers: bool = False,
                css_class: str = "plot") -> str:
  """Lines (and optional dots) of (x, y) points on [0, x_max] x [0, y_max].

  curves: (legend name, points, role) with role candidate/baseline for the colour."""
  width, height = 380, 320
  left, right, top, bottom = 52, 14, 28, 44
  plot_w, plot_h = width - left - right, height - top - bottom

  def sx(x):
    return left + plot_w * min(max(x / x_max, 0.0), 1.0)

  def sy(y):
    return top + plot_h * (1 - min(max(y / y_max, 0.0), 1.0))

  parts = [f'<text x="{width / 2:.0f}" y="16" text-anchor="middle" {_FONT} '
           f'font-weight="600" font-size="12">{_e(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
           'stroke="#bbb"/>']
  for x in _ticks(0, x_max):
    parts.append(f'<line x1="{sx(x):.1f}" y1="{top}" x2="{sx(x):.1f}" y2="{top + plot_h}" '
                 'stroke="#eee"/>')
    parts.append(f'<text x="{sx(x):.1f}" y="{top + plot_h + 14}" text-anchor="middle" '
                 f'{_FONT} fill="#555">{_tick_label(x)}</text>')
  for y in _ticks(0, y_max):
    parts.append(f'<line x1="{left}" y1="{sy(y):.1f}" x2="{left + plot_w}" y2="{sy(y):.1f}" '
                 'stroke="#eee"/>')
    parts.append(f'<text x="{left - 5}" y="{sy(y) + 4:.1f}" text-anchor="end" {_FONT} '
                 f'fill="#555">{_tick_label(y)}</text>')
  parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 8}" text-anchor="middle" '
               f'{_FONT}>{_e(x_label)}</text>')
  parts.append(f'<text transform="translate(13 {top + plot_h / 2:.0f}) rotate(-90)" '
               f'text-anchor="middle" {_FONT}>{_e(y_label)}</text>')
  if diagonal:
    end = min(x_max, y_max)
    parts.append(f'<line class="diagonal" x1="{sx(0):.1f}" y1="{sy(0):.1f}" x2="{sx(end):.1f}" '
                 f'y2="{sy(end):.1f}" stroke="#888" stroke-dasharray="3 3"/>')
  legend = [(diagonal, "#888", "3 3")] if diagonal else []
  for name, points, role in curves:
    color = _COLORS.get(role, "#444")
    dash = "6 3" if role == BASELINE else ""
    legend.append((name, color, dash))
    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}"
                    for i, (x, y) in enumerate(points))
    parts.append(f'<path class="curve {role}" d="{path}" fill="none" stroke="{color}" '
                 f'stroke-width="2" stroke-dasharray="{dash}"/>')
    if markers:
      for x, y in points:
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}">'
                     f'<title>{_e(name)}: {format_value("", x)}, {format_value("", y)}'
                     '</title></circle>')
  for i, (name, color, dash) in enumerate(legend):
    y = top + 12 + 15 * i
    parts.append(f'<line x1="{left + 8}" y1="{y - 4}" x2="{left + 30}" y2="{y - 4}" '
                 f'stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>'
                 f'<text x="{left + 35}" y="{y}" {_FONT}>{_e(name)}</text>')
  return _svg(width, height, "".join(parts), title, css_class)


def svg_calibration(task: str, buckets: Dict[str, List[CalibrationBucket]],
                    names: Dict[str, str]) -> str:
  """A task's calibration plot (overall slice): mean label against mean prediction over
  equal-count bins, candidate and baseline, against the diagonal."""
  curves = []
  for role in (CANDIDATE, BASELINE):
    if buckets.get(role):
      points = calibration_points(buckets[role])
      if points:
        curves.append((names.get(role, role), [(x, y) for x, y, _ in points], role))
  top = max([max(x, y) for _, points, _ in curves for x, y in points] or [1.0])
  top = _nice_ceiling(top * 1.05)
  return svg_xy_plot(curves, title=f"{task}: calibration (overall)",
                     x_label="mean prediction (equal-count bins)", y_label="mean label",
                     x_max=top, y_max=top, diagonal="perfectly calibrated", markers=True,
                     css_class="plot calibration")


def svg_roc(task: str, confusion: Dict[str, List[ConfusionPoint]],
            names: Dict[str, str]) -> str:
  """A task's ROC curve (overall slice), candidate and baseline, each with its area."""
  curves = []
  for role in (CANDIDATE, BASELINE):
    if confusion.get(role):
      points = roc_points(confusion[role])
      name = f"{names.get(role, role)} (area \u2248 {roc_auc(points):.3f})"
      curves.append((name, points, role))
  return svg_xy_plot(curves, title=f"{task}: ROC (overall)", x_label="false positive rate",
                     y_label="true positive rate", diagonal="chance", css_class="plot roc")


def _nice_ceiling(value: float) -> float:
  if value <= 0:
    return 1.0
  step = _nice_step(value, 5)
  return min(1.0, math.ceil(value / step - 1e-9) * step) if value <= 1 else \
      math.ceil(value / step) * step


def bar_metric(task: TaskResult) -> Optional[str]:
  """The metric drawn by slice: AUC when there is one, else the first non-count metric."""
  columns = metric_columns(task.rows)
  if "auc" in columns:
    return "auc"
  return next((m for m in columns if not is_count(m)), None)


def svg_slice_bars(task: TaskResult, metric: str, features: Sequence[str] = ()) -> str:
  """Horizontal bars of `metric` per slice value, grouped by feature; the overall value
  as a dashed line, the baseline's as a black tick."""
  rows = [r for r in sort_rows(task.rows, features) if r.slice and metric in r.values]
  overall = next((r for r in task.rows if not r.slice), None)
  values = [r.values[metric] for r in rows if not math.isnan(r.values[metric])]
  values += [r.baseline[metric] for r in rows
             if metric in r.baseline and not math.isnan(r.baseline[metric])]
  if overall and metric in overall.values and not math.isnan(overall.values[metric]):
    values.append(overall.values[metric])
  low = min(values + [0.0])
  if metric == "auc" or metric.endswith("_auc"):
    low = min([0.5] + values)                # AUC bars start at chance
  high = max(values + [low + 1e-9])
  step = _nice_step(high - low)
  low = math.floor(low / step) * step
  high = math.ceil(high / step + 1e-9) * step
  label_w, value_w, row_h, group_h = 150, 150, 18, 22
  width, top = 760, 34
  plot_w = width - label_w - value_w

  def sx(x):
    return label_w + plot_w * (min(max(x, low), high) - low) / (high - low)

  groups: List[Tuple[str, List[SliceRow]]] = []
  for row in rows:
    name = ", ".join(f for f, _ in row.slice)
    if not groups or groups[-1][0] != name:
      groups.append((name, []))
    groups[-1][1].append(row)
  height = top + sum(group_h + row_h * len(g) for _, g in groups) + 26
  title = f"{task_title(task.name)}: {metric_label(metric)} by slice"
  parts = [f'<text x="8" y="16" {_FONT} font-weight="600" font-size="12">{_e(title)}</text>']
  if any(metric in r.baseline for r in rows):
    parts.append(f'<line x1="{width - 140}" y1="7" x2="{width - 140}" y2="19" stroke="#111" '
                 f'stroke-width="2"/><text x="{width - 133}" y="16" {_FONT}>baseline</text>')
  for x in _ticks(low, high):
    parts.append(f'<line x1="{sx(x):.1f}" y1="{top - 6}" x2="{sx(x):.1f}" '
                 f'y2="{height - 22}" stroke="#eee"/><text x="{sx(x):.1f}" '
                 f'y="{height - 8}" text-anchor="middle" {_FONT} fill="#555">'
                 f'{_tick_label(x)}</text>')
  y = top
  for name, group in groups:
    parts.append(f'<text x="8" y="{y + 15}" {_FONT} font-weight="600">by {_e(name)}</text>')
    y += group_h
    for row in group:
      value = row.values[metric]
      label = ", ".join(str(v) for _, v in row.slice)
      count = next((row.values[m] for m in ("example_count", "weighted_example_count")
                    if m in row.values), None)
      text = format_value(metric, value) + (f"  (n={count:,.0f})" if count is not None else "")
      width_px = 0 if math.isnan(value) else sx(value) - sx(low)
      parts.append(f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end" {_FONT}>'
                   f'{_e(label)}</text>')
      parts.append(f'<rect class="bar" x="{sx(low):.1f}" y="{y + 3}" width="{width_px:.1f}" '
                   f'height="{row_h - 6}" fill="{_COLORS[CANDIDATE]}">'
                   f'<title>{_e(slice_label(row.slice))}: {_e(text)}</title></rect>')
      if metric in row.baseline and not math.isnan(row.baseline[metric]):
        bx = sx(row.baseline[metric])
        parts.append(f'<line class="baseline-tick" x1="{bx:.1f}" y1="{y + 1}" x2="{bx:.1f}" '
                     f'y2="{y + row_h - 1}" stroke="#111" stroke-width="2"><title>baseline '
                     f'{format_value(metric, row.baseline[metric])}</title></line>')
      parts.append(f'<text x="{width - value_w + 8}" y="{y + 13}" {_FONT}>{_e(text)}</text>')
      y += row_h
  if overall and metric in overall.values and not math.isnan(overall.values[metric]):
    ox = sx(overall.values[metric])
    parts.append(f'<line x1="{ox:.1f}" y1="{top - 6}" x2="{ox:.1f}" y2="{height - 22}" '
                 'stroke="#c0392b" stroke-dasharray="4 3"/>'
                 f'<text x="{ox:.1f}" y="{top - 10}" text-anchor="middle" {_FONT} '
                 f'fill="#c0392b">overall {format_value(metric, overall.values[metric])}</text>')
  return _svg(width, height, "".join(parts), title, "plot bars")
