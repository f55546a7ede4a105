"""The component graph create_pipeline builds for each use, without running it."""

import pytest

from models.config import load_config
from pipeline import configs
from pipeline.pipeline import create_pipeline

CONFIG = load_config(configs.CONFIG_PATH)


def _ids(tmp_path, **kwargs):
  pipeline = create_pipeline(config=CONFIG, pipeline_root=str(tmp_path / "root"),
                             data_root=str(tmp_path / "data"),
                             serving_dir=str(tmp_path / "serving"), **kwargs)
  return [c.id for c in pipeline.components]


def test_run_compare_and_training_only_graphs(tmp_path):
  run = _ids(tmp_path)
  assert {"latest_blessed_model_resolver", "Evaluator", "Pusher"} <= set(run)
  compare = _ids(tmp_path, push=False)
  assert "Evaluator" in compare and "Pusher" not in compare
  assert "latest_blessed_model_resolver" not in compare
  training_only = _ids(tmp_path, push=False, evaluate=False)
  assert set(training_only) == set(compare) - {"Evaluator"}
  with pytest.raises(ValueError, match="must be evaluated"):
    _ids(tmp_path, evaluate=False)
  with pytest.raises(ValueError, match="data_format"):
    _ids(tmp_path, data_format="parquet")
