"""Imports TensorFlow without the CUDA plugin lines it prints on a machine with no GPU.

TensorFlow 2.16's CPU wheel registers its cuFFT, cuDNN and cuBLAS factories twice at
import and logs each as an error from C++ ("Unable to register cuFFT factory ..."),
before any Python logging or TF_CPP_MIN_LOG_LEVEL below 3 can hide it. Raising that
level to 3 would also hide TensorFlow's real C++ errors, so instead standard error
is captured for the import alone and replayed without those lines. Processes that
import it on their own (Beam's SDK worker processes) print them again;
`plugin_lines_hidden` filters standard error while such processes run.
"""

import contextlib
import os
import re
import sys
import tempfile
import threading
import warnings

_PLUGIN_NOISE = re.compile(
    rb"Unable to register cu(FFT|DNN|BLAS) factory|"
    rb"TF-TRT Warning: Could not find TensorRT|"
    rb"computation placer already registered")


def import_tensorflow() -> None:
  """`import tensorflow`, its import-time stderr replayed minus the plugin noise."""
  if "tensorflow" in sys.modules:
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow  # noqa: F401
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      for line in captured:
        if not _PLUGIN_NOISE.search(line):
          os.write(2, line)


@contextlib.contextmanager
def plugin_lines_hidden():
  """Standard error without the plugin lines while the block runs, for this process and
  every process it starts meanwhile (Beam's SDK worker processes, each importing
  TensorFlow): file descriptor 2 becomes a pipe whose lines a thread relays to the real
  standard error, the plugin lines left out."""
  sys.stderr.flush()
  real = os.dup(2)
  read_end, write_end = os.pipe()
  os.dup2(write_end, 2)
  os.close(write_end)

  def relay():
    with os.fdopen(read_end, "rb") as lines:
      for line in lines:
        if not _PLUGIN_NOISE.search(line):
          os.write(real, line)

  relaying = threading.Thread(target=relay, name="stderr-relay", daemon=True)
  relaying.start()
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(real, 2)  # the pipe ends when the processes started in the block have exited
    relaying.join(timeout=10)
    if not relaying.is_alive():
      os.close(real)


def setup_tensorflow() -> None:
  """What a script does before TensorFlow loads: Keras 2 (TFX 1.16's), no C++ info or
  warning lines, no FutureWarning from google-cloud's notice about Python 3.10 (here
  and in Beam's worker processes); then the quiet import."""
  os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
  warnings.filterwarnings("ignore", category=FutureWarning)
  import_tensorflow()
