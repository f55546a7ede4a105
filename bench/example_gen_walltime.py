"""Wall time of the CSV ExampleGen alone, one file, by Beam workers.

    .venv/bin/python bench/example_gen_walltime.py --rows 1000000 --workers 1 2
    .venv/bin/python bench/example_gen_walltime.py --data DIR --workers 1 2 --range-mb 16

Generates the rows once (datagen.taobao, one file; or reads the CSV files under
`--data`), then runs the CSV ExampleGen's executor (components/csv_example_gen:
byte ranges, the label-blind split, the TFRecord writes) on the DirectRunner with
each number of workers (pipeline.beam_options.direct: one in-memory worker, or
that many local processes), in a fresh output directory, and prints seconds, rows
a second, the speedup over the first worker count and the peak memory of the
run's processes (this one and Beam's workers), with the load average before
and after each run (other work on the machine slows a run down).
"""

import os
import sys

# Run as a script, sys.path[0] is bench/; the project's packages are one up.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from cli.tensorflow_import import setup_tensorflow  # noqa: E402

setup_tensorflow()  # before anything loads TensorFlow

import argparse  # noqa: E402
import glob  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402


def _load() -> str:
  return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _run(config, data_dir, out_dir, workers, range_bytes):
  """One ExampleGen run through its executor's Do(); (seconds, peak memory in bytes,
  {split: examples})."""
  import tensorflow as tf

  from bench.pipeline_walltime import MemorySampler
  from components.csv_example_gen import csv_example_gen
  from pipeline import beam_options
  from pipeline.local_runner import run_example_gen_executor

  component = csv_example_gen(data_dir, config, range_bytes=range_bytes)
  sampler = MemorySampler()
  sampler.start()
  start = time.time()
  try:
    run_example_gen_executor(component, out_dir,
                             beam_pipeline_args=beam_options.direct(workers))
  finally:
    seconds = time.time() - start
    sampler.stop()
  peak = max((size for _, size in sampler.samples), default=0)
  counts = {}
  for split in ("train", "eval"):
    files = glob.glob(os.path.join(out_dir, f"Split-{split}", "*.gz"))
    # Counted in batches: one Python step per record takes minutes at 10M rows.
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(65_536)
    counts[split] = int(records.reduce(0, lambda n, batch: n + tf.shape(batch)[0]))
  return seconds, peak, counts


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rows", type=int, default=1_000_000, help="rows to generate")
  parser.add_argument("--data", help="a directory of CSV files to read instead")
  parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                      help="DirectRunner workers (processes when more than 1)")
  parser.add_argument("--range-mb", type=float,
                      help="byte range size in MiB (default: ExampleGen's, 64)")
  parser.add_argument("--seed", type=int, default=7)
  parser.add_argument("--work-dir", help="where data and outputs go (default: a temporary dir)")
  args = parser.parse_args()

  from components.byte_ranges import DEFAULT_RANGE_BYTES
  from bench.pipeline_walltime import beam_bench_data
  from models.config import load_config
  from pipeline import configs

  config = load_config(configs.CONFIG_PATH)
  work = tempfile.mkdtemp(prefix="aitm-exgen-bench-", dir=args.work_dir)
  data_dir, size = beam_bench_data(args.data, args.rows, args.seed, work)
  range_bytes = int(args.range_mb * 2 ** 20) if args.range_mb else None
  range_mb = (range_bytes or DEFAULT_RANGE_BYTES) / 2 ** 20
  results = []
  try:
    for workers in args.workers:
      before = _load()
      print(f"\n== {workers} worker(s), load {before}", flush=True)
      out_dir = tempfile.mkdtemp(prefix=f"out-{workers}w-", dir=work)
      seconds, peak, counts = _run(config, data_dir, out_dir, workers, range_bytes)
      shutil.rmtree(out_dir, ignore_errors=True)
      results.append((workers, seconds, peak, counts, before, _load()))
      print(f"== {workers} worker(s): {seconds:.1f}s", flush=True)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  rows = sum(results[0][3].values())
  source = args.data or f"one generated file (seed {args.seed})"
  print(f"\nCSV ExampleGen, {rows:,} rows, {size / 2 ** 20:,.1f} MiB in {source}; "
        f"ranges of {range_mb:g} MiB; {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
  print("| workers | seconds | rows/s | speedup | peak memory, GB | train / eval | "
        "load before | load after |")
  print("|---|---|---|---|---|---|---|---|")
  for workers, seconds, peak, counts, before, after in results:
    print(f"| {workers} | {seconds:.1f} | {rows / seconds:,.0f} | "
          f"{results[0][1] / seconds:.2f}x | {peak / 1e9:.2f} | "
          f"{counts['train']:,} / {counts['eval']:,} | {before} | {after} |")


if __name__ == "__main__":
  main()
