"""Resolvers of the latest blessed model: the Evaluator's baseline and the Trainer's
warm-start base.

Local runs resolve them with the two strategies here, which give a rerun its first
run's inputs back, so it is served from the cache; KubeflowV2DagRunner compiles only
TFX's stock LatestBlessedModelStrategy (`blessed_model_resolver(rerun_safe=False)`).
"""

from typing import Dict, Set

from tfx import v1 as tfx
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy)
from tfx.types import Channel
from tfx.types.standard_artifacts import Model, ModelBlessing

class LatestBlessedOtherModelStrategy(LatestBlessedModelStrategy):
  """The latest blessed model that is not the candidate itself.

  Inputs `model` and `model_blessing` as for LatestBlessedModelStrategy, plus
  `candidate` (the Trainer's model, passed through). When the Trainer comes
  from the cache its model is the one blessed last time; the stock strategy
  would make it its own baseline, so the Evaluator's inputs would differ from
  the first run's, and it would re-evaluate the model against itself and push
  a copy. Leaving the candidate out gives the first run's inputs back, and the
  rerun is served from the cache.
  """

  def resolve_artifacts(self, store, input_dict):
    """The latest blessed `model` and its `model_blessing` among the models other than
    `candidate` (empty lists when none), and `candidate` passed through."""
    candidate = list(input_dict.get("candidate", []))
    exclude = {artifact.id for artifact in candidate}
    others = [m for m in input_dict.get("model", []) if m.id not in exclude]
    result = self._resolve({"model": others,
                            "model_blessing": list(input_dict.get("model_blessing", []))},
                           "model", "model_blessing")
    result["candidate"] = candidate
    return result


class LatestBlessedModelOnOtherDataStrategy(LatestBlessedModelStrategy):
  """The latest blessed model that was not trained on this run's training data.

  Inputs `model` and `model_blessing` as for LatestBlessedModelStrategy, plus
  `examples` (Transform's transformed examples, passed through). A rerun on
  the same data would otherwise warm-start from the model its first run
  trained and blessed: the Trainer's inputs would differ from the first run's,
  so it would train again, on the same rows, instead of coming from the cache.
  Leaving out the models trained on these examples gives the first run's base
  model back; models trained on other data (an earlier span or window) are
  what a warm start is for.
  """

  def resolve_artifacts(self, store, input_dict):
    """The latest blessed `model` and its `model_blessing` among the models not trained on
    `examples` (empty lists when none), and `examples` passed through."""
    examples = list(input_dict.get("examples", []))
    models = list(input_dict.get("model", []))
    same_data = _trained_on(store, models, {a.id for a in examples})
    result = self._resolve({"model": [m for m in models if m.id not in same_data],
                            "model_blessing": list(input_dict.get("model_blessing", []))},
                           "model", "model_blessing")
    result["examples"] = examples
    return result


def _trained_on(store, models, examples_ids: Set[int]) -> Set[int]:
  """The ids of `models` whose producing execution read one of `examples_ids`: a
  Trainer's (a resolver that passed a model on records it as an output only)."""
  if not models or not examples_ids:
    return set()
  produced: Dict[int, Set[int]] = {}
  for event in store.get_events_by_artifact_ids([m.id for m in models]):
    if event.type == event.OUTPUT:
      produced.setdefault(event.execution_id, set()).add(event.artifact_id)
  found: Set[int] = set()
  for event in store.get_events_by_execution_ids(sorted(produced)):
    if event.type == event.INPUT and event.artifact_id in examples_ids:
      found |= produced[event.execution_id]
  return found


def blessed_model_resolver(node_id: str, rerun_safe: bool, strategy, **inputs
                           ) -> tfx.dsl.Resolver:
  """The latest blessed Model (and its ModelBlessing) of this pipeline, from ML
  Metadata: with `rerun_safe` by `strategy`, one of the strategies above, which
  also reads `inputs`; else by TFX's stock LatestBlessedModelStrategy (what
  KubeflowV2DagRunner compiles)."""
  if not rerun_safe:
    strategy, inputs = tfx.dsl.experimental.LatestBlessedModelStrategy, {}
  return tfx.dsl.Resolver(
      strategy_class=strategy, model=Channel(type=Model),
      model_blessing=Channel(type=ModelBlessing), **inputs).with_id(node_id)
