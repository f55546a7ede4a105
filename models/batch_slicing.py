"""The Evaluator's extractors: TFMA's, with its per-example slicing replaced by per-batch groups.

TFMA's default extractors end by splitting each batch of extracts into one extract
per example and computing every example's slice keys in Python; each metric then
sees each (example, slice) once. Here, after TFMA's features, transformed
features, labels, weights and predictions extractors (batched, unchanged), one
extractor (`SliceGroups`) computes the slice keys of a whole batch with numpy and
emits one extract per slice present in it, holding that slice's rows: its labels,
predictions and weights as arrays. The metrics (models.task_metrics,
models.funnel_metrics) accumulate such groups. Slice keys are TFMA's: `()` for the
whole split, `((feature, value),)` per value of a sliced feature, the value looked
up first in the transformed features (the model's `transformed_features`
signature; with a baseline, either model's) and then in the raw ones, values as
Python scalars, bytes decoded as UTF-8; a row without the feature is in no slice of
it, a row with several values in one slice per value.

The TFX Evaluator uses it through its `module_path` (`custom_extractors` is the
name TFX looks for). It supports the EvalConfigs models.eval_config writes:
slicing specs of one feature each, no SQL or cross slices, no query keys.
"""

from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.extractors import slice_key_extractor
from tensorflow_model_analysis.extractors import unbatch_extractor
from tensorflow_model_analysis.proto import config_pb2
from tensorflow_model_analysis.utils import util as tfma_util

# What a group keeps of the batch's extracts: what the metrics read.
_GROUP_KEYS = (constants.LABELS_KEY, constants.PREDICTIONS_KEY, constants.EXAMPLE_WEIGHTS_KEY)

SliceKey = Tuple[Tuple[str, Any], ...]


def sliced_features(eval_config: config_pb2.EvalConfig) -> List[str]:
  """The features `eval_config` slices on, one per slicing spec after the overall one;
  ValueError for a spec this extractor doesn't compute."""
  features = []
  for spec in eval_config.slicing_specs:
    if spec.feature_values or spec.slice_keys_sql or len(spec.feature_keys) > 1:
      raise ValueError(f"slicing spec {spec}: the Evaluator slices on one feature per spec "
                       "(feature_keys: [name]); values, SQL and crosses are not supported")
    if spec.feature_keys:
      features.append(spec.feature_keys[0])
  if eval_config.cross_slicing_specs:
    raise ValueError("cross slicing specs are not supported by the Evaluator's extractors")
  if any(spec.example_weight_key or spec.example_weight_keys for spec in eval_config.model_specs):
    raise ValueError("example weights are not supported by the Evaluator's metrics")
  return features


def _feature_columns(name: str, extracts: Dict[str, Any], model_names: Sequence[str]) -> list:
  """The batch's columns of `name`: every model's transformed feature of that name,
  else the raw feature, else none."""
  transformed = extracts.get(constants.TRANSFORMED_FEATURES_KEY)
  columns = []
  if isinstance(transformed, dict):
    per_model = ([transformed.get(model) or {} for model in model_names]
                 if len(model_names) > 1 else [transformed])
    columns = [features[name] for features in per_model if features.get(name) is not None]
  if not columns:
    raw = (extracts.get(constants.FEATURES_KEY) or {}).get(name)
    columns = [raw] if raw is not None else []
  return columns


def _rows_and_values(column, batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
  """(row index, value) pairs of a batched feature: a [batch] or [batch, k] array (k
  values a row) or TFMA's VarLenTensorValue (some rows without a value)."""
  if isinstance(column, tfma.types.VarLenTensorValue):
    return np.asarray(column.indices)[:, 0], np.asarray(column.values)
  values = np.asarray(column)
  if values.ndim == 1:
    return np.arange(batch_size), values
  values = values.reshape(batch_size, -1)
  rows = np.repeat(np.arange(batch_size), values.shape[1])
  return rows, values.reshape(-1)


def _slice_value(feature: str, value) -> Any:
  """A feature value as TFMA puts it in a slice key: a Python scalar, bytes decoded."""
  if isinstance(value, bytes):
    try:
      return value.decode("utf-8")
    except UnicodeDecodeError as e:
      raise ValueError(f"found non-UTF8 feature value {value!r} in column '{feature}'") from e
  return value.item() if isinstance(value, np.generic) else value


def slice_groups(extracts: Dict[str, Any], features: Sequence[str],
                 model_names: Sequence[str]) -> Iterator[Tuple[SliceKey, np.ndarray]]:
  """(slice key, the batch's row indices in it) for every slice of the batch: the
  overall slice, then per feature each value its rows have."""
  size = tfma_util.batch_size(extracts)
  yield (), np.arange(size)
  for feature in features:
    columns = [_rows_and_values(column, size)
               for column in _feature_columns(feature, extracts, model_names)]
    if not columns:
      continue
    rows = np.concatenate([rows for rows, _ in columns])
    values = np.concatenate([values for _, values in columns])
    if not values.size:
      continue
    uniques, inverse = np.unique(values, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(uniques)))[:-1]
    for value, members in zip(uniques, np.split(rows[order], bounds)):
      yield ((feature, _slice_value(feature, value)),), np.unique(members)


def _take_rows(value, rows: np.ndarray, batch_size: int):
  """`value` (a dict of arrays, nested per model and output, or an array) with only
  `rows` of its batch dimension."""
  if isinstance(value, dict):
    return {key: _take_rows(item, rows, batch_size) for key, item in value.items()}
  if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == batch_size:
    return value[rows]
  return value


class _SliceGroupsFn(beam.DoFn):
  """A batch of extracts -> one extract per slice present in it, with that slice's rows."""

  def __init__(self, features: Sequence[str], model_names: Sequence[str]):
    self._features = list(features)
    self._model_names = list(model_names)
    self._groups = beam.metrics.Metrics.counter(constants.METRICS_NAMESPACE, "slice_groups")

  def process(self, extracts: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """Yields the batch's slice groups, each with its slice key (TFMA's
    SLICE_KEY_TYPES_KEY) and its rows of labels, predictions and weights."""
    size = tfma_util.batch_size(extracts)
    kept = {key: extracts[key] for key in _GROUP_KEYS if extracts.get(key) is not None}
    for slice_key, rows in slice_groups(extracts, self._features, self._model_names):
      self._groups.inc()
      group = _take_rows(kept, rows, size) if len(rows) < size else dict(kept)
      group[constants.SLICE_KEY_TYPES_KEY] = [slice_key]
      yield group


def SliceGroups(eval_config: config_pb2.EvalConfig) -> tfma.extractors.Extractor:  # noqa: N802 - a PTransform, TFMA's naming
  """The extractor that replaces TFMA's unbatching and slice-key extractors. It
  takes the slice key extractor's stage name, after which TFMA runs the metrics."""
  features = sliced_features(eval_config)
  model_names = [spec.name for spec in eval_config.model_specs]
  return tfma.extractors.Extractor(
      stage_name=slice_key_extractor.SLICE_KEY_EXTRACTOR_STAGE_NAME,
      ptransform=beam.ParDo(_SliceGroupsFn(features, model_names)))


def custom_extractors(eval_shared_model, eval_config: config_pb2.EvalConfig,
                      tensor_adapter_config: Optional[Any] = None
                      ) -> List[tfma.extractors.Extractor]:
  """The TFX Evaluator's extractors (its `custom_extractors` hook): TFMA's defaults up
  to the predictions, then SliceGroups."""
  replaced = (unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME,
              slice_key_extractor.SLICE_KEY_EXTRACTOR_STAGE_NAME)
  extractors = [extractor for extractor in tfma.default_extractors(
      eval_shared_model=eval_shared_model, eval_config=eval_config,
      tensor_adapter_config=tensor_adapter_config) if extractor.stage_name not in replaced]
  return extractors + [SliceGroups(eval_config)]
