"""Replaying a SavedModel's warmup requests when a version loads, as TF Serving does.

TF Serving (saved_model_warmup_util.cc) reads `assets.extra/tf_serving_warmup_requests`
(models/warmup_requests.py) after loading a version and before serving it,
and runs every record against the loaded model:

* no file: nothing to do, the version loads;
* each record must parse as a PredictionLog; its request is run once (TF
  Serving's default `num_request_iterations`), the response thrown away;
* a record that fails to parse, a request that fails, a file that is not a
  TFRecord file or holds more than 1000 records fails the load: the version
  is not served, and GetModelStatus shows the error.

Here a `predict_log` runs through the same checks and signature call as a
Predict request (the model name and version in its ModelSpec are ignored, as
TF Serving ignores them: the request goes to the version being loaded). The
local server serves Predict only, so a classify, regress or multi-inference
record fails the load, naming it; a record with no request is skipped, as TF
Serving skips it.
"""

import time
from typing import Callable, NamedTuple

from models.warmup_requests import WarmupFileError, read_requests


class WarmupError(Exception):
  """A warmup that failed: the message names the record and why."""


class Warmup(NamedTuple):
  """What a replay did: the requests run and the seconds they took."""
  requests: int
  seconds: float


def replay(saved_model_dir: str, predict: Callable) -> Warmup:
  """Runs every warmup request of the SavedModel through `predict` (a PredictRequest
  -> anything; raises on failure). WarmupError on the first failure."""
  start = time.monotonic()
  try:
    logs = read_requests(saved_model_dir)
  except WarmupFileError as e:
    raise WarmupError(str(e)) from None
  ran = 0
  for number, log in enumerate(logs, start=1):
    kind = log.WhichOneof("log_type")
    if kind is None:
      continue
    if kind != "predict_log":
      raise WarmupError(f"warmup record {number} of {len(logs)} is a {kind}; this server "
                        "answers Predict only")
    request = log.predict_log.request
    try:
      predict(request)
    except Exception as e:  # noqa: BLE001 - whatever fails, the load fails naming it
      code = getattr(e, "code", None)
      status = f"{code.name}: " if hasattr(code, "name") else f"{type(e).__name__}: "
      message = str(e).splitlines()[0] if str(e) else ""
      raise WarmupError(f"warmup record {number} of {len(logs)} "
                        f"({request.model_spec.signature_name or 'serving_default'}) "
                        f"failed: {status}{message}") from e
    ran += 1
  return Warmup(ran, time.monotonic() - start)
