"""Wall time of the local pipeline per component, read from ML Metadata, and how it
grows with rows and Beam workers.

    .venv/bin/python bench/pipeline_walltime.py --rows 100000
    .venv/bin/python bench/pipeline_walltime.py --rows 100000 1000000 --workers 1 2

For each rows x workers: generates the rows (once per size), runs the whole
LocalDagRunner pipeline (or, with `--until transform`, ExampleGen .. Transform)
without the cache in a fresh directory, Beam on the
DirectRunner with that many workers (pipeline.beam_options.direct: one
in-memory worker, or that many local processes), and prints one row per
component. With several sizes or worker counts it ends with one table side by
side, the growth with rows (ideal: the ratio of the sizes) and the speedup of
more workers, then the peak memory of the run's processes (this one and Beam's
workers) while each component ran, and per run the Trainer's examples/s and the
Evaluator's eval rows/s per worker. Each run's directory is deleted after it (a
1M-row run writes about 1 GB).
"""

import os
import sys

# Run as a script, sys.path[0] is bench/; the project's packages are one up.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from cli.tensorflow_import import setup_tensorflow  # noqa: E402

setup_tensorflow()  # before anything loads TensorFlow

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402


TOTAL = "pipeline total"
SAMPLE_SECONDS = 0.25


class MemorySampler(threading.Thread):
  """Samples the resident memory of this process and all its children (Beam's
  worker processes) every SAMPLE_SECONDS, until stopped."""

  def __init__(self):
    super().__init__(daemon=True)
    self.samples = []            # (epoch seconds, bytes)
    self._stop_event = threading.Event()

  def run(self):
    import psutil
    me = psutil.Process()
    while not self._stop_event.wait(SAMPLE_SECONDS):
      total = 0
      for process in [me] + me.children(recursive=True):
        try:
          total += process.memory_info().rss
        except psutil.Error:     # a worker that just exited
          pass
      self.samples.append((time.time(), total))

  def stop(self):
    """Stops sampling; the samples so far stay."""
    self._stop_event.set()
    self.join()

  def peak_during(self, start: float, seconds: float) -> int:
    """The largest sample taken in [start, start + seconds] (0 without one)."""
    return max((size for at, size in self.samples if start <= at <= start + seconds),
               default=0)


def beam_bench_data(data_dir, rows: int, seed: int, work: str):
  """(data directory, its size in bytes) for a Beam benchmark: `data_dir` if given, else
  `rows` generated rows under `work`. Beam's worker processes import the project by
  name, as Dataflow's do from the image, so the project goes on their PYTHONPATH."""
  import glob
  from datagen import taobao
  os.environ["PYTHONPATH"] = os.pathsep.join(
      [sys.path[0]] + [p for p in [os.environ.get("PYTHONPATH")] if p])
  if not data_dir:
    data_dir = os.path.join(work, "data")
    start = time.time()
    taobao.write_csv(data_dir, rows, seed)
    print(f"== generated {rows:,} rows in {time.time() - start:.1f}s", flush=True)
  size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(data_dir, "**"), recursive=True)
             if os.path.isfile(p))
  return data_dir, size


def _peak_memory(sampler, pipeline_root):
  """Node id -> the peak memory (bytes) sampled while it ran, from ML Metadata's times."""
  from pipeline.configs import metadata_path
  from report.metadata import read_run
  record = read_run(metadata_path(pipeline_root))
  peaks = {node: sampler.peak_during(record.started[node], seconds)
           for node, seconds in record.seconds.items() if node in record.started}
  peaks[TOTAL] = max((size for _, size in sampler.samples), default=0)
  return peaks


def _until_transform(config, data_dir, root, beam_args):
  """ExampleGen .. Transform only: the Beam-powered stages before training."""
  from tfx import v1 as tfx

  from pipeline.configs import metadata_path
  from pipeline.local_runner import run_dag
  from pipeline.pipeline import Extent, create_pipeline
  from report.run_summary import summarize

  pipeline_root = os.path.join(root, "pipeline")
  pipeline = create_pipeline(
      config=config, data_root=data_dir, pipeline_root=pipeline_root,
      serving_dir=os.path.join(root, "serving"), extent=Extent.TRANSFORM, enable_cache=False, beam_pipeline_args=beam_args,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          metadata_path(pipeline_root)))
  run_dag(pipeline)
  return summarize(metadata_path(pipeline_root))


def _run(config, data_dir, work, workers, until):
  """One uncached run; its per-component seconds, total and Trainer throughput."""
  from pipeline import beam_options
  from pipeline.local_runner import run_local
  from models.trainer import SUMMARY_FILE
  from report.run_summary import summarize

  root = tempfile.mkdtemp(prefix=f"run-{workers}w-", dir=work)
  # Beam's worker processes import the project's modules (the CSV parser,
  # preprocessing_fn) by name, as Dataflow workers do from the image.
  os.environ["PYTHONPATH"] = os.pathsep.join(
      [sys.path[0]] + [p for p in [os.environ.get("PYTHONPATH")] if p])
  start = time.time()
  trained = None
  sampler = MemorySampler()
  sampler.start()
  try:
    if until == "transform":
      summary = _until_transform(config, data_dir, root, beam_options.direct(workers))
    else:
      summary = summarize(
          run_local(config=config, data_root=data_dir,
                    pipeline_root=os.path.join(root, "pipeline"),
                    serving_dir=os.path.join(root, "serving"), enable_cache=False,
                    beam_pipeline_args=beam_options.direct(workers)),
          labels=config.labels)
      with open(os.path.join(summary.model_run_uri, SUMMARY_FILE)) as f:
        trained = json.load(f)
    total = time.time() - start
    sampler.stop()
    peaks = _peak_memory(sampler, os.path.join(root, "pipeline"))
  finally:
    sampler.stop()   # after an error too (stopping twice is harmless)
    shutil.rmtree(root, ignore_errors=True)
  seconds = dict(summary.component_seconds, **{TOTAL: total})
  trainer = "not run"
  if trained:
    examples = trained["steps"] * trained.get("global_batch_size", trained["batch_size"])
    trainer = (f"{trained['epochs_run']} epochs x {trained['steps'] // trained['epochs_run']}"
               f" steps, {examples / trained['train_seconds']:,.0f} examples/s")
  evaluator = summary.component_seconds.get("Evaluator")
  evaluated = (f"{summary.rows['eval'] / evaluator / workers:,.0f} eval rows/s per worker"
               if evaluator and summary.rows.get("eval") else "not run")
  return dict(seconds=seconds, peaks=peaks, rows=summary.rows, auc=summary.auc,
              trainer=trainer, evaluator=evaluated)


def _table(runs, sizes, workers):
  """Seconds per component for every run, then growth with rows and speedup."""
  keys = [(n, w) for n in sizes for w in workers if (n, w) in runs]
  steps = list(dict.fromkeys(s for k in keys for s in runs[k]["seconds"]))
  steps.remove(TOTAL)
  steps.append(TOTAL)
  header = ["step"] + [f"{n:,} rows, {w} worker{'s' * (w > 1)}" for n, w in keys]
  ratios = []
  if len(sizes) > 1:
    ratios += [(f"{sizes[-1] // sizes[0]}x rows, {w}w", (sizes[-1], w), (sizes[0], w))
               for w in workers]
  if len(workers) > 1:
    ratios += [(f"speedup {w}w, {n:,}", (n, workers[0]), (n, w))
               for n in sizes for w in workers[1:]]
  ratios = [r for r in ratios if r[1] in runs and r[2] in runs]
  header += [name for name, _, _ in ratios]
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
  for step in steps:
    cells = [step] + [f"{runs[k]['seconds'].get(step, 0):.1f}" for k in keys]
    for _, a, b in ratios:
      x, y = runs[a]["seconds"].get(step), runs[b]["seconds"].get(step)
      cells.append(f"{x / y:.2f}" if x and y and y >= 0.5 else "-")
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", "peak memory of the run's processes while the step ran, GB (sampled every "
            f"{SAMPLE_SECONDS} s; '-': too short to sample):", "",
            "| " + " | ".join(header[:1 + len(keys)]) + " |",
            "|" + "|".join("---" for _ in header[:1 + len(keys)]) + "|"]
  for step in steps:
    lines.append("| " + " | ".join([step] + [
        f"{runs[k]['peaks'][step] / 1e9:.2f}" if runs[k]["peaks"].get(step) else "-"
        for k in keys]) + " |")
  lines.append("")
  for k in keys:
    run = runs[k]
    lines.append(f"{k[0]:,} rows, {k[1]} worker(s): read "
                 + ", ".join(f"{s} {n:,}" for s, n in run["rows"].items())
                 + ("; eval AUC " + ", ".join(f"{t} {a:.4f}" for t, a in run["auc"].items())
                    if run["auc"] else "")
                 + f"; Trainer {run['trainer']}; Evaluator {run['evaluator']}")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rows", type=int, nargs="+", default=[100_000])
  parser.add_argument("--workers", type=int, nargs="+", default=[1],
                      help="DirectRunner workers (processes when more than 1)")
  parser.add_argument("--seed", type=int, default=7)
  parser.add_argument("--config", help="EasyRec config (default: the project's default)")
  parser.add_argument("--work-dir", help="where data and runs go (default: a temporary dir)")
  parser.add_argument("--until", choices=("push", "transform"), default="push",
                      help="transform: run ExampleGen .. Transform only (the Beam stages)")
  args = parser.parse_args()

  from datagen import taobao
  from models.config import load_config
  from pipeline import configs

  config = load_config(args.config or configs.CONFIG_PATH)
  work = tempfile.mkdtemp(prefix="aitm-bench-", dir=args.work_dir)
  sizes, workers = sorted(set(args.rows)), sorted(set(args.workers))
  machine = (f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
             f"Python {platform.python_version()}")
  runs = {}
  for rows in sizes:
    data_dir = os.path.join(work, f"data-{rows}")
    start = time.time()
    taobao.write_csv(data_dir, rows, args.seed)
    print(f"\n== generated {rows:,} rows in {time.time() - start:.1f}s", flush=True)
    for count in workers:
      print(f"\n== {rows:,} rows, {count} Beam worker(s)", flush=True)
      runs[(rows, count)] = _run(config, data_dir, work, count, args.until)
      print(f"\n{machine}\n" + _table(runs, [rows], [count]), flush=True)
    shutil.rmtree(data_dir, ignore_errors=True)
  if len(runs) > 1:
    print(f"\nall runs, {machine} (seconds, wall; ratios: later / earlier)\n"
          + _table(runs, sizes, workers))


if __name__ == "__main__":
  main()
