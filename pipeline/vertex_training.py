"""The Trainer as a Vertex AI custom job with several workers.

On Kubeflow Pipelines each component runs in one pod, so a Trainer with
several workers needs a training service that starts them and gives each its
TF_CONFIG. TFX's own Vertex AI Trainer (`tfx.extensions.google_cloud_ai_platform
.Trainer`) does: its pod submits a CustomJob whose worker pools run the
project's image with TFX's stock Trainer executor, so every replica runs
`models.trainer.run_fn` with the same FnArgs. Vertex AI sets TF_CONFIG with the
first pool as the `chief` and the second as `worker`s, which
models.distribution reads (worker 0 is the chief; shards in cluster order).

The job's outputs go to the pipeline root, so it must be storage every
replica reaches (gs://), and the config must train with
`train_config.train_distribute: MultiWorkerMirroredStrategy` when there is
more than one worker.
"""

import dataclasses
from typing import Any, Dict, List, Optional

from models.distribution import MULTI_WORKER

# Each worker's Compute Engine machine when none is given.
DEFAULT_MACHINE_TYPE = "n1-standard-8"


@dataclasses.dataclass(frozen=True)
class VertexTraining:
  """Where and on what the Trainer's custom job runs.

  `workers`: replicas in all, the chief included (pool 0 has the chief, pool 1
  the other `workers - 1`). `image`: the project's image (kubeflow/Dockerfile),
  which every replica runs."""
  project: str
  region: str
  image: str
  workers: int = 2
  machine_type: str = DEFAULT_MACHINE_TYPE
  accelerator_type: Optional[str] = None
  accelerator_count: int = 0

  def __post_init__(self):
    for name in ("project", "region", "image"):
      if not getattr(self, name):
        raise ValueError(f"Vertex AI training needs a {name}")
    if self.workers < 1:
      raise ValueError(f"Vertex AI training workers must be at least 1, got {self.workers}")
    if bool(self.accelerator_type) != (self.accelerator_count > 0):
      raise ValueError("give both accelerator_type and accelerator_count, or neither")

  def check_strategy(self, distribute: str) -> None:
    """Refuses a config whose strategy would train each worker on its own."""
    if self.workers > 1 and distribute != MULTI_WORKER:
      raise ValueError(
          f"{self.workers} Vertex AI training workers need train_config.train_distribute: "
          f"{MULTI_WORKER} in the config (it has {distribute})")

  def worker_pool_specs(self) -> List[Dict[str, Any]]:
    """Vertex AI's worker_pool_specs: pool 0 the chief, pool 1 the other `workers - 1`
    (left out for one worker), each replica running `image` on the machine given."""
    machine: Dict[str, Any] = {"machine_type": self.machine_type}
    if self.accelerator_type:
      machine.update(accelerator_type=self.accelerator_type,
                     accelerator_count=self.accelerator_count)

    def pool(replicas):
      return {"machine_spec": dict(machine), "replica_count": replicas,
              "container_spec": {"image_uri": self.image}}

    return [pool(1)] + ([pool(self.workers - 1)] if self.workers > 1 else [])

  def custom_config(self) -> Dict[str, Any]:
    """The Vertex AI Trainer's keys, added to the Trainer's custom_config."""
    # Here, not at the top: only a compile for Vertex AI needs Google Cloud's client.
    from tfx.v1.extensions import google_cloud_ai_platform as vertex
    return {
        vertex.ENABLE_VERTEX_KEY: True,
        vertex.VERTEX_REGION_KEY: self.region,
        vertex.TRAINING_ARGS_KEY: {
            "project": self.project,
            "job_spec": {"worker_pool_specs": self.worker_pool_specs()},
        },
    }
