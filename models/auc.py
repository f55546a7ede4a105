"""Keras' AUC with its confusion counts updated by bucketing, for thresholds spaced as
the Trainer spaces them (models.trainer.auc_metric)."""

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="aitm")
class BucketedAUC(tf.keras.metrics.AUC):
  """`tf.keras.metrics.AUC` (one label, no label weights) whose update costs
  O(batch x log thresholds) instead of O(batch x thresholds); the counts, and so the
  result, are Keras'.

  Keras' AUC buckets the predictions only when its thresholds are evenly spaced
  on [0, 1]. For any other thresholds (the Trainer's are evenly spaced in logit
  space) it compares every prediction with every threshold: with 1,000
  thresholds and a batch of 1,024, four `[1000, 1024]` comparisons and sums per
  task and step, 14% of the Trainer's step time (bench/trainer_profile.py).
  Here each prediction p `[batch]` falls in bucket b = the number of thresholds
  t_j < p (a binary search in the sorted thresholds); p counts as positive at
  threshold j exactly when j < b, as Keras' `p > t_j`, so with per-bucket
  label sums pos[b] and neg[b]:

      TP_j = sum_{b > j} pos[b]    FN_j = sum_{b <= j} pos[b]
      FP_j = sum_{b > j} neg[b]    TN_j = sum_{b <= j} neg[b]

  A label counts as positive when it is not 0, as Keras casts it to bool.
  """

  def update_state(self, y_true, y_pred, sample_weight=None):
    """Adds the batch's confusion counts at every threshold; `y_true`, `y_pred` and
    `sample_weight` (optional, broadcast to `y_pred`) of any shape, flattened."""
    if self.multi_label or self.label_weights is not None:
      return super().update_state(y_true, y_pred, sample_weight)
    if self._from_logits:
      y_pred = tf.sigmoid(y_pred)
    y_pred = tf.reshape(tf.cast(y_pred, self.dtype), [-1])
    positive = tf.reshape(tf.cast(tf.cast(y_true, tf.bool), self.dtype), [-1])
    weights = tf.ones_like(y_pred)
    if sample_weight is not None:
      weights = tf.cast(sample_weight, self.dtype)
      if weights.shape.rank:  # [batch] or [batch, 1]
        weights = tf.reshape(weights, [-1])
      weights = tf.broadcast_to(weights, tf.shape(y_pred))
    thresholds = tf.constant(self._thresholds, self.dtype)          # sorted, [T]
    buckets = tf.searchsorted(thresholds, y_pred, side="left")      # [batch] in 0..T
    count = self.num_thresholds + 1
    pos = tf.math.unsorted_segment_sum(positive * weights, buckets, count)
    neg = tf.math.unsorted_segment_sum((1.0 - positive) * weights, buckets, count)
    return tf.group(
        self.true_positives.assign_add(tf.cumsum(pos, reverse=True)[1:]),
        self.false_negatives.assign_add(tf.cumsum(pos)[:-1]),
        self.false_positives.assign_add(tf.cumsum(neg, reverse=True)[1:]),
        self.true_negatives.assign_add(tf.cumsum(neg)[:-1]))
