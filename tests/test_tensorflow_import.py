"""cli/tensorflow_import.py: TensorFlow's CUDA plugin lines dropped, anything else kept."""

import os
import subprocess
import sys
import textwrap

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_in_fresh_process(extra_path=None):
  env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONWARNINGS="ignore::FutureWarning",
             PYTHONPATH=os.pathsep.join(p for p in (extra_path, PROJECT_DIR) if p))
  code = ("from cli.tensorflow_import import import_tensorflow; import_tensorflow(); "
          "import sys; print('imported', file=sys.stderr)")
  return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                        text=True, timeout=300)


def test_a_stand_in_tensorflow_keeps_its_real_lines_and_loses_the_plugin_noise(tmp_path):
  # Written to file descriptor 2 from "C++", as TensorFlow's own lines are.
  package = tmp_path / "tensorflow"
  package.mkdir()
  (package / "__init__.py").write_text(textwrap.dedent("""\
      import os
      os.write(2, b"E0000 cuda_fft.cc:479] Unable to register cuFFT factory: Attempting\\n")
      os.write(2, b"E0000 some_op.cc:12] a real error from C++\\n")
      os.write(2, b"E0000 cuda_blas.cc:1442] Unable to register cuBLAS factory: x\\n")
      """))
  done = _import_in_fresh_process(str(tmp_path))
  assert done.returncode == 0, done.stderr
  assert done.stderr.splitlines() == ["E0000 some_op.cc:12] a real error from C++", "imported"]


def test_the_real_tensorflow_imports_without_the_plugin_lines():
  done = _import_in_fresh_process()
  assert done.returncode == 0, done.stderr
  assert "Unable to register" not in done.stderr and "imported" in done.stderr


def test_processes_started_while_plugin_lines_are_hidden_lose_them_too(capfd):
  from cli.tensorflow_import import plugin_lines_hidden
  code = ("import os; os.write(2, b'E0000 cuda_dnn.cc:10575] Unable to register cuDNN factory: "
          "x\\n'); os.write(2, b'E0000 worker.cc:3] a worker error\\n')")
  with plugin_lines_hidden():
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    os.write(2, b"this process's own line\n")
  assert capfd.readouterr().err.splitlines() == ["E0000 worker.cc:3] a worker error",
                                                 "this process's own line"]
