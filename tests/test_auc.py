"""The Trainer's bucketed AUC: Keras' confusion counts, whatever the thresholds."""

import numpy as np
import pytest
import tensorflow as tf

from models.auc import BucketedAUC
from models.trainer import auc_metric

COUNTS = ("true_positives", "false_positives", "true_negatives", "false_negatives")


def _batches(thresholds, seed):
  """Purchase-like scores, some exactly on thresholds and at 0 and 1, soft labels too."""
  rng = np.random.default_rng(seed)
  for _ in range(3):
    scores = (1 / (1 + np.exp(-rng.normal(-4, 2.5, 2000)))).astype(np.float32)
    scores[:40] = np.asarray(thresholds[::25][:40], np.float32)
    scores[40:45] = [0.0, 1.0, 0.0, 1.0, 0.5]
    labels = (rng.random(2000) < 3 * scores).astype(np.float32)
    labels[:7] = 0.4   # not 0: Keras counts it positive
    yield labels, scores, rng.random(2000).astype(np.float32)


@pytest.mark.parametrize("weighted", [False, True])
def test_counts_and_result_are_keras_own(weighted):
  keras = auc_metric(200)
  assert isinstance(keras, BucketedAUC)
  reference = tf.keras.metrics.AUC(thresholds=keras.thresholds[1:-1])
  assert type(reference) is tf.keras.metrics.AUC
  for labels, scores, weights in _batches(keras.thresholds, seed=3):
    # The Trainer's shapes: labels [batch], probabilities [batch, 1].
    args = (labels, scores, weights) if weighted else (labels, scores[:, None])
    keras.update_state(*args)
    reference.update_state(*(args if weighted else (labels, scores)))
  for name in COUNTS:
    np.testing.assert_allclose(getattr(keras, name).numpy(), getattr(reference, name).numpy(),
                               rtol=1e-6, err_msg=name)
  assert float(keras.result()) == pytest.approx(float(reference.result()), abs=1e-7)
  assert 0.6 < float(keras.result()) < 1.0


def test_a_prediction_on_a_threshold_is_negative_there():
  metric = BucketedAUC(thresholds=[0.25, 0.5, 0.75])
  metric.update_state([1.0, 0.0], [0.5, 0.8])
  # Thresholds -eps, .25, .5, .75, 1 + eps: 0.5 is above the first two only.
  np.testing.assert_array_equal(metric.true_positives.numpy(), [1, 1, 0, 0, 0])
  np.testing.assert_array_equal(metric.false_positives.numpy(), [1, 1, 1, 1, 0])
  np.testing.assert_array_equal(metric.false_negatives.numpy(), [0, 0, 1, 1, 1])
  np.testing.assert_array_equal(metric.true_negatives.numpy(), [0, 0, 0, 0, 1])


def test_it_round_trips_through_its_config():
  metric = auc_metric(200, name="ctr_auc")
  copy = BucketedAUC.from_config(metric.get_config())
  assert copy.name == "ctr_auc" and copy.thresholds == metric.thresholds
