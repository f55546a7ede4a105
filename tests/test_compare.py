"""`aitm compare` on the session pipeline's data and root: the shared steps come from
the cache, each model trains and is evaluated on the same split, nothing is pushed."""

import os

import pytest

from models.config import load_config
from pipeline import configs
from report import compare

pytestmark = pytest.mark.e2e


def test_a_model_only_change_keeps_example_gen_through_transform_cached(pipeline_run):
  """Embedding sizes and the batch size are the Trainer's alone: ExampleGen gets the
  columns and Transform the encodings, unchanged, so both come from the cache."""
  from models.config import parse_config
  from pipeline.local_runner import run_local
  from pipeline.pipeline import Extent
  with open(configs.CONFIG_PATH) as f:
    text = f.read()
  for old, new in (("embedding_dim: 16", "embedding_dim: 8"),
                   ("data_config {", "data_config {\n  batch_size: 333")):
    assert old in text
    text = text.replace(old, new)
  from report.run_summary import summarize
  metadata = run_local(config=parse_config(text, source="model_only_change.config"),
                       data_root=pipeline_run.data_dir, pipeline_root=pipeline_run.pipeline_root,
                       serving_dir=pipeline_run.serving_dir, extent=Extent.TRANSFORM)
  states = summarize(metadata).component_states
  assert list(states)[-1] == "Transform", states
  assert set(states.values()) == {"CACHED"}, states


@pytest.fixture(scope="module")
def compared(pipeline_run):
  peers = [load_config(os.path.join(configs.PROJECT_DIR, "configs", name))
           for name in ("shared_bottom.config", "esmm.config")]
  # The session run's pipeline name and root: ExampleGen .. Transform are reused.
  scores = compare.compare(peers, data_root=pipeline_run.data_dir,
                           pipeline_root=pipeline_run.pipeline_root,
                           pipeline_name=configs.PIPELINE_NAME, training={"max_epochs": 1})
  from report.run_summary import summarize
  last = summarize(os.path.join(pipeline_run.pipeline_root, "metadata.sqlite"))
  return scores, last


def test_one_row_per_model_with_auc_time_and_size(compared):
  scores, _ = compared
  assert [s.name for s in scores] == ["shared_bottom", "esmm"]
  for score in scores:
    assert set(score.auc) == {"ctr", "cvr"}
    assert all(0.5 < auc <= 1 for auc in score.auc.values()), score
    assert score.parameters > 100_000 and score.train_seconds > 0 and score.epochs == 1
  # ESMM has a second MLP over the embeddings where shared-bottom shares one.
  assert scores[1].parameters > scores[0].parameters
  table = compare.table(scores).splitlines()
  assert table[0] == "| model | AUC ctr | AUC cvr | train s | epochs | parameters |"
  assert table[2].startswith("| shared_bottom | ") and len(table) == 4


def test_shared_steps_come_from_the_cache_and_nothing_is_pushed(compared, pipeline_run):
  _, last = compared
  states = last.component_states
  for node in ("FileBasedExampleGen", "StatisticsGen", "ExampleValidator", "Transform"):
    assert states[node] == "CACHED", states
  assert states["Trainer"] == "COMPLETE" and states["Evaluator"] == "COMPLETE"
  assert "Pusher" not in states and last.pushed_dir is None
  # Evaluated without thresholds: never blessed, so never a later run's baseline.
  assert "latest_blessed_model_resolver" not in states and last.blessed is None
  assert len(os.listdir(os.path.join(pipeline_run.serving_dir, "aitm"))) == 1


def test_models_of_different_funnels_are_not_compared(pipeline_run):
  three = load_config(os.path.join(configs.PROJECT_DIR, "configs",
                                   "aitm_click_cart_buy.config"))
  with pytest.raises(ValueError, match="compare models of one funnel"):
    compare.compare([load_config(configs.CONFIG_PATH), three], data_root="unused",
                    pipeline_root="unused")
