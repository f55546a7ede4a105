"""EasyRec's LossType names for a binary (0/1 label) task tower: which are supported,
their parameter messages with EasyRec's defaults, and why the others are refused.

Plain tables, no TensorFlow: the config checker reads them without loading it.
`models/binary_losses.py` holds the functions, one per name in `SUPPORTED`.

Sources: alibaba/EasyRec at bd230cb1, `easy_rec/python/protos/loss.proto`,
`builders/loss_builder.py` (`build`) and `model/rank_model.py` (`_build_loss_impl`).
"""

from typing import Any, Dict, Mapping, Optional

# `enum LossType` in loss.proto, every value at EasyRec's number.
LOSS_TYPE_NUMBERS: Dict[str, int] = {
    "CLASSIFICATION": 0,
    "L2_LOSS": 1,
    "SIGMOID_L2_LOSS": 2,
    "CROSS_ENTROPY_LOSS": 3,
    "SOFTMAX_CROSS_ENTROPY": 4,
    "CIRCLE_LOSS": 5,
    "MULTI_SIMILARITY_LOSS": 6,
    "SOFTMAX_CROSS_ENTROPY_WITH_NEGATIVE_MINING": 7,
    "PAIR_WISE_LOSS": 8,
    "F1_REWEIGHTED_LOSS": 9,
    "BINARY_FOCAL_LOSS": 10,
    "PAIRWISE_FOCAL_LOSS": 11,
    "PAIRWISE_LOGISTIC_LOSS": 12,
    "JRC_LOSS": 13,
    "ORDER_CALIBRATE_LOSS": 14,
    "BINARY_CROSS_ENTROPY_LOSS": 15,
    "KL_DIVERGENCE_LOSS": 16,
    "PAIRWISE_HINGE_LOSS": 17,
    "LISTWISE_RANK_LOSS": 18,
    "LISTWISE_DISTILL_LOSS": 19,
    "ZILN_LOSS": 20,
}

# ORDER_CALIBRATE_LOSS relates two towers' probabilities; models/losses.py has it.
HANDLED_ELSEWHERE = ("ORDER_CALIBRATE_LOSS",)

# The field of `Loss.loss_param` (a oneof) that carries each supported type's
# parameters; None: the type has no parameter message (EasyRec ignores a set one).
PARAMS_FIELD: Dict[str, Optional[str]] = {
    "CLASSIFICATION": None,
    "BINARY_CROSS_ENTROPY_LOSS": None,
    "BINARY_FOCAL_LOSS": "binary_focal_loss",
    "F1_REWEIGHTED_LOSS": "f1_reweighted_loss",
    "PAIR_WISE_LOSS": "pairwise_loss",
    "PAIRWISE_FOCAL_LOSS": "pairwise_focal_loss",
    "PAIRWISE_LOGISTIC_LOSS": "pairwise_logistic_loss",
    "PAIRWISE_HINGE_LOSS": "pairwise_hinge_loss",
}

SUPPORTED = tuple(PARAMS_FIELD)

# The values EasyRec computes with when a field is unset (or the whole message is).
# hinge_margin is None for both types that have it: the builder passes it only if
# HasField, so PairwiseFocalLoss's proto default 1.0 never applies (and
# PairwiseLogisticLoss declares none), whatever EasyRec's loss.md says.
PARAM_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "CLASSIFICATION": {},
    "BINARY_CROSS_ENTROPY_LOSS": {},
    "BINARY_FOCAL_LOSS": {"gamma": 2.0, "alpha": None, "ohem_ratio": 1.0,
                          "label_smoothing": 0.0},
    "F1_REWEIGHTED_LOSS": {"f1_beta_square": 1.0, "label_smoothing": 0.0},
    "PAIR_WISE_LOSS": {"margin": 0.0, "temperature": 1.0},
    "PAIRWISE_FOCAL_LOSS": {"gamma": 2.0, "alpha": None, "hinge_margin": None,
                            "ohem_ratio": 1.0, "temperature": 1.0},
    "PAIRWISE_LOGISTIC_LOSS": {"temperature": 1.0, "hinge_margin": None, "ohem_ratio": 1.0,
                               "use_label_margin": False},
    "PAIRWISE_HINGE_LOSS": {"temperature": 1.0, "margin": 1.0, "ohem_ratio": 1.0,
                            "label_is_logits": True, "use_label_margin": True},
}

_SESSION = ("pairs within a session need the session field (e.g. user_id) in the "
            "training batch, which carries only the model's features; leave it unset "
            "to pair over the whole batch")

# Parameters of supported types that are refused when set to a true value (a
# non-empty session_name, use_exponent: true); false or empty ones are dropped.
REFUSED_PARAMS: Dict[str, Dict[str, str]] = {
    "PAIR_WISE_LOSS": {"session_name": _SESSION},
    "PAIRWISE_FOCAL_LOSS": {"session_name": _SESSION},
    "PAIRWISE_LOGISTIC_LOSS": {"session_name": _SESSION},
    "PAIRWISE_HINGE_LOSS": {
        "session_name": _SESSION,
        "use_exponent": ("EasyRec's use_exponent replaces the logits with "
                         "sigmoid(labels) (loss/pairwise_loss.py), so the loss no "
                         "longer depends on the model"),
    },
}

_NOT_RANK = ("not a loss of rank or multi-task models: EasyRec's _build_loss_impl raises "
             "'invalid loss type' (it is for knowledge distillation or matching models)")
_REGRESSION = "a regression loss; a binary tower has 0/1 labels and one logit"

REFUSED: Dict[str, str] = {
    "L2_LOSS": _REGRESSION + " (mean squared error on the output)",
    "SIGMOID_L2_LOSS": _REGRESSION + " (mean squared error on sigmoid(output))",
    "ZILN_LOSS": _REGRESSION + " (zero-inflated lognormal LTV loss, num_class 3)",
    "CROSS_ENTROPY_LOSS": _NOT_RANK,
    "SOFTMAX_CROSS_ENTROPY": _NOT_RANK,
    "CIRCLE_LOSS": _NOT_RANK,
    "MULTI_SIMILARITY_LOSS": _NOT_RANK,
    "SOFTMAX_CROSS_ENTROPY_WITH_NEGATIVE_MINING": _NOT_RANK,
    "KL_DIVERGENCE_LOSS": _NOT_RANK,
    "JRC_LOSS": ("needs num_class 2 (a two-logit head; towers here have one logit) and "
                 "a session_name field in the training batch"),
    "LISTWISE_RANK_LOSS": ("needs session_name (a softmax per session; EasyRec fails "
                           "without it) and the session field in the training batch"),
    "LISTWISE_DISTILL_LOSS": ("its labels are a teacher's rank positions (clipped to "
                              "[1, 512]), not 0/1 labels; it also needs session_name"),
}

# CLASSIFICATION and BINARY_CROSS_ENTROPY_LOSS are named cross_entropy_loss.
_CROSS_ENTROPY_TYPES = ("CLASSIFICATION", "BINARY_CROSS_ENTROPY_LOSS")


def loss_tensor_name(loss_type: str, loss_name: str = "", tower: str = "") -> str:
  """The key EasyRec gives the loss in its loss dict (rank_model.py `_build_loss_impl`).

  Other types: `(loss_name or lowercase type) + "_<tower>"`. CLASSIFICATION and
  BINARY_CROSS_ENTROPY_LOSS: `loss_name` as given (no tower suffix), else
  `cross_entropy_loss_<tower>`. Without `tower`, no suffix. ORDER_CALIBRATE_LOSS:
  `order_calibrate_loss` whatever the tower and loss_name (multi_task_model.py
  `build_loss_graph` sums a tower's calibrations under that one key, which a later
  tower's calibrations overwrite)."""
  if loss_type == "ORDER_CALIBRATE_LOSS":
    return "order_calibrate_loss"
  suffix = f"_{tower}" if tower else ""
  if loss_type in _CROSS_ENTROPY_TYPES:
    return loss_name if loss_name else "cross_entropy_loss" + suffix
  return (loss_name or loss_type.lower()) + suffix


def function_params(loss_type: str, params: Optional[Mapping[str, Any]] = None
                    ) -> Dict[str, Any]:
  """The keyword arguments for `binary_losses.LOSS_FUNCTIONS[loss_type]` from the set
  fields of its parameter message (`{field: value}`).

  Raises ValueError for a refused or unknown type (with `REFUSED`'s reason), an
  unknown field, or a field of `REFUSED_PARAMS` set to a true value; drops such a
  field when it's false or empty, as it then changes nothing."""
  if loss_type not in PARAM_DEFAULTS:
    if loss_type in REFUSED:
      raise ValueError(f"loss type {loss_type} is not supported for a binary tower: "
                       f"{REFUSED[loss_type]}")
    raise ValueError(f"unknown loss type {loss_type!r} for a binary tower; supported: "
                     f"{', '.join(SUPPORTED)}")
  known, refused = PARAM_DEFAULTS[loss_type], REFUSED_PARAMS.get(loss_type, {})
  kwargs = {}
  for field, value in (params or {}).items():
    if field in refused:
      if value:
        raise ValueError(f"{loss_type}: {field} is not supported: {refused[field]}")
      continue
    if field not in known:
      message = f"{PARAMS_FIELD[loss_type]}.{field}" if PARAMS_FIELD[loss_type] else field
      raise ValueError(f"{loss_type} has no parameter {message}; it takes: "
                       f"{', '.join(known) or 'none'}")
    kwargs[field] = value
  return kwargs
