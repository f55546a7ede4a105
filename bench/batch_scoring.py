"""Rows a second of `aitm score` over a generated candidate set, by Beam workers.

    .venv/bin/python bench/batch_scoring.py --model runs/serving/aitm --rows 1000000 --workers 1 2
    .venv/bin/python bench/batch_scoring.py --model DIR --data DIR --format parquet

Generates the rows once (datagen.taobao, one file with its labels, as `aitm
generate-data` writes it; or reads the CSV files under `--data`), then scores them
with the pushed model (scoring.batch_scoring.score: byte ranges, RunInference, one
part file per range) on the DirectRunner with each number of workers
(pipeline.beam_options.direct: one in-memory worker, or that many local processes),
into a fresh output directory each time, and prints seconds (the whole command:
model loads and worker start-up included), rows a second, the speedup over the first
worker count, the CPU seconds of the run's processes (this one and Beam's workers;
rows per CPU second do not depend on what else the machine runs) and their peak
memory, with the load average before and after each run (other work on the machine
slows a run down). Every worker count must write the same bytes: the parts
are named and filled by input order, whatever worker wrote them.
"""

import os
import sys

# Run as a script, sys.path[0] is bench/; the project's packages are one up.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from cli.tensorflow_import import setup_tensorflow  # noqa: E402

setup_tensorflow()  # before anything loads TensorFlow

import argparse  # noqa: E402
import glob  # noqa: E402
import hashlib  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402


def _load() -> str:
  return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _digest(output: str) -> str:
  """sha256 over the part files, in name order."""
  digest = hashlib.sha256()
  for path in sorted(glob.glob(os.path.join(output, "part-*"))):
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
  return digest.hexdigest()[:12]


def _cpu_seconds() -> float:
  """User and system CPU seconds of this process and its waited-for children (Beam's
  worker processes, once they have exited)."""
  import resource
  return sum(usage.ru_utime + usage.ru_stime for usage in (
      resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def _run(model, data_dir, output, workers, fmt, labels):
  """One scoring run; (ScoringResult, seconds, CPU seconds, peak memory in bytes)."""
  from bench.pipeline_walltime import MemorySampler
  from cli.tensorflow_import import plugin_lines_hidden
  from pipeline import beam_options
  from scoring.batch_scoring import score

  sampler = MemorySampler()
  sampler.start()
  start, cpu = time.time(), _cpu_seconds()
  try:
    with plugin_lines_hidden():
      result = score(model=model, data=data_dir, output=output, fmt=fmt, labels=labels,
                     beam_args=beam_options.direct(workers))
  finally:
    seconds, cpu = time.time() - start, _cpu_seconds() - cpu
    sampler.stop()
  return result, seconds, cpu, max((size for _, size in sampler.samples), default=0)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", default="runs/serving/aitm",
                      help="a pushed version directory or base path (default %(default)s)")
  parser.add_argument("--rows", type=int, default=1_000_000, help="rows to generate")
  parser.add_argument("--data", help="a directory of CSV files to score instead")
  parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                      help="DirectRunner workers (processes when more than 1)")
  parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
  parser.add_argument("--seed", type=int, default=7)
  parser.add_argument("--work-dir", help="where data and outputs go (default: a temporary dir)")
  args = parser.parse_args()

  from bench.pipeline_walltime import beam_bench_data
  from models.config import load_config
  from pipeline import configs
  from scoring.model_contract import resolve_version

  version = resolve_version(args.model)
  labels = load_config(configs.CONFIG_PATH).labels
  if args.work_dir:
    os.makedirs(args.work_dir, exist_ok=True)
  work = tempfile.mkdtemp(prefix="aitm-score-bench-", dir=args.work_dir)
  data_dir, size = beam_bench_data(args.data, args.rows, args.seed, work)
  results = []
  try:
    for workers in args.workers:
      before = _load()
      print(f"\n== {workers} worker(s), load {before}", flush=True)
      output = os.path.join(work, f"scores-{workers}w")
      result, seconds, cpu, peak = _run(version, data_dir, output, workers, args.format,
                                        labels)
      results.append((workers, result, seconds, cpu, peak, _digest(output), before, _load()))
      shutil.rmtree(output, ignore_errors=True)
      print(f"== {workers} worker(s): {seconds:.1f}s", flush=True)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  source = args.data or f"one generated file (seed {args.seed})"
  print(f"\naitm score, {results[0][1].rows:,} rows, {size / 2 ** 20:,.1f} MiB in {source}, "
        f"{args.format} out; model {version}; {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
  print("| workers | seconds | rows/s | speedup | CPU seconds | rows per CPU second | "
        "peak memory, GB | parts | output sha256 | load before | load after |")
  print("|---|---|---|---|---|---|---|---|---|---|---|")
  for workers, result, seconds, cpu, peak, digest, before, after in results:
    print(f"| {workers} | {seconds:.1f} | {result.rows / seconds:,.0f} | "
          f"{results[0][2] / seconds:.2f}x | {cpu:.1f} | {result.rows / cpu:,.0f} | "
          f"{peak / 1e9:.2f} | {result.parts} | {digest} | {before} | {after} |")
  if len({digest for *_, digest, _, _ in results}) != 1:
    sys.exit("the worker counts wrote different scores")


if __name__ == "__main__":
  main()
