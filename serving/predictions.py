"""Per-row predictions as text: CSV, or JSON lines (what `aitm predict` writes)."""

import csv
import json
from typing import Mapping, Optional, TextIO

import numpy as np


def is_json_lines(path: Optional[str]) -> bool:
  """Whether predictions written to path are JSON lines (by its extension), else CSV."""
  return (path or "").endswith((".jsonl", ".json"))


def write_predictions(scores: Mapping[str, np.ndarray], out: TextIO,
                      json_lines: bool = False) -> None:
  """Writes one line per row, tasks in name order: CSV under a header of the task names,
  6 significant digits, or JSON lines {task: probability}."""
  tasks = sorted(scores)
  rows = zip(*(scores[t] for t in tasks))
  if json_lines:
    for values in rows:
      out.write(json.dumps({t: float(v) for t, v in zip(tasks, values)}) + "\n")
  else:
    writer = csv.writer(out)
    writer.writerow(tasks)
    writer.writerows(["%.6g" % v for v in values] for values in rows)
