"""pipeline/local_runner.py's in-process housekeeping."""

import gc
import logging
import os
import warnings
import weakref

from apache_beam.utils import shared

from pipeline.local_runner import (component_progress, one_tfx_package_per_run,
                                   release_beam_shared_models)


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


class _Collect(logging.Handler):
  def __init__(self):
    super().__init__(logging.DEBUG)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def test_library_noise_is_dropped_and_real_warnings_kept_while_the_pipeline_runs():
  collect = _Collect()
  root = logging.getLogger()
  root.addHandler(collect)
  absl = logging.getLogger("absl")
  try:
    with component_progress():
      absl.warning("ArtifactQuery.property_predicate is not supported.")
      absl.warning("Examples artifact does not have payload_format custom property. "
                   "Falling back to FORMAT_TF_EXAMPLE")
      absl.warning("Tables initialized inside a tf.function  will be re-initialized")
      logging.getLogger("apache_beam.io.tfrecordio").warning(
          "Couldn't find python-snappy so the implementation of _masked_crc32c is slow")
      absl.warning("Schema has no column clk")
      # An SDK worker's records, as Beam's runner logs them with 2 or more workers.
      worker = logging.getLogger("apache_beam.runners.portability.local_job_service")
      for message in ("Couldn\\'t find python-snappy so the implementation is slow",
                      "No semi_persistent_directory found: Functions defined in __main__",
                      "Discarding unparseable args: [\\'--pipeline_type_check\\']",
                      "Tables initialized inside a tf.function  will be re-initialized",
                      "Vocabulary file user_id is empty"):
        worker.warning('Worker: severity: WARN timestamp {   seconds: 1796538486 } '
                       f'message: "{message}" instruction_id: "bundle_603"')
    absl.warning("ArtifactQuery.property_predicate is not supported.")
  finally:
    root.removeHandler(collect)
  # Inside the run only the real warnings; after it, the handlers are as they were.
  assert collect.messages[0] == "Schema has no column clk"
  assert len(collect.messages) == 3 and "Vocabulary file user_id is empty" in collect.messages[1]
  assert collect.messages[2] == "ArtifactQuery.property_predicate is not supported."


def test_tfma_divide_warnings_are_dropped_and_others_kept_while_the_pipeline_runs():
  def warn(module, filename):
    warnings.warn_explicit("invalid value encountered in divide", RuntimeWarning,
                           filename, 1, module=module)

  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with component_progress():
      warn("tensorflow_model_analysis.metrics.binary_confusion_matrices", "tfma.py")
      warn("models.funnel_metrics", "ours.py")
    warn("tensorflow_model_analysis.metrics.binary_confusion_matrices", "tfma.py")
  # Ours inside the run; TFMA's only after it, the filters restored.
  assert [w.filename for w in caught] == ["ours.py", "tfma.py"]


def test_tfx_builds_its_ephemeral_package_once_per_run_and_nothing_is_left_behind():
  # Each TFX Beam executor asks for the package when its args name no dependency;
  # three executors of one run get the one build, removed when the run ends.
  from tfx.utils import dependency_utils
  build = dependency_utils.build_ephemeral_package
  args = ["--runner=DirectRunner", "--direct_num_workers=1"]
  with one_tfx_package_per_run():
    flags = [dependency_utils.make_beam_dependency_flags(list(args)) for _ in range(3)]
    packages = {flag[-1] for flag in flags}
    assert len(packages) == 1, packages
    sdist = packages.pop().split("=", 1)[1]
    assert os.path.basename(sdist).startswith("tfx_ephemeral-") and os.path.getsize(sdist) > 0
  build_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(sdist))))
  assert not os.path.exists(build_dir), "the package's temporary directory outlived the run"
  assert dependency_utils.build_ephemeral_package is build
  # A run inside such a block (a bench or test around run_dag) leaves the package to
  # the outer block: it is still there for the outer block's next executor.
  with one_tfx_package_per_run():
    outer = dependency_utils.make_beam_dependency_flags(list(args))[-1]
    with one_tfx_package_per_run():
      assert dependency_utils.make_beam_dependency_flags(list(args))[-1] == outer
    assert os.path.exists(outer.split("=", 1)[1])
  assert not os.path.exists(outer.split("=", 1)[1])
  # Named dependencies still skip it, as in TFX.
  with one_tfx_package_per_run():
    assert dependency_utils.make_beam_dependency_flags(
        args + ["--sdk_container_image=registry/aitm-tfx:0.1.0"])[-1].startswith("--sdk")
