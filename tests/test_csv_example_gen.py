"""The CSV ExampleGen's executor on DirectRunner: what it reports after its Beam job."""

import glob
import os
import shutil
import sys
from unittest import mock

import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts, standard_component_specs

from components.csv_example_gen import csv_example_gen
from datagen import taobao
from models.config import load_config
from pipeline import configs


def test_rows_and_files_read_come_back_as_counters_and_print_in_this_process(tmp_path,
                                                                            capsys):
  """The DoFn counts rows and files in Beam counters; Do() reads them from the finished
  pipeline and prints them here, as it does on a portable runner, whose DoFns print
  into the SDK workers' own output (tests/test_portable_runner.py)."""
  data = tmp_path / "data"
  taobao.write_csv(str(data), 120, 3)
  shutil.copy(data / "data.csv", data / "more.csv")
  component = csv_example_gen(str(data), load_config(configs.CONFIG_PATH))
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / "examples")
  context = base_beam_executor.BaseBeamExecutor.Context(
      beam_pipeline_args=list(configs.BEAM_PIPELINE_ARGS), tmp_dir=str(tmp_path / "tmp"),
      unique_id="test")
  with mock.patch.object(sys, "argv", sys.argv[:1]):  # TFX parses sys.argv as absl flags
    executor = component.executor_spec.executor_class(context)
    executor.Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]},
                dict(component.exec_properties))
  assert executor.counters == {"rows_read": 240, "files_read": 2}
  assert "  [ExampleGen] 240 rows read from 2 CSV file(s)\n" in capsys.readouterr().out
  files = glob.glob(os.path.join(examples.uri, "Split-*", "*.gz"))
  written = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
  assert written == 240
