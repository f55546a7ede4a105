"""Warnings that the numbers may not measure the model (models/evaluation_checks.py)."""

from tensorflow_metadata.proto.v0 import statistics_pb2

from models.evaluation_checks import (auc_warnings, chance_auc_error, evaluation_warnings,
                                      label_rate_warnings, label_rates_from_statistics,
                                      rate_gap)


def test_an_auc_below_chance_is_called_out_with_its_likely_causes():
  warnings = auc_warnings({"ctr": 0.24, "cvr": 0.71}, {"ctr": (6000, 114_000)})
  assert len(warnings) == 1
  assert warnings[0].startswith("ctr eval AUC 0.240 is below 0.5")
  assert "split that reads the labels" in warnings[0]
  assert auc_warnings({"ctr": 0.5, "cvr": 0.93}) == []
  # On a tiny eval split chance alone goes below 0.5: three buys among 600 rows.
  assert chance_auc_error(3, 597) > 0.15
  assert auc_warnings({"cvr": 0.47}, {"cvr": (3, 597)}) == []
  assert auc_warnings({"cvr": 0.47}, {"cvr": (3000, 597_000)}) != []


def test_label_rates_far_beyond_sampling_error_are_called_out():
  # 4.8% of 16k against 6.3% of 4k: the 20k-row lottery of a whole-example hash split.
  assert rate_gap((0.048, 16_000), (0.063, 4_000)) > 3.5
  far = {"clk": {"train": (0.048, 160_000), "eval": (0.063, 40_000)},
         "buy": {"train": (0.005, 160_000), "eval": (0.0052, 40_000)}}
  warnings = label_rate_warnings(far)
  assert len(warnings) == 1 and warnings[0].startswith("clk rate 6.30% in eval, 4.80% in train")
  assert "standard errors apart" in warnings[0]
  # Within sampling error: nothing to say.
  assert label_rate_warnings({"clk": {"train": (0.050, 16_000), "eval": (0.052, 4_000)}}) == []
  # A split missing, or no examples: nothing to compare.
  assert label_rate_warnings({"clk": {"train": (0.05, 100)}}) == []
  assert rate_gap((0.05, 0), (0.5, 10)) == 0.0
  assert evaluation_warnings({"ctr": 0.3}, {"ctr": "clk"}, far)[0].startswith("ctr eval AUC")
  assert evaluation_warnings({"cvr": 0.45}, {"cvr": "buy"},
                             {"buy": {"eval": (0.005, 400)}}) == []


def test_label_rates_come_from_each_splits_statistics():
  def stats(rate, rows):
    found = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = found.datasets.add(num_examples=rows)
    feature = dataset.features.add()
    feature.path.step.append("clk")
    feature.num_stats.mean = rate
    other = dataset.features.add()
    other.path.step.append("user_id")
    other.string_stats.unique = 10
    return found
  rates = label_rates_from_statistics({"train": stats(0.05, 800), "eval": stats(0.04, 200)},
                                      ["clk", "buy"])
  assert rates == {"clk": {"train": (0.05, 800), "eval": (0.04, 200)}}
