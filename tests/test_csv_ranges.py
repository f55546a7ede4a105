"""A CSV file is read in byte ranges, one worker each (components/csv_example_gen/
csv_ranges.py): every row is read once whatever the cuts, the examples are those of
reading the file whole, and a bad row is named by file, line and byte in whichever
range it falls."""

import gzip
import re

import pytest

from components.csv_example_gen.csv_parser import BadInputError, read_examples, read_header
from components.csv_example_gen.csv_ranges import CsvRange, read_range, split_file
from datagen import taobao
from models.config import load_config
from pipeline import configs

CONFIG = load_config(configs.CONFIG_PATH)


def _serialized(example):
  return example.SerializeToString(deterministic=True)


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
  """A generated file's lines (header first), without their line breaks."""
  path = taobao.write_csv(str(tmp_path_factory.mktemp("rows")), 40, seed=3)
  with open(path, "rb") as f:
    return f.read().splitlines()


def _write(tmp_path, data: bytes, name="data.csv") -> str:
  path = tmp_path / name
  path.write_bytes(data)
  return str(path)


def _whole(path):
  with open(path, "rb") as raw:
    return [_serialized(e) for e in read_examples(path, raw, CONFIG.columns, CONFIG.labels)]


def _in_ranges(parts):
  """(offset, serialized example) of every range's rows, the ranges read in order."""
  return [(offset, _serialized(example)) for part in parts
          for offset, example in read_range(part, CONFIG.columns, CONFIG.labels)]


LAYOUTS = {
    "LF": lambda lines: b"\n".join(lines) + b"\n",
    "no trailing line break": lambda lines: b"\n".join(lines),
    "CRLF": lambda lines: b"\r\n".join(lines) + b"\r\n",
    "CRLF, no trailing line break": lambda lines: b"\r\n".join(lines),
    "byte-order mark, blank lines": lambda lines: (
        b"\xef\xbb\xbf" + b"\n".join(lines[:10]) + b"\n\n\r\n" + b"\n".join(lines[10:]) + b"\n\n"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("range_bytes", [1, 7, 100, 1_000, 64 << 20])
def test_ranges_read_every_row_once_as_reading_whole(lines, tmp_path, layout, range_bytes):
  data = LAYOUTS[layout](lines)
  path = _write(tmp_path, data)
  parts = split_file(path, "data.csv", CONFIG.columns, range_bytes)
  read = _in_ranges(parts)
  assert [example for _, example in read] == _whole(path)
  assert len(read) == len(lines) - 1
  offsets = [offset for offset, _ in read]
  assert offsets == sorted(set(offsets))
  # Each offset is where its row starts: right after a line break, at the row's text.
  rows = lines[1:]
  assert [data[o - 1:o] for o in offsets] == [b"\n"] * len(rows)
  assert [data[o:o + len(row)] for o, row in zip(offsets, rows)] == rows
  assert len(parts) == -(-(len(data) - parts[0].start) // range_bytes)


@pytest.mark.parametrize("layout", ["LF", "CRLF, no trailing line break"])
def test_every_cut_of_a_file_in_two_reads_every_row_once(lines, tmp_path, layout):
  """Cut at every byte after the header: at a row's first byte, its last, inside a CRLF."""
  data = LAYOUTS[layout](lines[:6])
  path = _write(tmp_path, data)
  with open(path, "rb") as raw:
    header = read_header(path, raw, CONFIG.columns)
  whole = _whole(path)
  for cut in range(header.end, len(data) + 1):
    first = CsvRange(path, "data.csv", header, header.end, cut, 1, 2)
    second = CsvRange(path, "data.csv", header, cut, len(data), 2, 2)
    read = _in_ranges([first, second])
    assert [example for _, example in read] == whole, cut
    owned = _in_ranges([second])
    assert all(offset >= cut for offset, _ in owned), cut
    assert len(owned) == sum(1 for o, _ in read if o >= cut), cut


def test_a_small_file_is_one_range_and_a_header_alone_none(lines, tmp_path):
  path = _write(tmp_path, b"\n".join(lines) + b"\n")
  (part,) = split_file(path, "day/data.csv", CONFIG.columns, 64 << 20)
  assert (part.start, part.stop, part.index, part.count) == (len(lines[0]) + 1,
                                                             sum(map(len, lines)) + len(lines),
                                                             1, 1)
  assert part.describe() == "day/data.csv"
  assert split_file(_write(tmp_path, lines[0] + b"\n", "header.csv"), "header.csv",
                    CONFIG.columns, 64 << 20) == []
  with pytest.raises(BadInputError, match="empty.csv: the file is empty"):
    split_file(_write(tmp_path, b"", "empty.csv"), "empty.csv", CONFIG.columns, 100)


def test_a_compressed_file_is_one_range_read_whole(lines, tmp_path):
  data = b"\n".join(lines) + b"\n"
  path = _write(tmp_path, gzip.compress(data), "data.csv.gz")
  (part,) = split_file(path, "data.csv.gz", CONFIG.columns, 100)
  assert part.stop is None
  assert [e for _, e in _in_ranges([part])] == _whole(_write(tmp_path, data))


def test_a_header_that_is_not_the_configs_is_refused_when_the_file_is_cut(lines, tmp_path):
  header = lines[0].replace(b"price", b"pricee")
  path = _write(tmp_path, b"\n".join([header] + lines[1:]))
  with pytest.raises(BadInputError, match=r"data\.csv, line 1 \(header\): missing column\(s\) "
                                          r"\['price'\]; unknown column\(s\) \['pricee'\]"):
    split_file(path, "data.csv", CONFIG.columns, 100)


def _broken(lines, number, old, new):
  """The file's bytes with data row `number` (from 1) changed, and that row's offset."""
  changed = list(lines)
  changed[number] = changed[number].replace(old, new, 1)
  assert changed[number] != lines[number]
  return b"\n".join(changed) + b"\n", sum(len(line) + 1 for line in changed[:number])


@pytest.mark.parametrize("old, new, problem", [
    (b",", b",,", r"21 fields where the header has 20 \(a malformed row\)"),
    (b",", b",\xff", r"not UTF-8 text \(invalid start byte at byte 2 of the line\)"),
    (b",", b',"', r"a quoted field is still open at the end of the line"),
])
def test_a_bad_row_in_the_middle_of_a_later_range_names_file_line_and_byte(
    lines, tmp_path, old, new, problem):
  data, offset = _broken(lines, 30, old, new)
  path = _write(tmp_path, data)
  parts = split_file(path, "data.csv", CONFIG.columns, 700)
  (owner,) = [p for p in parts if p.start <= offset < p.stop]
  assert owner.index > 1 and owner.start + 100 < offset   # mid-range, not its first row
  for part in parts[:owner.index - 1]:
    _in_ranges([part])                                     # the ranges before read fine
  with pytest.raises(BadInputError) as refused:
    _in_ranges([owner])
  row = data[offset:data.index(b"\n", offset)].decode(errors="replace")
  assert str(refused.value).startswith(f"Bad input in {path}, line 31: ")
  assert str(refused.value).endswith(f"; the row at byte {offset}: {row!r}")
  assert re.search(problem, str(refused.value)), str(refused.value)


def test_a_field_with_a_line_break_never_reads_silently_wherever_the_file_is_cut(
    lines, tmp_path):
  """A line break in a quoted field makes a cut inside it ambiguous; wherever the cut,
  the range that holds the row's start refuses the row, so the run stops."""
  data, offset = _broken(lines[:8], 4, b",", b',"a\nb",')
  path = _write(tmp_path, data)
  with open(path, "rb") as raw:
    header = read_header(path, raw, CONFIG.columns)
  for cut in range(header.end, len(data) + 1):
    parts = [CsvRange(path, "data.csv", header, header.end, cut, 1, 2),
             CsvRange(path, "data.csv", header, cut, len(data), 2, 2)]
    with pytest.raises(BadInputError, match=rf"line 5: a quoted field is still open .*; the "
                                            rf"row at byte {offset}: "):
      _in_ranges([p for p in parts if p.start <= offset < p.stop])
