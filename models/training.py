"""Training settings and the rules that size a run from the data."""

import dataclasses
import math
from typing import Any, Dict, Optional

# A run aims for about this many optimizer steps before early stopping decides.
TARGET_STEPS = 4000


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """Trainer custom_config. None means: size it from the number of train rows."""
  learning_rate: float = 3e-4
  batch_size: Optional[int] = None
  max_epochs: Optional[int] = None
  patience: int = 2
  shuffle_buffer: int = 100_000
  log_every_steps: int = 50

  @classmethod
  def from_dict(cls, values: Optional[Dict[str, Any]]) -> "TrainingConfig":
    values = dict(values or {})
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f"unknown training settings: {sorted(unknown)}")
    config = cls(**values)
    if config.learning_rate <= 0:
      raise ValueError(f"learning_rate must be positive, got {config.learning_rate}")
    if config.batch_size is not None and config.batch_size <= 0:
      raise ValueError(f"batch_size must be positive, got {config.batch_size}")
    if config.max_epochs is not None and config.max_epochs <= 0:
      raise ValueError(f"max_epochs must be positive, got {config.max_epochs}")
    return config

  def sized_for(self, train_rows: int) -> "TrainingConfig":
    """Fills batch size and epochs: small data gets small batches and more epochs."""
    if train_rows <= 0:
      raise ValueError("the train split is empty")
    batch = self.batch_size or int(min(4096, max(256, 2 ** round(math.log2(train_rows / 100)))))
    steps_per_epoch = math.ceil(train_rows / batch)
    epochs = self.max_epochs or int(min(30, max(3, math.ceil(TARGET_STEPS / steps_per_epoch))))
    return dataclasses.replace(self, batch_size=batch, max_epochs=epochs)

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)
