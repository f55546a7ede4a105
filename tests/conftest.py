"""Shared fixtures: the whole pipeline runs once per test session."""

import os

# Before TensorFlow is imported: TFX 1.16 components expect Keras 2.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402

import pytest  # noqa: E402

from models.autograph_rules import skip_tf_keras  # noqa: E402

skip_tf_keras()  # as the Trainer does; halves the time of tests that save models

E2E_ROWS = 20_000
E2E_SEED = 11


@dataclasses.dataclass
class PipelineRun:
  data_dir: str
  pipeline_root: str
  serving_dir: str
  first: object    # RunSummary of the first run
  second: object   # RunSummary of the same pipeline run again


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> PipelineRun:
  from datagen import taobao
  from models.config import load_config
  from pipeline import configs
  from pipeline.local_runner import run_local

  root = tmp_path_factory.mktemp("e2e")
  data_dir = str(root / "data")
  taobao.write_csv(data_dir, E2E_ROWS, E2E_SEED)
  kwargs = dict(config=load_config(configs.CONFIG_PATH), data_root=data_dir,
                pipeline_root=str(root / "pipeline"), serving_dir=str(root / "serving"))
  first = run_local(**kwargs)
  second = run_local(**kwargs)
  return PipelineRun(data_dir, kwargs["pipeline_root"], kwargs["serving_dir"], first, second)
