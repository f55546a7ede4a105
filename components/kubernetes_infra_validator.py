"""TFX's InfraValidator for the Kubeflow pipeline: the candidate in `tensorflow/serving`
on the cluster, before the Pusher.

TFX's own component class (tfx.components.InfraValidator) is one that
KubeflowV2DagRunner refuses to compile ("not supported", step_builder.py):
its Kubernetes runner was written for Kubeflow Pipelines v1, whose pods carry
their namespace in the KFP_NAMESPACE variable. This is the same component -
TFX's InfraValidatorSpec, TFX's executor, node id `InfraValidator` - in a
class the v2 compiler builds like any other step, and the executor first
sets KFP_NAMESPACE, when the pod lacks it, from the namespace Kubernetes
mounts into every pod with its service account. KFP v2 sets KFP_POD_NAME
itself. TFX's Kubernetes runner then starts a `tensorflow/serving` pod next
to the step (the step's service account must be allowed to create, read and
delete pods), waits until the model is AVAILABLE, sends the requests built
from the eval examples, and marks the InfraBlessing; with `make_warmup` it
also writes a copy of the model with those requests as its warmup file into
the blessing.
"""

import os

from tfx import types
from tfx.components.infra_validator import executor as infra_validator_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import kube_utils

# Where Kubernetes mounts the pod's namespace with its service account token.
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def set_kfp_namespace(namespace_file: str = SERVICE_ACCOUNT_NAMESPACE) -> None:
  """Sets KFP_NAMESPACE from the pod's service-account namespace file when it isn't set
  (KFP v2 pods); leaves it alone when it is, or when there is no such file."""
  if kube_utils.KFP_NAMESPACE in os.environ or not os.path.exists(namespace_file):
    return
  with open(namespace_file) as f:
    os.environ[kube_utils.KFP_NAMESPACE] = f.read().strip()


class Executor(infra_validator_executor.Executor):
  """TFX's InfraValidator executor, run where KFP_NAMESPACE may be unset."""

  def Do(self, input_dict, output_dict, exec_properties):
    """TFX's InfraValidator, after `set_kfp_namespace`."""
    set_kfp_namespace()
    super().Do(input_dict, output_dict, exec_properties)


class InfraValidator(base_component.BaseComponent):
  """tfx.components.InfraValidator's spec and arguments, compiled by KubeflowV2DagRunner."""

  SPEC_CLASS = standard_component_specs.InfraValidatorSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

  def __init__(self, model, serving_spec, examples=None, request_spec=None,
               validation_spec=None):
    """As tfx.components.InfraValidator: the model, the ServingSpec (TF Serving on
    Kubernetes), the examples and RequestSpec its requests come from, the
    ValidationSpec."""
    super().__init__(spec=standard_component_specs.InfraValidatorSpec(
        model=model, examples=examples,
        blessing=types.Channel(type=standard_artifacts.InfraBlessing),
        serving_spec=serving_spec, validation_spec=validation_spec,
        request_spec=request_spec))
