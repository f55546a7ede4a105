"""Wall time of the local pipeline per component, read from ML Metadata.

    .venv/bin/python bench/pipeline_walltime.py --rows 100000

Generates the rows, runs the whole LocalDagRunner pipeline without the cache
in a fresh temporary directory, and prints one row per component and the total.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--rows", type=int, default=100_000)
  parser.add_argument("--seed", type=int, default=7)
  parser.add_argument("--config", help="EasyRec config (default: the project's default)")
  args = parser.parse_args()

  from datagen import taobao
  from models.config import load_config
  from pipeline import configs
  from pipeline.local_runner import run_local

  work = tempfile.mkdtemp(prefix="aitm-bench-")
  start = time.time()
  taobao.write_csv(os.path.join(work, "data"), args.rows, args.seed)
  generated = time.time() - start
  start = time.time()
  summary = run_local(config=load_config(args.config or configs.CONFIG_PATH),
                      data_root=os.path.join(work, "data"),
                      pipeline_root=os.path.join(work, "pipeline"),
                      serving_dir=os.path.join(work, "serving"), enable_cache=False)
  total = time.time() - start

  print(f"\n{args.rows:,} generated rows on {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
  print(f"| {'step':<22} | {'seconds':>8} |")
  print(f"|{'-' * 24}|{'-' * 10}|")
  print(f"| {'generate data':<22} | {generated:8.1f} |")
  for node, seconds in summary.component_seconds.items():
    print(f"| {node:<22} | {seconds:8.1f} |")
  print(f"| {'pipeline total':<22} | {total:8.1f} |")
  print("\n" + summary.table())


if __name__ == "__main__":
  main()
