"""Signs that an evaluation can't be trusted, in plain words.

A trained model doesn't rank worse than chance, and a split that never reads
the labels gives train and eval the same label rates up to sampling error.
When either fails, the numbers say more about the split (or the labels) than
about the model: a split that reads the labels puts the clicked copies of a
repeated impression on one side and the unclicked ones on the other, so what
the model learns is wrong in eval, and the eval AUC falls below 0.5 as it
learns. The run summary and the report print these warnings above the
numbers (report/run_summary.py, report/html.py).
"""

import math
from typing import Dict, List, Mapping, Tuple

# An eval AUC this many standard errors (of the AUC of a random ranking, given the
# split's positives and negatives) below 0.5 is called out: a trained model ranks
# better than chance, and a tiny eval split's noise is no sign of anything.
MIN_CHANCE_GAP_SE = 3.0
# Train and eval label rates further apart than this many standard errors (of the
# difference of two binomial proportions) are called out: far beyond sampling error.
MAX_RATE_GAP_SE = 6.0

# label -> split ("train", "eval") -> (positive rate, examples)
LabelRates = Mapping[str, Mapping[str, Tuple[float, int]]]


def chance_auc_error(positives: float, negatives: float) -> float:
  """The standard error of the AUC of a random ranking (Hanley and McNeil's, at 0.5)."""
  if positives < 1 or negatives < 1:
    return math.inf
  return math.sqrt((positives + negatives + 1) / (12 * positives * negatives))


def auc_warnings(auc: Mapping[str, float],
                 counts: Mapping[str, Tuple[float, float]] = {}) -> List[str]:
  """One warning per task whose eval AUC is below 0.5 by more than chance explains.
  `counts`: task -> (positives, negatives) of the eval split; a task without them is
  called out whenever its AUC is below 0.5."""
  warnings = []
  for task, value in auc.items():
    if value is None or value >= 0.5:
      continue
    error = chance_auc_error(*counts[task]) if task in counts else 0.0
    if value < 0.5 - MIN_CHANCE_GAP_SE * error:
      warnings.append(
          f"{task} eval AUC {value:.3f} is below 0.5: the model ranks the eval split worse "
          f"than chance. A trained model doesn't; suspect the evaluation: a split that "
          f"reads the labels (copies of one impression with different labels put apart), "
          f"leakage, or labels swapped or misaligned")
  return warnings


def rate_gap(train: Tuple[float, int], evaluation: Tuple[float, int]) -> float:
  """How many standard errors apart two positive rates (rate, examples) are."""
  (p_train, n_train), (p_eval, n_eval) = train, evaluation
  if not n_train or not n_eval:
    return 0.0
  pooled = (p_train * n_train + p_eval * n_eval) / (n_train + n_eval)
  error = math.sqrt(pooled * (1 - pooled) * (1 / n_train + 1 / n_eval))
  if error == 0:
    return 0.0 if p_train == p_eval else math.inf
  return abs(p_eval - p_train) / error


def label_rate_warnings(rates: LabelRates) -> List[str]:
  """One warning per label whose train and eval rates are far beyond sampling error apart."""
  warnings = []
  for label, by_split in rates.items():
    if "train" not in by_split or "eval" not in by_split:
      continue
    gap = rate_gap(by_split["train"], by_split["eval"])
    if gap > MAX_RATE_GAP_SE:
      (p_train, _), (p_eval, _) = by_split["train"], by_split["eval"]
      warnings.append(
          f"{label} rate {p_eval:.2%} in eval, {p_train:.2%} in train: {gap:.1f} standard "
          f"errors apart, far beyond sampling error. A split blind to the labels gives both "
          f"the same rate; this one may read the labels, or cut the data by something the "
          f"labels follow (a day, a group of users)")
  return warnings


def evaluation_warnings(auc: Mapping[str, float], task_labels: Mapping[str, str],
                        rates: LabelRates) -> List[str]:
  """auc_warnings and label_rate_warnings; `task_labels`: task -> its label column,
  whose eval rate and count give the task's positives and negatives."""
  counts = {}
  for task, label in task_labels.items():
    if "eval" in rates.get(label, {}):
      rate, examples = rates[label]["eval"]
      counts[task] = (rate * examples, (1 - rate) * examples)
  return auc_warnings(auc, counts) + label_rate_warnings(rates)


def label_rates_from_statistics(statistics_by_split: Mapping[str, object],
                                labels: List[str]) -> Dict[str, Dict[str, Tuple[float, int]]]:
  """label -> split -> (mean, examples), from TFDV DatasetFeatureStatisticsList per split
  (StatisticsGen's FeatureStats.pb); a label the statistics don't hold is left out."""
  rates: Dict[str, Dict[str, Tuple[float, int]]] = {}
  for split, statistics in statistics_by_split.items():
    dataset = statistics.datasets[0]
    for feature in dataset.features:
      name = feature.path.step[0] if feature.path.step else feature.name
      if name in labels and feature.HasField("num_stats"):
        rates.setdefault(name, {})[split] = (feature.num_stats.mean,
                                             int(dataset.num_examples))
  return rates
