"""TFX's Vertex AI Trainer with components/trainer.py's `raw_examples` input: every
replica of its custom job runs that module's executor, so run_fn gets the raw eval
files for the warmup requests as on one machine.

A module of its own: importing TFX's Vertex AI executor loads Google Cloud's
client, which only a compile for Vertex AI needs.
"""

from tfx.dsl.components.base import executor_spec
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_executor

from components.trainer import Executor, Trainer


class VertexExecutor(vertex_executor.GenericExecutor):
  """TFX's Vertex AI Trainer executor; its replicas run components.trainer.Executor."""

  def _GetExecutorClass(self):
    return Executor


class VertexTrainer(Trainer):
  """tfx.extensions.google_cloud_ai_platform.Trainer with the `raw_examples` input."""

  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(VertexExecutor)
