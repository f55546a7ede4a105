"""Parameters and per-replica memory of the model each config builds.

    .venv/bin/python bench/model_size.py CONFIG... [--rows 150000] [--seed 0]

Learned vocabularies are sized by `--rows` generated rows (datagen/taobao.py): as
large as Transform would learn them from that data. Every replica of a
tf.distribute strategy holds all of it (models/distribution.py).
"""

import argparse
import os
import sys
from typing import Dict

# Run as a script, sys.path[0] is bench/; the project's packages are one up.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from cli.tensorflow_import import setup_tensorflow  # noqa: E402


def estimated_rows(config, rows: int, seed: int) -> Dict[str, int]:
  """Embedding rows per feature, with learned vocabularies as large as the values
  of `rows` generated rows - what Transform would learn."""
  from datagen import taobao
  from models.features import Encoding
  from models.preprocessing import MISSING, embedding_rows

  columns, _ = taobao.generate(rows, seed=seed)
  sizes = {}
  for feature in config.features:
    if feature.encoding is Encoding.VOCABULARY:
      values = {v if v not in ("", None) else MISSING for v in columns[feature.column]}
      sizes[feature.name] = len(values) + feature.buckets
    else:
      sizes[feature.name] = embedding_rows(feature)
  return sizes


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("configs", nargs="+")
  parser.add_argument("--rows", type=int, default=150_000,
                      help="generated rows that size learned vocabularies")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)

  setup_tensorflow()
  from models.autograph_rules import skip_tf_keras
  from models.backbone import build_model
  from models.config import load_config
  from models.distribution import parameter_report

  skip_tf_keras()
  for path in args.configs:
    config = load_config(path)
    report = parameter_report(build_model(config, estimated_rows(config, args.rows,
                                                                  args.seed)))
    print(f"{path}: {report['parameters']:,} parameters "
          f"({report['embedding_parameters']:,} in embedding tables, "
          f"{report['dense_parameters']:,} dense); float32 {report['params_mb']} MB, "
          f"with Adam's m and v {report['train_state_mb']} MB per replica")


if __name__ == "__main__":
  main()
