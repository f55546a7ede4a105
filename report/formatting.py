"""Metric names, values, slices and row order as the page writes them, in tables and
charts alike; the run summary names its metrics here too."""

import html
import math
from typing import List, Optional, Sequence

from report.evaluation import Slice, SliceRow

_LABELS = {
    "example_count": "examples",
    "weighted_example_count": "weighted examples",
    "auc": "AUC",
    "auc_precision_recall": "AUC-PR",
    "binary_crossentropy": "log loss",
    "log_loss": "log loss",
    "calibration": "calibration",
    "mean_prediction": "mean prediction",
    "mean_label": "mean label",
    # models.funnel_metrics, on each tower after the first
    "conditional_example_count": "conditional examples",
    "conditional_auc": "conditional AUC",
    "order_violation_rate": "order violations",
}
# Narrower names where the run summary's fixed-width columns need them.
_SHORT_LABELS = {
    "calibration": "calib.",
    "order_violation_rate": "violations",
    "conditional_auc": "cond. AUC",
}
_ORDER = list(_LABELS)
_HIGHER_IS_BETTER = ("auc", "auc_precision_recall", "precision", "recall", "accuracy")
_LOWER_IS_BETTER = ("binary_crossentropy", "loss", "violation", "error")


def metric_label(metric: str, short: bool = False) -> str:
  """How a metric is named to a reader; `short`: in a column at most 10 wide."""
  if short and metric in _SHORT_LABELS:
    return _SHORT_LABELS[metric]
  return _LABELS.get(metric, metric)


def is_count(metric: str) -> bool:
  """Whether the metric is an example count (no decimals, no better or worse)."""
  return metric.endswith("example_count")


def _decimals(metric: str, value: float) -> int:
  """Counts: none; rates: 4 decimals; values below 0.01: 4 significant digits."""
  if is_count(metric) or abs(value) >= 1000:
    return 0
  if value == 0 or abs(value) >= 0.01:
    return 4
  return min(10, 3 - math.floor(math.log10(abs(value))))


def format_value(metric: str, value: Optional[float], signed: bool = False,
                 like: Optional[float] = None) -> str:
  """A metric value for the page; `like`: show as many decimals as that value gets
  (a change is shown to the precision of the value it changes)."""
  if value is None:
    return "\u2013"
  if math.isnan(value):
    return "n/a"
  if math.isinf(value):
    return ("+" if signed and value > 0 else "") + ("\u221e" if value > 0 else "-\u221e")
  reference = value if like is None or math.isnan(like) or math.isinf(like) else like
  decimals = _decimals(metric, reference)
  sign = "+" if signed else ""
  if decimals >= 10 and value != 0:
    return f"{value:{sign}.3e}"
  return f"{value:{sign},.{decimals}f}"


def direction(metric: str) -> int:
  """+1 when a higher value is better, -1 when lower is, 0 when unknown or neither."""
  name = metric.lower()
  if name == "calibration" or is_count(name) or name.startswith("mean_"):
    return 0
  if any(word in name for word in _LOWER_IS_BETTER):
    return -1
  if name in _HIGHER_IS_BETTER or name.endswith("_auc") or name.startswith("auc"):
    return 1
  return 0


def change_class(metric: str, value: Optional[float], baseline: Optional[float],
                 diff: Optional[float]) -> str:
  """CSS class of a change: "better", "worse" or "same" (unknown direction or no change)."""
  if diff is None or math.isnan(diff) or diff == 0:
    return "same"
  if metric == "calibration" and value is not None and baseline is not None:
    closer = abs(value - 1) - abs(baseline - 1)
    return "same" if closer == 0 else ("better" if closer < 0 else "worse")
  sign = direction(metric)
  if sign == 0:
    return "same"
  return "better" if diff * sign > 0 else "worse"


def slice_label(slice_: Slice) -> str:
  """A slice for a reader: "Overall", or "feature = value, ..."."""
  if not slice_:
    return "Overall"
  return ", ".join(f"{feature} = {value}" for feature, value in slice_)


def _value_key(value):
  """Numbers (and numeric strings) in numeric order, before other strings."""
  try:
    return (0, float(value), "")
  except (TypeError, ValueError):
    return (1, 0.0, str(value))


def sort_rows(rows: Sequence[SliceRow], features: Sequence[str] = ()) -> List[SliceRow]:
  """Overall first, then each slicing feature (EvalConfig order) with its values sorted."""
  order = {name: i for i, name in enumerate(features)}

  def key(row):
    names = tuple(feature for feature, _ in row.slice)
    return (len(names) > 0, len(names) > 1,
            tuple((order.get(n, len(order)), n) for n in names),
            tuple(_value_key(v) for _, v in row.slice))
  return sorted(rows, key=key)


def metric_columns(rows: Sequence[SliceRow]) -> List[str]:
  """The metrics any row has: the known ones in the page's order, then the others by
  name."""
  present = {metric for row in rows for metric in row.values}
  known = [m for m in _ORDER if m in present]
  return known + sorted(present - set(known))


def task_title(name: str) -> str:
  """A task's heading; the metrics on all outputs (name "") get their own."""
  return f"Task {name}" if name else "Across tasks (metrics on all outputs)"


def _e(text) -> str:
  return html.escape(str(text), quote=True)
