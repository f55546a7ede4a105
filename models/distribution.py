"""The Trainer's tf.distribute strategy, from `train_config.train_distribute`.

* `NoStrategy` (the default): TensorFlow's default strategy, one device.
* `MirroredStrategy`: synchronous data parallelism over this machine's GPUs
  (at most `num_gpus_per_worker` of them when the config sets it), or its CPU
  when it has none.
* `MultiWorkerMirroredStrategy`: synchronous data parallelism over the workers
  the `TF_CONFIG` environment variable lists (every GPU a worker sees, else its
  CPU), gradients all-reduced each step. `{"cluster": {"worker": [host:port,
  ...]}, "task": {"type": "worker", "index": i}}`; the chief is worker 0, or
  the `chief` task when the cluster has one. Without `TF_CONFIG` it is one
  local worker.

Every worker runs the same `run_fn`: the same model, initial weights (the
chief's, broadcast), steps per epoch (from all the train rows) and early
stopping decision (from the all-reduced eval metrics). What differs is the
train data - each worker reads every `count`-th train record from its `index`
on (`Worker.shard`); the eval split is split by batch - and where files go.
Only the chief writes the Trainer's outputs: the SavedModel (a plain,
single-device copy of the trained model, the same contract as without a
strategy) and the training summary. The other workers' TensorBoard logs go to
`workertemp_<i>` under the log dir, which Keras deletes at the end; they save
no model, since saving the copy involves no collective op, and wait for the
chief's export before returning (`barrier`).

Every replica holds every variable and the optimizer's slots (Adam: two per
variable), so the model must fit one device: `parameter_report` gives the
sizes, `bench/model_size.py` prints them for a config.
"""

import dataclasses
import json
import os
from typing import Dict, Optional

from models.training import SUPPORTED_STRATEGIES, TrainingConfig

TF_CONFIG = "TF_CONFIG"
MULTI_WORKER = "MultiWorkerMirroredStrategy"


@dataclasses.dataclass(frozen=True)
class Worker:
  """This process's place among the `count` workers that train together.

  `index` is also its data shard: 0 for the chief, then the workers in
  TF_CONFIG order (TensorFlow's input pipeline ids)."""
  index: int = 0
  count: int = 1
  is_chief: bool = True

  @property
  def shard(self):
    """(index, count) of the records this worker reads: every count-th from index."""
    return self.index, self.count


def cluster_worker(tf_config: Optional[str] = None) -> Worker:
  """The Worker a TF_CONFIG value (JSON) describes; None or no cluster: the only one."""
  spec = json.loads(tf_config) if tf_config else {}
  cluster = spec.get("cluster") or {}
  if not cluster:
    return Worker()
  if cluster.get("ps"):
    raise ValueError("TF_CONFIG lists parameter servers ('ps'); PSStrategy is not "
                     f"supported; supported: {', '.join(SUPPORTED_STRATEGIES)}")
  chiefs = len(cluster.get("chief", [])) + len(cluster.get("master", []))
  count = chiefs + len(cluster.get("worker", []))
  task = spec.get("task") or {}
  kind, number = task.get("type"), int(task.get("index", 0))
  if kind in ("chief", "master"):
    return Worker(number, count, is_chief=number == 0)
  if kind == "worker":
    return Worker(chiefs + number, count, is_chief=chiefs == 0 and number == 0)
  raise ValueError(f"TF_CONFIG task {task!r}: only 'chief' and 'worker' tasks train")


def worker_for(training: TrainingConfig, environ=os.environ) -> Worker:
  """This process's Worker under `training.distribute`.

  Only MultiWorkerMirroredStrategy trains across processes. A TF_CONFIG that
  lists several workers with another strategy is refused: each would train a
  model of its own and all would write the same output."""
  worker = cluster_worker(environ.get(TF_CONFIG))
  if training.distribute == MULTI_WORKER:
    return worker
  if worker.count > 1:
    raise ValueError(f"TF_CONFIG lists {worker.count} workers but train_distribute is "
                     f"{training.distribute}; set train_distribute: {MULTI_WORKER} "
                     f"to train on all of them")
  return Worker()


def make_strategy(training: TrainingConfig):
  """`training.distribute` -> a tf.distribute.Strategy (see the module docstring).

  Call it before other TensorFlow work in the process: MultiWorkerMirroredStrategy
  sets up the collective ops of the TF_CONFIG cluster."""
  import tensorflow as tf

  name = training.distribute
  if name == "NoStrategy":
    return tf.distribute.get_strategy()
  if name == "MirroredStrategy":
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if training.num_gpus_per_worker:
      gpus = gpus[:training.num_gpus_per_worker]
    return tf.distribute.MirroredStrategy(devices=gpus or ["/cpu:0"])
  if name == MULTI_WORKER:
    return tf.distribute.MultiWorkerMirroredStrategy()  # reads TF_CONFIG
  raise ValueError(f"train_distribute {name!r} is not supported; supported: "
                   f"{', '.join(SUPPORTED_STRATEGIES)}")


def barrier(strategy) -> None:
  """Returns once every worker has called it (an all-reduce of one number).

  After the chief's export: TFX's Trainer executor checks, on every worker,
  that the model exists at the (shared) output URI when run_fn returns."""
  import tensorflow as tf

  @tf.function
  def step():
    return strategy.run(lambda: tf.constant(1.0))

  strategy.reduce(tf.distribute.ReduceOp.SUM, step(), axis=None)


def parameter_report(model, optimizer_slots: int = 2) -> Dict[str, float]:
  """Sizes of a built Keras model: what every replica holds.

  `parameters`: trainable weights, `embedding_parameters` the FeatureEmbeddings
  tables among them; `params_mb`: their float32 bytes; `train_state_mb`: with
  `optimizer_slots` float32 copies of each (Adam's m and v: 2) - the resident
  training state of one replica, before activations and the transient dense
  slot updates (tf_keras' Adam decays m and v of a whole table each step).
  Non-trainable weights (batch norm statistics) are counted in `params_mb` too.
  """
  import numpy as np

  def count(weights):
    return int(sum(np.prod(w.shape) for w in weights))

  trainable = count(model.trainable_weights)
  every = count(model.weights)
  embeddings = count(model.get_layer("features").trainable_weights)
  mb = 4 / 2 ** 20
  return {
      "parameters": trainable,
      "embedding_parameters": embeddings,
      "dense_parameters": trainable - embeddings,
      "params_mb": round(every * mb, 1),
      "train_state_mb": round((every + optimizer_slots * trainable) * mb, 1),
  }
