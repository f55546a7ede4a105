"""The standard gRPC health service (`grpc.health.v1.Health`) of `aitm serve`, answering from
the models' version states.

Services and what they answer:

* each served model's name: SERVING while a version of it is AVAILABLE, else NOT_SERVING
  (before the first version loads, and again if none is, e.g. after the model config
  file points the model at a base path without versions);
* `""` (the whole server, what Kubernetes' `grpc:` probe asks by default): SERVING
  while every served model is, as TF Serving waits for every configured model before it
  opens its port;
* `ModelService` and `PredictionService`, the names TF Serving 2.16 registers with
  `--enable_grpc_healthcheck_service`: the same as `""`.

A model the config file no longer lists answers NOT_SERVING (grpcio-health-checking's
servicer can't forget a name), and a stopping server answers NOT_SERVING everywhere so
that load balancers drain it first.
"""

from typing import Mapping

from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import get_model_status_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The whole server, by the protocol's convention.
OVERALL = health.OVERALL_HEALTH
# The service names TF Serving 2.16's health service reports (model_servers/server.cc).
TF_SERVING_SERVICES = ("ModelService", "PredictionService")

_SERVER_SERVICES = (OVERALL,) + TF_SERVING_SERVICES
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


class ModelHealth:
  """grpcio-health-checking's HealthServicer, kept in step with the served models."""

  def __init__(self):
    self.servicer = health.HealthServicer()
    self._statuses = {}   # service -> the status last set
    # The servicer starts with the server SERVING; nothing is loaded yet.
    for service in _SERVER_SERVICES:
      self._set(service, NOT_SERVING)

  def add_to_server(self, server) -> None:
    """Registers the health service on a grpc.Server (before it starts)."""
    health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

  def update(self, served_models: Mapping) -> None:
    """Sets each model's status and the server's from the models' version states
    ({model name: ServedModel}, as ModelRegistry.models() returns them)."""
    available = {name: any(state == _AVAILABLE for state, _ in model.statuses().values())
                 for name, model in served_models.items()}
    overall = SERVING if available and all(available.values()) else NOT_SERVING
    # The server's services first: whoever sees a model's new status finds the server's
    # already in step with it.
    statuses = dict.fromkeys(_SERVER_SERVICES, overall)
    statuses.update({name: SERVING if is_available else NOT_SERVING
                     for name, is_available in available.items()})
    # Models the config file no longer lists.
    statuses.update({name: NOT_SERVING for name in self._statuses if name not in statuses})
    for service, status in statuses.items():
      self._set(service, status)

  def shut_down(self) -> None:
    """NOT_SERVING for every service from now on: the server is stopping."""
    self.servicer.enter_graceful_shutdown()

  def _set(self, service, status) -> None:
    # Only changes: the servicer sends every set to the service's Watch streams, and the
    # protocol promises a message when the status changes.
    if self._statuses.get(service) != status:
      self._statuses[service] = status
      self.servicer.set(service, status)
