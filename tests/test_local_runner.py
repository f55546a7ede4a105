"""pipeline/local_runner.py's in-process housekeeping."""

import gc
import weakref

from apache_beam.utils import shared

from pipeline.local_runner import release_beam_shared_models


class _Model:
  """Stands in for a SavedModel TFMA loads through beam.utils.shared.Shared."""


def test_a_model_loaded_through_beam_shared_is_freed_after_the_run():
  handle = shared.Shared()
  model = handle.acquire(_Model)
  alive = weakref.ref(model)
  del model
  gc.collect()
  # Beam keeps the last object it built alive, for a later pipeline in the process.
  assert alive() is not None
  release_beam_shared_models()
  assert alive() is None
  # The handle still works: a later run builds its model again.
  assert isinstance(handle.acquire(_Model), _Model)
