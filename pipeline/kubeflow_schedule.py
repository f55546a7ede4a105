"""The daily run on Kubeflow Pipelines: a recurring run of the compiled spec.

`schedule(client, package, cron)` creates (or reuses) the experiment and a
recurring run of the package `aitm compile-kfp` wrote, one run at a time
(`max_concurrency=1`: a day's run that overruns delays the next instead of
racing it for the serving directory) and without catch-up (after a pause,
one run on the newest data, not one per missed day). Each run's ExampleGen
picks the newest span under `data_root`, so the schedule needs no per-day
arguments.

KFP's cron has six fields, seconds first (robfig/cron): `0 0 3 * * *` is
03:00:00 every day, in the KFP server's time zone (UTC by default).
"""

from typing import Dict, Optional

from pipeline import configs
from pipeline.kubeflow_runner import RUNTIME_PARAMETERS


def check_cron(expression: str) -> str:
  """`expression`, single-spaced; ValueError unless it has KFP's 6 fields (a 5-field
  crontab line is named as one)."""
  fields = expression.split()
  if len(fields) == 5:
    raise ValueError(f"KFP cron expressions have 6 fields, seconds first: {expression!r} "
                     f"looks like a 5-field crontab line; use '0 {expression}'")
  if len(fields) != 6:
    raise ValueError(f"KFP cron expressions have 6 fields (sec min hour day month weekday), "
                     f"got {len(fields)}: {expression!r}")
  return " ".join(fields)


def package_parameters(package_path: str):
  """The runtime parameters the compiled package declares, read by kfp's own loader."""
  from kfp.client.client import _extract_pipeline_yaml
  spec = _extract_pipeline_yaml(package_path).pipeline_spec
  return set(spec.root.input_definitions.parameters)


def schedule(client, package_path: str, cron: str = configs.KFP_CRON,
             experiment: str = configs.KFP_EXPERIMENT,
             name: str = configs.KFP_RECURRING_RUN, params: Optional[Dict[str, str]] = None,
             namespace: Optional[str] = None, enable_caching: bool = True):
  """Creates the recurring run with `client` (a kfp.Client); returns what it returns."""
  cron = check_cron(cron)
  params = dict(params or {})
  declared = package_parameters(package_path)
  unknown = sorted(set(params) - declared)
  if unknown:
    raise ValueError(f"{package_path} has no runtime parameter {', '.join(unknown)} "
                     f"(it has {', '.join(sorted(declared))}; aitm's are "
                     f"{', '.join(RUNTIME_PARAMETERS)})")
  found = client.create_experiment(experiment, namespace=namespace)
  return client.create_recurring_run(
      experiment_id=found.experiment_id, job_name=name, cron_expression=cron,
      max_concurrency=1, no_catchup=True, params=params,
      pipeline_package_path=package_path, enable_caching=enable_caching)
