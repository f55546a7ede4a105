"""CSV files cut into byte ranges that workers read on their own.

Handed whole, a 1 GB file is read by one worker however many there are. Here each
file is cut into ranges of about `range_bytes` (64 MiB unless told; a smaller
file is one range), and a range owns the rows that start in it, Hadoop's and
Beam's text-split rule (csv_parser.read_rows): its reader skips the end of the
row running into it and reads past its end to finish its last row, so every row
is read once whatever the cuts. A compressed file (Beam's suffixes: .gz, .bz2,
.deflate, .zst, .xz, ...) can't be entered mid-stream: it is one range, read whole.
"""

from typing import BinaryIO, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components.csv_example_gen.csv_parser import Header, read_header, read_rows
from models.features import Column

DEFAULT_RANGE_BYTES = 64 * 1024 * 1024


class CsvRange(NamedTuple):
  """The part of a CSV file one worker reads: the rows starting in bytes [start, stop)
  (stop None: to the end of the file), range `index` of the file's `count` (from 1)."""
  path: str
  relative: str               # the path relative to input_base (split keys, progress)
  header: Header              # read and checked once, when the file was cut
  start: int
  stop: Optional[int]
  index: int
  count: int

  def describe(self) -> str:
    """The range for progress lines: the file, and which part of it when it has several."""
    if self.count == 1:
      return self.relative
    return (f"{self.relative} range {self.index}/{self.count} "
            f"(bytes {self.start}-{self.stop})")


def byte_ranges(start: int, stop: int, range_bytes: int) -> List[Tuple[int, int]]:
  """[start, stop) cut into as few equal ranges as keep each within `range_bytes` (none
  when it is empty). Equal rather than range_bytes and a remainder, so that workers
  get equal shares."""
  if range_bytes < 1:
    raise ValueError(f"range_bytes must be at least 1, got {range_bytes}")
  size = stop - start
  count = -(-size // range_bytes)
  return [(start + size * i // count, start + size * (i + 1) // count) for i in range(count)]


def is_compressed(path: str) -> bool:
  """Whether Beam reads the file through a decompressor (by its suffix), which can't
  start mid-stream."""
  return CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED


def _size(raw: BinaryIO) -> int:
  raw.seek(0, 2)
  return raw.tell()


def split_file(path: str, relative: str, columns: Sequence[Column], range_bytes: int
               ) -> List[CsvRange]:
  """The file's ranges of about range_bytes each after its header, which is read and
  checked here, once per file (csv_parser.read_header); one range to the end for a
  compressed file. A file with a header and no rows has none."""
  with FileSystems.open(path) as raw:
    header = read_header(path, raw, columns)
    spans = ([(header.end, None)] if is_compressed(path)
             else byte_ranges(header.end, _size(raw), range_bytes))
  return [CsvRange(path, relative, header, start, stop, index, len(spans))
          for index, (start, stop) in enumerate(spans, 1)]


def read_range(part: CsvRange, columns: Sequence[Column], labels: Sequence[str]
               ) -> Iterator[Tuple[int, tf.train.Example]]:
  """(byte offset in the file, tf.Example) of the rows the range owns, in order."""
  with FileSystems.open(part.path) as raw:
    yield from read_rows(part.path, raw, part.header, part.start, part.stop, columns,
                         labels)
