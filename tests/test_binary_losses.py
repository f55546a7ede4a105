"""models/binary_losses.py and models/loss_types.py: each EasyRec binary loss against a
NumPy computation of its published formula, written out here, with and without sample
weights; TowerLoss on probabilities; the TF-free tables.

The formulas (EasyRec bd230cb1, loss/*.py): v1 losses reduce by
sum(w * l) / count(w != 0); pairs are (i, j) with y_i > y_j over the whole batch and
weigh w_i; OHEM keeps the positive values among the top rint(n * ratio) weighted losses
and takes their mean.
"""

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from models import binary_losses, loss_types
from models.binary_losses import LOSS_FUNCTIONS, TowerLoss
from models.loss_types import (PARAM_DEFAULTS, PARAMS_FIELD, REFUSED, SUPPORTED,
                               function_params, loss_tensor_name)

# ---- the formulas, in float64 ----------------------------------------------------


def sigmoid(s):
  return 1.0 / (1.0 + np.exp(-s))


def ce(y, s):
  """-y log sigmoid(s) - (1 - y) log(1 - sigmoid(s)), per example."""
  return -y * np.log(sigmoid(s)) - (1.0 - y) * np.log(1.0 - sigmoid(s))


def nonzero_mean(losses, weights):
  count = np.count_nonzero(weights)
  return float(np.sum(weights * losses) / count) if count else 0.0


def ohem_mean(weighted_losses, ratio):
  k = int(np.rint(len(weighted_losses) * ratio))
  top = sorted(weighted_losses, reverse=True)[:k]
  kept = [v for v in top if v > 0]
  return float(np.mean(kept)) if kept else 0.0


def focal_ref(y, s, w, gamma=2.0, alpha=None, ohem_ratio=1.0, label_smoothing=0.0):
  p = np.clip(sigmoid(s), 1e-7, 1 - 1e-7)
  p_t = np.where(y == 1, p, 1 - p)
  weights = (1 - p_t) ** gamma * w
  if alpha is not None:
    weights = weights * np.where(y == 1, alpha, 1 - alpha)
  losses = ce(y * (1 - label_smoothing) + 0.5 * label_smoothing, s)
  if ohem_ratio == 1.0:
    return nonzero_mean(losses, weights)
  return ohem_mean(weights * losses, ohem_ratio)


def f1_ref(y, s, w, f1_beta_square=1.0, label_smoothing=0.0):
  batch, n_pos = len(y), np.sum(y)
  tp = np.sum(sigmoid(s))
  neg_weight = tp / (f1_beta_square * n_pos + (batch - n_pos) - (batch - tp) + 1e-8)
  weights = np.where(y == 1, 1.0, neg_weight) * w
  return nonzero_mean(ce(y * (1 - label_smoothing) + 0.5 * label_smoothing, s), weights)


def pairs(y):
  return [(i, j) for i in range(len(y)) for j in range(len(y)) if y[i] > y[j]]


def pair_wise_ref(y, s, w, margin=0.0, temperature=1.0):
  ps = pairs(y)
  losses = np.array([ce(1.0, (s[i] - s[j]) / temperature - margin) for i, j in ps])
  return nonzero_mean(losses, np.array([w[i] for i, _ in ps]))


def pairwise_focal_ref(y, s, w, gamma=2.0, alpha=None, hinge_margin=None, ohem_ratio=1.0,
                       temperature=1.0):
  d = {(i, j): (s[i] - s[j]) / temperature for i, j in pairs(y)}
  kept = [ij for ij in d if hinge_margin is None or d[ij] < hinge_margin]
  if not kept:
    return 0.0
  return focal_ref(np.ones(len(kept)), np.array([d[ij] for ij in kept]),
                   np.array([w[i] for i, _ in kept]), gamma, alpha, ohem_ratio)


def pairwise_logistic_ref(y, s, w, temperature=1.0, hinge_margin=None, ohem_ratio=1.0,
                          use_label_margin=False):
  ps = pairs(y)
  losses, weights = [], []
  for i, j in ps:
    d = (s[i] - s[j]) / temperature
    if use_label_margin:
      d -= (y[i] - y[j]) / temperature
    elif hinge_margin is not None:
      d -= hinge_margin
    losses.append(np.log1p(np.exp(-d)))
    weights.append(w[i])
  losses, weights = np.array(losses), np.array(weights)
  if ohem_ratio == 1.0:
    return nonzero_mean(losses, weights)
  return ohem_mean(weights * losses, ohem_ratio)


def pairwise_hinge_ref(y, s, w, temperature=1.0, margin=1.0, ohem_ratio=1.0,
                       label_is_logits=True, use_label_margin=True):
  losses, weights = [], []
  for i, j in pairs(y):
    label_gap = (y[i] - y[j]) / (temperature if label_is_logits else 1.0)
    target = label_gap if use_label_margin else margin
    losses.append(max(0.0, target - (s[i] - s[j]) / temperature))
    weights.append(w[i])
  losses, weights = np.array(losses), np.array(weights)
  if ohem_ratio == 1.0:
    return nonzero_mean(losses, weights)
  return ohem_mean(weights * losses, ohem_ratio)


REFERENCES = {
    "CLASSIFICATION": lambda y, s, w: nonzero_mean(ce(y, s), w),
    "BINARY_CROSS_ENTROPY_LOSS": lambda y, s, w: float(np.mean(ce(y, s))),
    "BINARY_FOCAL_LOSS": focal_ref,
    "F1_REWEIGHTED_LOSS": f1_ref,
    "PAIR_WISE_LOSS": pair_wise_ref,
    "PAIRWISE_FOCAL_LOSS": pairwise_focal_ref,
    "PAIRWISE_LOGISTIC_LOSS": pairwise_logistic_ref,
    "PAIRWISE_HINGE_LOSS": pairwise_hinge_ref,
}

# ---- data ------------------------------------------------------------------------

_RNG = np.random.default_rng(22)
LABELS = np.array([1, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0], np.float32)
LOGITS = _RNG.normal(0.0, 2.0, len(LABELS)).astype(np.float32)
WEIGHTS = _RNG.uniform(0.2, 2.0, len(LABELS)).astype(np.float32)
WEIGHTS[[3, 5]] = 0.0  # a positive and a negative dropped from the counts

CASES = [
    ("CLASSIFICATION", {}),
    ("BINARY_CROSS_ENTROPY_LOSS", {}),
    ("BINARY_FOCAL_LOSS", {}),
    ("BINARY_FOCAL_LOSS", {"alpha": 0.25}),
    ("BINARY_FOCAL_LOSS", {"gamma": 0.5, "ohem_ratio": 0.5}),
    ("BINARY_FOCAL_LOSS", {"alpha": 0.7, "ohem_ratio": 0.3, "label_smoothing": 0.1}),
    ("BINARY_FOCAL_LOSS", {"gamma": 0.0, "label_smoothing": 0.2}),
    ("F1_REWEIGHTED_LOSS", {}),
    ("F1_REWEIGHTED_LOSS", {"f1_beta_square": 0.5625, "label_smoothing": 0.2}),
    ("F1_REWEIGHTED_LOSS", {"f1_beta_square": 4.0}),
    ("PAIR_WISE_LOSS", {}),
    ("PAIR_WISE_LOSS", {"margin": 0.5}),
    ("PAIR_WISE_LOSS", {"margin": -0.3, "temperature": 2.0}),
    ("PAIRWISE_FOCAL_LOSS", {}),
    ("PAIRWISE_FOCAL_LOSS", {"alpha": 0.3, "hinge_margin": 1.0, "temperature": 0.5}),
    ("PAIRWISE_FOCAL_LOSS", {"gamma": 1.0, "ohem_ratio": 0.4}),
    ("PAIRWISE_LOGISTIC_LOSS", {}),
    ("PAIRWISE_LOGISTIC_LOSS", {"hinge_margin": 0.7, "temperature": 3.0}),
    ("PAIRWISE_LOGISTIC_LOSS", {"use_label_margin": True, "temperature": 2.0,
                                "ohem_ratio": 0.6}),
    ("PAIRWISE_LOGISTIC_LOSS", {"use_label_margin": True, "hinge_margin": 5.0}),  # ignored
    ("PAIRWISE_HINGE_LOSS", {}),
    ("PAIRWISE_HINGE_LOSS", {"temperature": 2.0}),
    ("PAIRWISE_HINGE_LOSS", {"temperature": 2.0, "label_is_logits": False}),
    ("PAIRWISE_HINGE_LOSS", {"use_label_margin": False, "margin": 0.8, "ohem_ratio": 0.5}),
]


def _id(case):
  loss_type, params = case
  return loss_type + "".join(f"-{k}={v}" for k, v in params.items())


# ---- the functions -----------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_each_loss_is_its_formula(case, weighted):
  loss_type, params = case
  y, s = LABELS.astype(np.float64), LOGITS.astype(np.float64)
  w = WEIGHTS.astype(np.float64) if weighted else np.ones_like(y)
  if loss_type == "BINARY_CROSS_ENTROPY_LOSS":
    w = np.ones_like(y)  # EasyRec ignores sample weights here
  expected = REFERENCES[loss_type](y, s, w, **params)
  got = LOSS_FUNCTIONS[loss_type](LABELS, LOGITS, WEIGHTS if weighted else None, **params)
  assert got.shape == ()
  np.testing.assert_allclose(float(got), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_type", SUPPORTED)
def test_column_shapes_and_weight_shapes_agree(loss_type):
  fn = LOSS_FUNCTIONS[loss_type]
  flat = float(fn(LABELS, LOGITS, WEIGHTS))
  column = float(fn(LABELS[:, None], LOGITS[:, None], WEIGHTS[:, None]))
  mixed = float(fn(LABELS[:, None], LOGITS[:, None], WEIGHTS))
  assert flat == pytest.approx(column, rel=1e-6) == pytest.approx(mixed, rel=1e-6)
  # A scalar weight w scales the loss by w (the count of non-zero weights is B).
  assert float(fn(LABELS, LOGITS, 2.5)) == pytest.approx(
      float(fn(LABELS, LOGITS)) * (1.0 if loss_type == "BINARY_CROSS_ENTROPY_LOSS" else 2.5),
      rel=1e-5)


def test_classification_divides_by_the_number_of_nonzero_weights_not_their_sum():
  # EasyRec's v1 reduction: sum(w * l) / count(w != 0), so doubling every weight doubles it.
  single = float(binary_losses.classification_loss(LABELS, LOGITS, WEIGHTS))
  double = float(binary_losses.classification_loss(LABELS, LOGITS, 2 * WEIGHTS))
  assert double == pytest.approx(2 * single, rel=1e-6)


PAIRWISE = ["PAIR_WISE_LOSS", "PAIRWISE_FOCAL_LOSS", "PAIRWISE_LOGISTIC_LOSS",
            "PAIRWISE_HINGE_LOSS"]


@pytest.mark.parametrize("labels", [np.ones(6, np.float32), np.zeros(6, np.float32)],
                         ids=["all-positive", "all-negative"])
@pytest.mark.parametrize("loss_type", PAIRWISE)
def test_a_batch_without_pairs_gives_zero_and_a_zero_gradient(loss_type, labels):
  params = [{}] if loss_type == "PAIR_WISE_LOSS" else [{}, {"ohem_ratio": 0.5}]
  for p in params:
    logits = tf.constant(LOGITS[:6])
    with tf.GradientTape() as tape:
      tape.watch(logits)
      value = LOSS_FUNCTIONS[loss_type](labels, logits, WEIGHTS[:6], **p)
    assert float(value) == 0.0, p
    assert np.array_equal(tape.gradient(value, logits).numpy(), np.zeros(6)), p


def test_no_pair_survives_a_hinge_margin_below_every_difference():
  value = binary_losses.pairwise_focal_loss(LABELS, LOGITS, hinge_margin=-100.0)
  assert float(value) == 0.0


def test_ohem_keeping_nothing_gives_zero():
  # rint(3 * 0.1) = 0 examples kept: EasyRec's mean of nothing would be NaN, and
  # TopK's gradient would fail.
  logits = tf.constant(LOGITS[:3])
  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = binary_losses.binary_focal_loss(LABELS[:3], logits, ohem_ratio=0.1)
  assert float(value) == 0.0
  assert np.array_equal(tape.gradient(value, logits).numpy(), np.zeros(3))


@pytest.mark.parametrize("loss_type", ["BINARY_FOCAL_LOSS", "PAIRWISE_FOCAL_LOSS",
                                       "PAIRWISE_LOGISTIC_LOSS", "PAIRWISE_HINGE_LOSS"])
@pytest.mark.parametrize("ratio", [0.0, 1.5])
def test_an_ohem_ratio_outside_0_1_is_refused(loss_type, ratio):
  with pytest.raises(ValueError, match="ohem_ratio must be in"):
    LOSS_FUNCTIONS[loss_type](LABELS, LOGITS, ohem_ratio=ratio)


def test_keyword_parameters_are_the_defaults_table():
  for loss_type, fn in LOSS_FUNCTIONS.items():
    signature = inspect.signature(fn)
    keyword_only = {name: p.default for name, p in signature.parameters.items()
                    if p.kind is p.KEYWORD_ONLY}
    assert keyword_only == PARAM_DEFAULTS[loss_type], loss_type
    assert list(signature.parameters)[:3] == ["labels", "logits", "sample_weight"]


# ---- TowerLoss -------------------------------------------------------------------

TERMS = [
    {"loss_type": "CLASSIFICATION", "weight": 1.0},
    {"loss_type": "BINARY_FOCAL_LOSS", "weight": 0.5,
     "params": {"gamma": 1.5, "alpha": 0.25}},
    {"loss_type": "PAIR_WISE_LOSS", "weight": 0.3, "params": {"margin": 0.2}},
    {"loss_type": "PAIRWISE_HINGE_LOSS", "weight": 2.0, "params": {"temperature": 2.0},
     "loss_name": "rank"},
]


@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["unweighted", "weighted"])
def test_tower_loss_sums_the_weighted_terms_computed_on_logits(weights):
  loss = TowerLoss(TERMS)
  probs = tf.sigmoid(LOGITS[:, None])
  expected = {
      "cross_entropy_loss": binary_losses.classification_loss(LABELS, LOGITS, weights),
      "binary_focal_loss": binary_losses.binary_focal_loss(
          LABELS, LOGITS, weights, gamma=1.5, alpha=0.25),
      "pair_wise_loss": binary_losses.pair_wise_loss(LABELS, LOGITS, weights, margin=0.2),
      "rank": binary_losses.pairwise_hinge_loss(LABELS, LOGITS, weights, temperature=2.0),
  }
  values = loss.term_values(LABELS[:, None], probs, weights)
  assert list(values) == list(expected)
  for name, value in expected.items():
    assert float(values[name]) == pytest.approx(float(value), rel=1e-4), name
  total = 1.0 * expected["cross_entropy_loss"] + 0.5 * expected["binary_focal_loss"] \
      + 0.3 * expected["pair_wise_loss"] + 2.0 * expected["rank"]
  assert float(loss(LABELS[:, None], probs, weights)) == pytest.approx(float(total), rel=1e-4)


def test_tower_loss_terms_are_named_as_easyrec_names_its_losses():
  loss = TowerLoss(TERMS, tower="ctr")
  assert loss.term_names == ["cross_entropy_loss_ctr", "binary_focal_loss_ctr",
                             "pair_wise_loss_ctr", "rank_ctr"]
  assert loss_tensor_name("CLASSIFICATION", "ce", "ctr") == "ce"  # EasyRec adds no suffix
  assert loss_tensor_name("F1_REWEIGHTED_LOSS") == "f1_reweighted_loss"


def test_tower_loss_get_config_round_trips():
  loss = TowerLoss(TERMS, tower="cvr", name="cvr_loss")
  config = loss.get_config()
  again = TowerLoss.from_config(config)
  assert again.get_config() == config
  assert config["terms"][0] == {"loss_type": "CLASSIFICATION", "weight": 1.0, "params": {},
                                "loss_name": ""}
  probs = tf.sigmoid(LOGITS)
  assert float(again(LABELS, probs, WEIGHTS)) == float(loss(LABELS, probs, WEIGHTS))
  # As a saved model holds it: the registered name, then back.
  serialized = tf.keras.losses.serialize(loss)
  assert serialized["registered_name"] == "aitm>TowerLoss"
  restored = tf.keras.losses.deserialize(serialized)
  assert isinstance(restored, TowerLoss) and restored.get_config() == config


@pytest.mark.parametrize("loss_type", SUPPORTED)
def test_gradients_are_finite_for_probabilities_of_exactly_0_and_1(loss_type):
  labels = np.array([1, 0, 1, 0, 1, 0], np.float32)
  probs = tf.constant([1.0, 0.0, 0.0, 1.0, 0.5, 0.3], tf.float32)  # right, right, wrong, wrong
  loss = TowerLoss([{"loss_type": loss_type}])
  with tf.GradientTape() as tape:
    tape.watch(probs)
    value = loss(labels, probs, np.full(6, 0.7, np.float32))
  gradient = tape.gradient(value, probs).numpy()
  assert np.isfinite(float(value)) and np.all(np.isfinite(gradient))


def test_tower_loss_in_compile_gets_the_sample_weights():
  x = _RNG.normal(size=(len(LABELS), 3)).astype(np.float32)
  model = tf.keras.Sequential([tf.keras.layers.Dense(1, activation="sigmoid")])
  loss = TowerLoss(TERMS)
  model.compile(optimizer="sgd", loss=loss)
  value = model.test_on_batch(x, LABELS[:, None], sample_weight=WEIGHTS)
  assert value == pytest.approx(float(loss(LABELS[:, None], model(x), WEIGHTS)), rel=1e-5)


@pytest.mark.parametrize("terms, message", [
    ([], "at least one term"),
    ([{"loss_type": "JRC_LOSS"}], "needs num_class 2"),
    ([{"loss_type": "BINARY_FOCAL_LOSS", "params": {"margin": 1.0}}], "has no parameter"),
    ([{"loss_type": "PAIR_WISE_LOSS", "params": {"session_name": "user_id"}}],
     "session_name is not supported"),
    ([{"loss_type": "CLASSIFICATION"}, {"loss_type": "BINARY_CROSS_ENTROPY_LOSS"}],
     "share the names \\['cross_entropy_loss'\\]"),
    ([{"loss_type": "CLASSIFICATION", "wieght": 2.0}], "unknown loss term keys"),
])
def test_tower_loss_refuses_bad_terms(terms, message):
  with pytest.raises(ValueError, match=message):
    TowerLoss(terms)


# ---- loss_types ------------------------------------------------------------------


def test_every_loss_type_is_supported_refused_or_handled_elsewhere_once():
  groups = [set(SUPPORTED), set(REFUSED), set(loss_types.HANDLED_ELSEWHERE)]
  assert set.union(*groups) == set(loss_types.LOSS_TYPE_NUMBERS)
  assert sum(map(len, groups)) == len(loss_types.LOSS_TYPE_NUMBERS) == 21
  assert sorted(loss_types.LOSS_TYPE_NUMBERS.values()) == list(range(21))
  assert set(LOSS_FUNCTIONS) == set(SUPPORTED) == set(PARAM_DEFAULTS) == set(PARAMS_FIELD)
  assert {f for f in PARAMS_FIELD.values() if f} == {
      "binary_focal_loss", "f1_reweighted_loss", "pairwise_loss", "pairwise_focal_loss",
      "pairwise_logistic_loss", "pairwise_hinge_loss"}


def test_function_params_drops_switched_off_refusals_and_refuses_switched_on_ones():
  assert function_params("PAIRWISE_HINGE_LOSS", {"margin": 0.5, "session_name": "",
                                                 "use_exponent": False}) == {"margin": 0.5}
  with pytest.raises(ValueError, match="use_exponent is not supported"):
    function_params("PAIRWISE_HINGE_LOSS", {"use_exponent": True})
  with pytest.raises(ValueError, match="regression"):
    function_params("L2_LOSS")
  with pytest.raises(ValueError, match="unknown loss type"):
    function_params("ORDER_CALIBRATE_LOSS")


def test_loss_types_loads_without_tensorflow():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  code = "import sys, models.loss_types; print('tensorflow' in sys.modules)"
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env=dict(os.environ, PYTHONPATH=root), timeout=60)
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip() == "False"
