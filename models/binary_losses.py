"""EasyRec's losses for a binary task tower, computed as EasyRec computes them, and
`TowerLoss`, a Keras loss summing a tower's weighted terms.

Each function takes `labels` [B] or [B, 1] (0/1), `logits` of the same shape, an
optional `sample_weight` broadcastable to them, and its type's parameters
(keyword-only, EasyRec's defaults, named as the proto fields), and returns a scalar.
The names, parameter fields and defaults are in `models/loss_types.py`.

EasyRec reduces with `tf.compat.v1.losses`' default, SUM_BY_NONZERO_WEIGHTS:
sum(weight * loss) / (number of non-zero weights), where the weights include the
loss's own factors (focal, F1). So a sample weight scales an example's loss without
renormalising by the weights' sum, and a zero weight drops the example from the count.

Sources: alibaba/EasyRec at bd230cb1, `builders/loss_builder.py`, `loss/focal_loss.py`,
`loss/f1_reweight_loss.py`, `loss/pairwise_loss.py`.
"""

from typing import Any, Dict, Iterable, List, Mapping, Optional

import tensorflow as tf

from models.loss_types import function_params, loss_tensor_name

# focal_loss.py clips the probabilities that weight the examples by this.
_FOCAL_EPSILON = 1e-7
# TowerLoss clips probabilities by this before turning them into logits.
PROBABILITY_EPSILON = 1e-7


def _flat(x) -> tf.Tensor:
  return tf.reshape(tf.cast(x, tf.float32), [-1])


def _inputs(labels, logits, sample_weight):
  """labels, logits and sample weights as float32 [B]; no sample weight is 1."""
  labels, logits = _flat(labels), _flat(logits)
  if sample_weight is None:
    return labels, logits, tf.ones_like(labels)
  weights = tf.cast(sample_weight, tf.float32)
  if weights.shape.rank is not None and weights.shape.rank > 1:
    weights = tf.reshape(weights, [-1])  # [B, 1] as Keras passes it for a [B, 1] output
  return labels, logits, tf.broadcast_to(weights, tf.shape(labels))


def _mean_by_nonzero_weights(losses, weights) -> tf.Tensor:
  """sum(w * l) / count(w != 0), 0 when nothing counts (no pairs): the reduction of
  `tf.compat.v1.losses` (SUM_BY_NONZERO_WEIGHTS), whose division is div_no_nan too."""
  present = tf.reduce_sum(tf.cast(tf.not_equal(weights, 0.0), tf.float32))
  return tf.math.divide_no_nan(tf.reduce_sum(weights * losses), present)


def _hard_example_mean(weighted_losses, ohem_ratio) -> tf.Tensor:
  """EasyRec's OHEM: the mean of the positive values among the top rint(n * ratio)
  weighted losses. 0, not EasyRec's NaN, when none is left (no pairs, tiny batch)."""
  n = tf.cast(tf.size(weighted_losses), tf.float32)
  k = tf.cast(tf.math.rint(n * ohem_ratio), tf.int32)
  # TopK's own gradient fails for k = 0 (a batch without pairs); gathering the same
  # entries gives the same values and gradient.
  top = tf.gather(weighted_losses, tf.math.top_k(tf.stop_gradient(weighted_losses), k).indices)
  kept = tf.cast(top > 0, tf.float32)
  return tf.math.divide_no_nan(tf.reduce_sum(top * kept), tf.reduce_sum(kept))


def _sigmoid_ce(labels, logits, label_smoothing=0.0) -> tf.Tensor:
  """Per-example sigmoid cross-entropy; labels smoothed towards 1/2 as v1 losses do."""
  if label_smoothing > 0:
    labels = labels * (1.0 - label_smoothing) + 0.5 * label_smoothing
  return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)


def _check_ohem(ohem_ratio, name):
  if not 0 < ohem_ratio <= 1.0:
    raise ValueError(f"{name}: ohem_ratio must be in (0, 1], got {ohem_ratio}")


def _focal(labels, logits, weights, gamma, alpha, ohem_ratio, label_smoothing, name):
  """focal_loss.py `sigmoid_focal_loss_with_logits` on [N] labels, logits, weights."""
  _check_ohem(ohem_ratio, name)
  if gamma is not None and gamma < 0:
    raise ValueError(f"{name}: gamma must be >= 0, got {gamma}")
  probs = tf.clip_by_value(tf.sigmoid(logits), _FOCAL_EPSILON, 1.0 - _FOCAL_EPSILON)
  p_t = labels * probs + (1.0 - labels) * (1.0 - probs)
  # No stop_gradient: EasyRec differentiates through the focal factor as well.
  focal_weights = tf.pow(1.0 - p_t, gamma) * weights
  if alpha is not None:
    focal_weights *= labels * alpha + (1.0 - alpha) * (1.0 - labels)
  losses = _sigmoid_ce(labels, logits, label_smoothing)
  if ohem_ratio == 1.0:
    return _mean_by_nonzero_weights(losses, focal_weights)
  return _hard_example_mean(focal_weights * losses, ohem_ratio)


def classification_loss(labels, logits, sample_weight=None) -> tf.Tensor:
  """CLASSIFICATION (num_class 1): `tf.losses.sigmoid_cross_entropy(labels, logits,
  weights)`, sum(w * ce) / count(w != 0). Inputs [B] or [B, 1] -> scalar."""
  labels, logits, weights = _inputs(labels, logits, sample_weight)
  return _mean_by_nonzero_weights(_sigmoid_ce(labels, logits), weights)


def binary_cross_entropy_loss(labels, logits, sample_weight=None) -> tf.Tensor:
  """BINARY_CROSS_ENTROPY_LOSS: mean sigmoid cross-entropy over the batch. EasyRec
  ignores sample weights here, so does this. Inputs [B] or [B, 1] -> scalar."""
  del sample_weight  # accepted for a uniform signature, ignored as in EasyRec
  labels, logits = _flat(labels), _flat(logits)
  return tf.reduce_mean(_sigmoid_ce(labels, logits))


def binary_focal_loss(labels, logits, sample_weight=None, *, gamma=2.0, alpha=None,
                      ohem_ratio=1.0, label_smoothing=0.0) -> tf.Tensor:
  """BINARY_FOCAL_LOSS: sigmoid CE (labels smoothed) weighted by w * (1 - p_t)^gamma,
  times alpha_t if alpha is set, p clipped to [1e-7, 1 - 1e-7]; reduced by non-zero
  weights, or with ohem_ratio < 1 the mean of the positive top-k weighted losses.
  Inputs [B] or [B, 1] -> scalar."""
  labels, logits, weights = _inputs(labels, logits, sample_weight)
  return _focal(labels, logits, weights, gamma, alpha, ohem_ratio, label_smoothing,
                "binary_focal_loss")


def f1_reweighted_loss(labels, logits, sample_weight=None, *, f1_beta_square=1.0,
                       label_smoothing=0.0) -> tf.Tensor:
  """F1_REWEIGHTED_LOSS: sigmoid CE (labels smoothed) with positives weighted 1 and
  negatives sum(p) / (beta^2 * n_pos + n_neg - (B - sum(p)) + 1e-8), per batch, times
  w; reduced by non-zero weights. Inputs [B] or [B, 1] -> scalar."""
  labels, logits, weights = _inputs(labels, logits, sample_weight)
  batch = tf.cast(tf.size(labels), tf.float32)
  num_pos = tf.reduce_sum(labels)
  tp = tf.reduce_sum(tf.sigmoid(logits))  # no stop_gradient, as EasyRec
  neg_weight = tp / (f1_beta_square * num_pos + (batch - num_pos) - (batch - tp) + 1e-8)
  final_weights = tf.where(tf.equal(labels, 1.0), tf.ones_like(labels),
                           neg_weight * tf.ones_like(labels)) * weights
  return _mean_by_nonzero_weights(_sigmoid_ce(labels, logits, label_smoothing),
                                  final_weights)


def _pairs(labels, logits, weights, temperature, labels_too=False):
  """The [B, B] pair matrices over the whole batch: logit differences s_i - s_j and
  label differences y_i - y_j (after dividing by the temperature; the labels too if
  `labels_too`), and each pair's weight, w_i of its higher-labelled item."""
  if temperature != 1.0:
    logits = logits / temperature
    if labels_too:
      labels = labels / temperature
  logit_diff = logits[:, None] - logits[None, :]
  label_diff = labels[:, None] - labels[None, :]
  pair_weights = tf.broadcast_to(weights[:, None], tf.shape(logit_diff))
  return logit_diff, label_diff, pair_weights


def pair_wise_loss(labels, logits, sample_weight=None, *, margin=0.0,
                   temperature=1.0) -> tf.Tensor:
  """PAIR_WISE_LOSS (EasyRec's deprecated `pairwise_loss`): over all pairs y_i > y_j
  in the batch, sigmoid CE(1, (s_i - s_j) / T - margin) weighted by w_i; reduced by
  non-zero weights; 0 without pairs. Inputs [B] or [B, 1] -> scalar."""
  labels, logits, weights = _inputs(labels, logits, sample_weight)
  logit_diff, label_diff, pair_weights = _pairs(labels, logits, weights, temperature)
  mask = label_diff > 0
  pair_logits = tf.boolean_mask(logit_diff - margin, mask)
  losses = _sigmoid_ce(tf.ones_like(pair_logits), pair_logits)
  return _mean_by_nonzero_weights(losses, tf.boolean_mask(pair_weights, mask))


def pairwise_focal_loss(labels, logits, sample_weight=None, *, gamma=2.0, alpha=None,
                        hinge_margin=None, ohem_ratio=1.0, temperature=1.0) -> tf.Tensor:
  """PAIRWISE_FOCAL_LOSS: the focal loss with label 1 on d = (s_i - s_j) / T for the
  pairs y_i > y_j (and d < hinge_margin if set), weighted by w_i; 0 without pairs.
  Inputs [B] or [B, 1] -> scalar."""
  labels, logits, weights = _inputs(labels, logits, sample_weight)
  logit_diff, label_diff, pair_weights = _pairs(labels, logits, weights, temperature)
  mask = label_diff > 0
  if hinge_margin is not None:
    mask = tf.logical_and(mask, logit_diff < hinge_margin)
  pair_logits = tf.boolean_mask(logit_diff, mask)
  return _focal(tf.ones_like(pair_logits), pair_logits, tf.boolean_mask(pair_weights, mask),
                gamma, alpha, ohem_ratio, 0.0, "pairwise_focal_loss")


def _pairwise_reduce(losses, pair_weights, ohem_ratio):
  """compute_weighted_loss's reduction, or OHEM on the weighted pair losses."""
  if ohem_ratio == 1.0:
    return _mean_by_nonzero_weights(losses, pair_weights)
  return _hard_example_mean(pair_weights * losses, ohem_ratio)


def pairwise_logistic_loss(labels, logits, sample_weight=None, *, temperature=1.0,
                           hinge_margin=None, ohem_ratio=1.0,
                           use_label_margin=False) -> tf.Tensor:
  """PAIRWISE_LOGISTIC_LOSS (RankNet): log(1 + exp(-d)) over pairs y_i > y_j, with
  d = (s_i - s_j) / T minus (y_i - y_j) / T if use_label_margin, else minus
  hinge_margin if set; weighted by w_i, reduced by non-zero weights or OHEM; 0
  without pairs. Inputs [B] or [B, 1] -> scalar."""
  _check_ohem(ohem_ratio, "pairwise_logistic_loss")
  labels, logits, weights = _inputs(labels, logits, sample_weight)
  logit_diff, label_diff, pair_weights = _pairs(labels, logits, weights, temperature,
                                                labels_too=use_label_margin)
  if use_label_margin:
    logit_diff -= label_diff
  elif hinge_margin is not None:
    logit_diff -= hinge_margin
  mask = label_diff > 0
  d = tf.boolean_mask(logit_diff, mask)
  # log(1 + exp(-d)), written so exp never overflows.
  losses = tf.nn.relu(-d) + tf.math.log1p(tf.exp(-tf.abs(d)))
  return _pairwise_reduce(losses, tf.boolean_mask(pair_weights, mask), ohem_ratio)


def pairwise_hinge_loss(labels, logits, sample_weight=None, *, temperature=1.0, margin=1.0,
                        ohem_ratio=1.0, label_is_logits=True,
                        use_label_margin=True) -> tf.Tensor:
  """PAIRWISE_HINGE_LOSS without use_exponent: relu(m - (s_i - s_j) / T) over pairs
  y_i > y_j, m = (y_i - y_j) (divided by T if label_is_logits) if use_label_margin,
  else margin; weighted by w_i, reduced by non-zero weights or OHEM; 0 without pairs.
  Inputs [B] or [B, 1] -> scalar."""
  _check_ohem(ohem_ratio, "pairwise_hinge_loss")
  labels, logits, weights = _inputs(labels, logits, sample_weight)
  logit_diff, label_diff, pair_weights = _pairs(labels, logits, weights, temperature,
                                                labels_too=label_is_logits)
  mask = label_diff > 0
  pair_logits = tf.boolean_mask(logit_diff, mask)
  target = tf.boolean_mask(label_diff, mask) if use_label_margin else margin
  losses = tf.nn.relu(target - pair_logits)
  return _pairwise_reduce(losses, tf.boolean_mask(pair_weights, mask), ohem_ratio)


# EasyRec LossType name -> the function computing it.
LOSS_FUNCTIONS = {
    "CLASSIFICATION": classification_loss,
    "BINARY_CROSS_ENTROPY_LOSS": binary_cross_entropy_loss,
    "BINARY_FOCAL_LOSS": binary_focal_loss,
    "F1_REWEIGHTED_LOSS": f1_reweighted_loss,
    "PAIR_WISE_LOSS": pair_wise_loss,
    "PAIRWISE_FOCAL_LOSS": pairwise_focal_loss,
    "PAIRWISE_LOGISTIC_LOSS": pairwise_logistic_loss,
    "PAIRWISE_HINGE_LOSS": pairwise_hinge_loss,
}

_TERM_KEYS = ("loss_type", "weight", "params", "loss_name")


def _normalized_term(term: Mapping[str, Any]) -> Dict[str, Any]:
  unknown = set(term) - set(_TERM_KEYS)
  if unknown:
    raise ValueError(f"unknown loss term keys {sorted(unknown)}; a term has {_TERM_KEYS}")
  loss_type = term["loss_type"]
  params = function_params(loss_type, term.get("params"))
  return {"loss_type": loss_type, "weight": float(term.get("weight", 1.0)),
          "params": params, "loss_name": term.get("loss_name", "") or ""}


@tf.keras.utils.register_keras_serializable(package="aitm")
class TowerLoss(tf.keras.losses.Loss):
  """A tower's loss: sum over `terms` of weight * term, each term one EasyRec loss.

  `terms`: [{"loss_type": LossType name, "weight": float (1.0), "params": {field:
  value} (the set fields of its parameter message), "loss_name": str ("")}].
  `tower`: appended to the term names as EasyRec does (`loss_tensor_name`).
  Called with y_true [B] or [B, 1] (0/1), y_pred the tower's sigmoid probability of
  the same shape, and an optional sample_weight (passed into each term as EasyRec
  passes its sample weight; BINARY_CROSS_ENTROPY_LOSS ignores it); returns a scalar.
  """

  def __init__(self, terms: Iterable[Mapping[str, Any]], tower: str = "",
               reduction=tf.keras.losses.Reduction.AUTO, name: Optional[str] = None):
    super().__init__(reduction=reduction, name=name or "tower_loss")
    self.terms: List[Dict[str, Any]] = [_normalized_term(t) for t in terms]
    if not self.terms:
      raise ValueError("a TowerLoss needs at least one term")
    self.tower = tower
    self.term_names = [loss_tensor_name(t["loss_type"], t["loss_name"], tower)
                       for t in self.terms]
    # EasyRec keys its loss dict by these names, so a repeated one silently keeps only
    # the last term (CLASSIFICATION and BINARY_CROSS_ENTROPY_LOSS, both unnamed).
    repeated = sorted({n for n in self.term_names if self.term_names.count(n) > 1})
    if repeated:
      raise ValueError(f"loss terms share the names {repeated} (EasyRec would keep only "
                       "the last of each); give them distinct loss_name values")

  @staticmethod
  def logits_from_probabilities(y_pred) -> tf.Tensor:
    """Probabilities -> logits log(p / (1 - p)), p clipped to [1e-7, 1 - 1e-7]."""
    # A float32 sigmoid rounds to exactly 1.0 once its logit passes ~17 (and to 0.0
    # far below): log(0) would give infinite logits, infinite losses and NaN
    # gradients. Clipping bounds the logits to about +-16, the epsilon Keras' own
    # BinaryCrossentropy on probabilities and EasyRec's focal loss clip by; a
    # clipped (saturated) prediction then gets no gradient through this loss.
    p = tf.clip_by_value(tf.cast(y_pred, tf.float32), PROBABILITY_EPSILON,
                         1.0 - PROBABILITY_EPSILON)
    return tf.math.log(p) - tf.math.log1p(-p)

  def term_values(self, y_true, y_pred, sample_weight=None) -> Dict[str, tf.Tensor]:
    """{term name: unweighted value (scalar)} for logging; y_pred probabilities."""
    logits = self.logits_from_probabilities(y_pred)
    return {name: LOSS_FUNCTIONS[t["loss_type"]](y_true, logits, sample_weight, **t["params"])
            for name, t in zip(self.term_names, self.terms)}

  def __call__(self, y_true, y_pred, sample_weight=None):
    """sum(weight * term) (scalar). Overrides Loss.__call__, which would multiply the
    already reduced value by the sample weights: here they go into each term."""
    with tf.name_scope(self._name_scope):
      values = self.term_values(y_true, y_pred, sample_weight)
      return tf.add_n([t["weight"] * values[name]
                       for name, t in zip(self.term_names, self.terms)])

  def call(self, y_true, y_pred):
    """sum(weight * term) without sample weights (scalar)."""
    return self(y_true, y_pred)

  def get_config(self):
    """The constructor arguments, for Keras serialization."""
    config = super().get_config()
    config.update(terms=[dict(t, params=dict(t["params"])) for t in self.terms],
                  tower=self.tower)
    return config
