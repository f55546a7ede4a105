"""Byte ranges (components/byte_ranges.py): equal cuts, and a range reads the lines that
start in it, so that ranges read every line once wherever the cuts fall."""

import gzip
import io

import pytest

from components import byte_ranges


def test_cuts_are_equal_and_cover_the_bytes_once():
  assert byte_ranges.cut(10, 110, 25) == [(10, 35), (35, 60), (60, 85), (85, 110)]
  assert byte_ranges.cut(10, 111, 25) == [(10, 30), (30, 50), (50, 70), (70, 90), (90, 111)]
  assert byte_ranges.cut(10, 11, 25) == [(10, 11)]
  assert byte_ranges.cut(10, 10, 25) == []
  cuts = byte_ranges.cut(3, 1_000_003, 64)
  assert cuts[0][0] == 3 and cuts[-1][1] == 1_000_003
  assert all(a[1] == b[0] for a, b in zip(cuts, cuts[1:]))
  assert max(stop - start for start, stop in cuts) <= 64
  with pytest.raises(ValueError, match="range_bytes must be at least 1, got 0"):
    byte_ranges.cut(0, 10, 0)


TEXTS = {"LF": b"a,1\nbb,22\n\nccc,333\nd,4\n", "no trailing line break": b"a,1\nbb,22\nccc",
         "CRLF": b"a,1\r\nbb,22\r\n\r\nccc,333\r\n", "one line": b"abc"}


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_ranges_read_every_line_once_wherever_the_cuts_fall(name):
  text = TEXTS[name]
  whole = list(byte_ranges.lines(io.BytesIO(text), 0, None))
  assert b"".join(line for _, line in whole) == text
  assert [offset for offset, _ in whole] == [0] + [i + 1 for i, b in enumerate(text[:-1])
                                                   if b == ord("\n")]
  for range_bytes in range(1, len(text) + 1):
    read = [entry for start, stop in byte_ranges.cut(0, len(text), range_bytes)
            for entry in byte_ranges.lines(io.BytesIO(text), start, stop)]
    assert read == whole, range_bytes
  for a in range(len(text) + 1):        # every cut in three
    for b in range(a, len(text) + 1):
      read = [entry for start, stop in ((0, a), (a, b), (b, None))
              for entry in byte_ranges.lines(io.BytesIO(text), start, stop)]
      assert read == whole, (a, b)


def test_a_line_number_counts_the_line_breaks_before_it():
  text = b"h\n" + b"".join(b"row %d\n" % i for i in range(1, 200_000))
  offset = text.index(b"row 150000\n")
  assert byte_ranges.line_number(io.BytesIO(text), offset) == 150_001
  assert byte_ranges.line_number(io.BytesIO(text), 0) == 1


def test_a_compressed_file_is_opened_decompressed(tmp_path):
  (tmp_path / "a.csv.gz").write_bytes(gzip.compress(b"x\ny\n"))
  (tmp_path / "a.csv").write_bytes(b"x\ny\n")
  assert byte_ranges.is_compressed(str(tmp_path / "a.csv.gz"))
  assert not byte_ranges.is_compressed(str(tmp_path / "a.csv"))
  for name in ("a.csv.gz", "a.csv"):
    with byte_ranges.open_file(str(tmp_path / name)) as stream:
      assert list(byte_ranges.lines(stream, 0, None)) == [(0, b"x\n"), (2, b"y\n")]
  with byte_ranges.open_file(str(tmp_path / "a.csv")) as stream:
    assert byte_ranges.size(stream) == 4
