"""Cross-task funnel metrics for TFMA, for one adjacent pair of task towers.

The towers of a config are a funnel in `task_towers` order (impression ->
click -> purchase): every downstream event needs the upstream one (`buy`
implies `clk`), so per impression P(downstream) <= P(upstream). For an
upstream tower `u` and the tower `d` after it, per slice and per model, keyed
by the DOWNSTREAM tower's output name (output_name `d`):

* `order_violation_rate`: the share of impressions with p_d > p_u, i.e. where
  the model contradicts the funnel (for ctr -> cvr: predicts a purchase more
  likely than the click it needs).
* `conditional_auc`: the AUC of p_d / p_u - the model's implied P(d | u) -
  among impressions whose upstream label is 1, against the downstream label.
  For ctr -> cvr it is the post-click CVR AUC: how well purchases are ranked
  among the clicked impressions. (The cvr tower's own `auc` is on every
  impression with the impression-level label `buy`, so it already is the
  CTCVR AUC.) The ratio is clipped to [0, 1] and the AUC computed from a
  histogram of NUM_BINS equal bins, ties counted half (Mann-Whitney); NaN
  when the slice has no upstream-positive impression of either downstream
  label.
* `conditional_example_count`: the upstream-positive impressions
  `conditional_auc` was computed on (on a small slice, read it as noise).

Unweighted; the first tower has none of these. Used as
`MetricConfig(class_name="FunnelMetrics", module="models.funnel_metrics",
config='{"upstream": "ctr"}')` in a MetricsSpec whose output_names are
`["cvr"]` (models.eval_config does this for every adjacent pair).
"""

import json
from typing import Any, Dict, Iterable

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.metrics import metric_util
from tensorflow_model_analysis.proto import config_pb2

FUNNEL_METRICS_NAME = "funnel"
ORDER_VIOLATION_RATE = "order_violation_rate"
CONDITIONAL_AUC = "conditional_auc"
CONDITIONAL_EXAMPLE_COUNT = "conditional_example_count"
METRIC_NAMES = (ORDER_VIOLATION_RATE, CONDITIONAL_AUC, CONDITIONAL_EXAMPLE_COUNT)
# Bins of p_d / p_u in [0, 1] for the conditional AUC: 1e-4 wide, as TFMA's
# own AUC uses 10,000 thresholds.
NUM_BINS = 10_000


class FunnelMetrics(metric_types.Metric):
  """Order-violation rate and conditional AUC of a tower against the one before it.

  `upstream` is the preceding tower's output name; the downstream tower is the
  MetricsSpec's output name.
  """

  def __init__(self, upstream: str = "", name: str = FUNNEL_METRICS_NAME):
    if not upstream:
      raise ValueError("FunnelMetrics: 'upstream' (the preceding tower's output name) "
                       "is required")
    super().__init__(metric_util.merge_per_key_computations(_funnel_computations),
                     upstream=upstream, name=name)


metric_types.register_metric(FunnelMetrics)


def _funnel_computations(upstream: str, name: str = FUNNEL_METRICS_NAME,
                         model_name: str = "", output_name: str = "",
                         example_weighted: bool = False
                         ) -> metric_types.MetricComputations:
  if not output_name:
    raise ValueError("FunnelMetrics: the MetricsSpec needs output_names (the downstream "
                     "tower)")
  if output_name == upstream:
    raise ValueError(f"FunnelMetrics: upstream '{upstream}' is the tower itself")
  keys = {metric: metric_types.MetricKey(name=metric, model_name=model_name,
                                         output_name=output_name,
                                         example_weighted=example_weighted)
          for metric in METRIC_NAMES}
  return [metric_types.MetricComputation(
      keys=list(keys.values()), preprocessors=None,
      combiner=_FunnelCombiner(keys, model_name, upstream, output_name))]


class _Accumulator:
  """Counts, and histograms of p_d / p_u over upstream-positive impressions."""

  __slots__ = ("impressions", "violations", "positives", "negatives")

  def __init__(self):
    self.impressions = 0
    self.violations = 0
    self.positives = np.zeros(NUM_BINS, np.int64)   # downstream label 1
    self.negatives = np.zeros(NUM_BINS, np.int64)   # downstream label 0


def _values(value, what: str) -> np.ndarray:
  if value is None:
    raise ValueError(f"FunnelMetrics: no {what} in the extracts")
  return np.asarray(value, np.float64).reshape(-1)


class _FunnelCombiner(beam.CombineFn):
  """StandardMetricInputs (one example or a batch) -> the three metrics of one pair."""

  def __init__(self, keys: Dict[str, metric_types.MetricKey], model_name: str,
               upstream: str, downstream: str):
    self._keys = keys
    self._model_name = model_name
    self._upstream = upstream
    self._downstream = downstream

  def create_accumulator(self) -> _Accumulator:
    """An empty accumulator: no impressions, empty histograms."""
    return _Accumulator()

  def add_input(self, accumulator: _Accumulator,
                element: metric_types.StandardMetricInputs) -> _Accumulator:
    """Counts one input's impressions and order violations, and adds its clicked ones'
    p_d / p_u to the histogram of their downstream label."""
    get = {"predictions": element.get_predictions, "labels": element.get_labels}
    values = {}
    for kind, getter in get.items():
      for tower in (self._upstream, self._downstream):
        values[kind, tower] = _values(getter(self._model_name or None, tower),
                                      f"{kind} of output '{tower}'")
    p_up = values["predictions", self._upstream]
    p_down = values["predictions", self._downstream]
    accumulator.impressions += p_up.size
    accumulator.violations += int(np.count_nonzero(p_down > p_up))
    clicked = values["labels", self._upstream] > 0.5
    if clicked.any():
      ratio = np.clip(p_down[clicked] / np.maximum(p_up[clicked], 1e-12), 0.0, 1.0)
      bins = np.minimum((ratio * NUM_BINS).astype(np.int64), NUM_BINS - 1)
      bought = values["labels", self._downstream][clicked] > 0.5
      accumulator.positives += np.bincount(bins[bought], minlength=NUM_BINS)
      accumulator.negatives += np.bincount(bins[~bought], minlength=NUM_BINS)
    return accumulator

  def merge_accumulators(self, accumulators: Iterable[_Accumulator]) -> _Accumulator:
    """The sum of `accumulators`, added into the first."""
    accumulators = iter(accumulators)
    result = next(accumulators)
    for other in accumulators:
      result.impressions += other.impressions
      result.violations += other.violations
      result.positives += other.positives
      result.negatives += other.negatives
    return result

  def extract_output(self, accumulator: _Accumulator) -> Dict[metric_types.MetricKey, Any]:
    """The pair's three metrics by key: order violation rate (NaN without impressions),
    conditional AUC and conditional example count."""
    return {
        self._keys[ORDER_VIOLATION_RATE]: (accumulator.violations / accumulator.impressions
                                           if accumulator.impressions else float("nan")),
        self._keys[CONDITIONAL_AUC]: histogram_auc(accumulator.positives,
                                                   accumulator.negatives),
        self._keys[CONDITIONAL_EXAMPLE_COUNT]: int(accumulator.positives.sum()
                                                   + accumulator.negatives.sum()),
    }


def histogram_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
  """AUC from per-bin counts of positives and negatives (bins in increasing score):
  P(score of a random positive > a random negative), a tie counting half."""
  n_pos, n_neg = positives.sum(), negatives.sum()
  if not n_pos or not n_neg:
    return float("nan")
  negatives_below = np.cumsum(negatives) - negatives
  wins = np.sum(positives * (negatives_below + 0.5 * negatives))
  return float(wins / (float(n_pos) * float(n_neg)))


def funnel_metric_config(upstream: str) -> config_pb2.MetricConfig:
  """The MetricConfig of the pair (upstream, the MetricsSpec's output name)."""
  return config_pb2.MetricConfig(class_name=FunnelMetrics.__name__, module=__name__,
                                 config=json.dumps({"upstream": upstream}))
