"""The client's side of a prediction (serving/client.py, serving/request_rows.py): one
version scores a whole call, however many batches and reloads; rows that would be
scored wrongly are refused with file, line or row and column."""

import os
import shutil
import time

import grpc
import numpy as np
import pytest

from serving.client import ServingClient, ServingError
from serving.model_versions import ModelSource, VersionPolicy
from serving.request_rows import RowError, check_columns, read_rows, to_example
from serving.server import LocalModelServer

MODEL = "tiny"
KINDS = {"pid": "string", "price": "int", "score": "float"}


def _rows(n):
  return [{"pid": "ab", "price": str(i % 7), "score": "0.5", "clk": "0"} for i in range(n)]


def _expected(rows, scale):
  return np.array([1 / (1 + np.exp(-(2 + int(r["price"]) + 0.5) / scale)) for r in rows],
                  np.float32)


@pytest.mark.parametrize("versions", [2, 1])
def test_one_version_scores_every_batch_of_a_call(tiny_model_base, tmp_path, versions):
  """Version 2 is published after the first of five batches. Kept beside version 1
  (latest 2), version 1 scores the whole call; unloaded (latest 1), the call fails
  naming version 1, and nothing is mixed."""
  base = tmp_path / MODEL
  shutil.copytree(os.path.join(tiny_model_base, "1"), base / "1")
  server = LocalModelServer([ModelSource(MODEL, str(base), VersionPolicy(latest=versions))],
                            port=0, poll_wait_seconds=0.1, log=lambda *_: None)
  server.start()
  client = ServingClient(server.address, MODEL, timeout=30)
  real, calls = client.predict_tensors, []

  def publish_after_first_batch(*args, **kwargs):
    out = real(*args, **kwargs)
    calls.append(args[2] if len(args) > 2 else kwargs.get("version"))
    if len(calls) == 1:
      shutil.copytree(os.path.join(tiny_model_base + "-v2", "1"), base / "2")
      deadline = time.monotonic() + 30
      while client.metadata()[0] != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
      if versions == 1:
        while any(s.version == 1 and s.state == "AVAILABLE" for s in client.status()):
          time.sleep(0.05)
    return out
  client.predict_tensors = publish_after_first_batch
  rows = _rows(50)
  try:
    if versions == 2:
      scores = client.predict(rows, signature="serving_raw", batch_size=10)
      np.testing.assert_allclose(scores["ctr"], _expected(rows, 10.0), rtol=1e-5)
      assert client.last_version == 1 and calls == [1] * 5
      # The next call starts on the newest version.
      again = client.predict(rows[:3], signature="serving_raw")
      np.testing.assert_allclose(again["ctr"], _expected(rows[:3], 5.0), rtol=1e-5)
      assert client.last_version == 2
    else:
      with pytest.raises(ServingError) as gone:
        client.predict(rows, signature="serving_raw", batch_size=10)
      assert gone.value.code == grpc.StatusCode.NOT_FOUND
      assert "version 1, which scored rows 1-10, was unloaded before row 11" in str(gone.value)
  finally:
    client.close()
    server.stop()


def test_column_types_are_read_again_for_a_new_version(tiny_model_base, tmp_path):
  base = tmp_path / MODEL
  shutil.copytree(os.path.join(tiny_model_base, "1"), base / "1")
  server = LocalModelServer([ModelSource(MODEL, str(base))], port=0, poll_wait_seconds=0.1,
                            log=lambda *_: None)
  server.start()
  try:
    with ServingClient(server.address, MODEL, timeout=30) as client:
      assert client.column_kinds() == KINDS
      shutil.copytree(os.path.join(tiny_model_base + "-v2", "1"), base / "2")
      client.wait_until_available(30, version=2)
      deadline = time.monotonic() + 30
      while client.metadata()[0] != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
      client.column_kinds()
      assert sorted(client._kinds) == [1, 2]
  finally:
    server.stop()


def test_a_column_that_nearly_names_one_of_the_models_is_refused():
  for name, guess in (("PID", "pid"), ("pricee", "price"), ("Score", "score")):
    with pytest.raises(RowError) as refused:
      check_columns({name: "x", "pid": "a"} if name != "PID" else {name: "x"}, KINDS,
                    "rows.csv row 3")
    assert f"column {name!r} is not one the model takes; did you mean {guess!r}" in str(
        refused.value)
    assert "Its columns: pid, price, score" in str(refused.value)
  with pytest.raises(RowError, match="none of its columns"):
    check_columns({"user": "1", "ad": "2"}, KINDS, "rows.csv row 1")
  check_columns({"pid": "a", "clk": "1", "buy": "0"}, KINDS, "rows.csv row 1")  # labels: ok


def test_csv_rows_with_a_bom_short_rows_and_other_bytes(tmp_path):
  bom = tmp_path / "bom.csv"
  bom.write_bytes("\ufeffpid,price,score\na,1,0.5\n".encode("utf-8"))
  assert list(read_rows(str(bom))) == [{"pid": "a", "price": "1", "score": "0.5"}]
  short = tmp_path / "short.csv"
  short.write_text("pid,price,score\na,1,0.5\nb,2\n")
  with pytest.raises(RowError, match=r"short.csv line 3: 2 fields where the header has 3 "
                                     r"\(pid, price, score\)"):
    list(read_rows(str(short)))
  latin = tmp_path / "latin.csv"
  latin.write_bytes(b"pid,price,score\na,1,0.5\n\xe9t\xe9,2,0.1\n")
  with pytest.raises(RowError, match="latin.csv line 3: not UTF-8 text"):
    list(read_rows(str(latin)))


def test_integers_are_ascii_digits_within_int64():
  with pytest.raises(RowError, match=r"row 2, column 'price': '9223372036854775808' is not "
                                     r"a valid int \(beyond int64\)"):
    to_example({"price": "9223372036854775808"}, KINDS, "rows.csv row 2, column 'price'"
               .rsplit(", column", 1)[0])
  for bad in ("1_9", "\u0661\u0669"):
    with pytest.raises(RowError):
      to_example({"price": bad}, KINDS, "row 1")
  assert to_example({"price": "-9223372036854775808"}, KINDS, "row 1")
