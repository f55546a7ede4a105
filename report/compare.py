"""`aitm compare`: several model configs trained and evaluated on the same split.

Each config runs the pipeline up to the Evaluator under one pipeline name and
root, so ExampleGen, statistics, validation and - when the configs share their
data and feature sections - Transform run once and are reused from the ML
Metadata cache; only Trainer and Evaluator run per model. Nothing is pushed,
and the Evaluator runs without thresholds and without a baseline, so a
compared model is never blessed and never becomes the baseline of a later
`aitm run` under the same pipeline name.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence

from components.label_blind_split import Split
from models.config import PipelineConfig
from models.trainer import SUMMARY_FILE
from pipeline.configs import BEAM_PIPELINE_ARGS, SPLIT
from pipeline.local_runner import run_local
from pipeline.pipeline import Extent
from report.run_summary import summarize

PIPELINE_NAME = "aitm-compare"


@dataclasses.dataclass
class ModelScore:
  """One config's row of the comparison: eval AUC per task, the model's parameter count,
  training time and epochs run."""
  name: str                   # the config file's name without extension
  auc: Dict[str, float]       # task -> TFMA AUC on the eval split
  parameters: int
  train_seconds: float
  epochs: int


def _label(config: PipelineConfig) -> str:
  return config.stem


def compare(configs: Sequence[PipelineConfig], *, data_root: str, pipeline_root: str,
            training: Optional[dict] = None, pipeline_name: str = PIPELINE_NAME,
            beam_pipeline_args: Sequence[str] = BEAM_PIPELINE_ARGS,
            evaluate: bool = True, split: Split = SPLIT) -> List[ModelScore]:
  """Runs each config up to the Evaluator; `pipeline_name` and `pipeline_root` decide
  which earlier runs' outputs the cache may reuse. Without `evaluate`, up to the
  Trainer, and the AUCs are the Trainer's own on the eval split (its best epoch).
  `split`: ExampleGen's train/eval split, the same for every model."""
  tasks = [t.name for t in configs[0].tasks]
  for config in configs[1:]:
    if [t.name for t in config.tasks] != tasks:
      raise ValueError(f"{config.source}: task towers {[t.name for t in config.tasks]} differ "
                       f"from {configs[0].source}'s {tasks}; compare models of one funnel")
  scores = []
  for i, config in enumerate(configs, start=1):
    print(f"\n=== [{i}/{len(configs)}] {_label(config)} ({config.source})", flush=True)
    summary = summarize(
        run_local(config=config, data_root=data_root, pipeline_root=pipeline_root,
                  pipeline_name=pipeline_name, training=training,
                  extent=Extent.EVALUATE if evaluate else Extent.TRAIN,
                  beam_pipeline_args=beam_pipeline_args, split=split),
        labels=config.labels)
    for warning in summary.warnings:
      print(f"WARNING: {warning}", flush=True)
    with open(os.path.join(summary.model_run_uri, SUMMARY_FILE)) as f:
      trained = json.load(f)
    auc = summary.auc if evaluate else trained["eval_auc"]
    scores.append(ModelScore(_label(config), auc, trained["parameters"],
                             trained["train_seconds"], trained["epochs_run"]))
  return scores


def table(scores: Sequence[ModelScore]) -> str:
  """A Markdown table: one row per model, AUC per task, train time, parameters."""
  tasks = list(scores[0].auc)
  head = ["model"] + [f"AUC {t}" for t in tasks] + ["train s", "epochs", "parameters"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for s in scores:
    cells = [s.name] + [f"{s.auc.get(t, float('nan')):.4f}" for t in tasks] + [
        f"{s.train_seconds:.0f}", str(s.epochs), f"{s.parameters:,}"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)
