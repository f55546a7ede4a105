"""A CSV file as byte ranges that workers read on their own (components/byte_ranges.py).

The header is read and checked once per file, when the file is cut, and travels with
each range, so a range that starts mid-file knows its columns. A range owns the rows
that start in it; a compressed file is one range, read whole.
"""

from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

import tensorflow as tf

from components import byte_ranges
from components.csv_example_gen.csv_parser import Header, read_header, read_rows
from models.features import Column


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


def split_file(path: str, relative: str, columns: Optional[Sequence[Column]],
               range_bytes: int, optional: Sequence[str] = ()) -> List[CsvRange]:
  """The file's ranges of about range_bytes each after its header, which is read and
  checked here against `columns` (csv_parser.read_header: the `optional` ones may be
  absent; None: not checked); one range to the end for a compressed file. A file with
  a header and no rows has none."""
  with byte_ranges.open_file(path) as raw:
    header = read_header(path, raw, columns, optional)
    spans = ([(header.end, None)] if byte_ranges.is_compressed(path)
             else byte_ranges.cut(header.end, byte_ranges.size(raw), range_bytes))
  return [CsvRange(path, relative, header, start, stop, index, len(spans))
          for index, (start, stop) in enumerate(spans, 1)]


def read_range(part: CsvRange, columns: Sequence[Column], labels: Sequence[str]
               ) -> Iterator[Tuple[int, tf.train.Example]]:
  """(byte offset in the file, tf.Example) of the rows the range owns, in order."""
  with byte_ranges.open_file(part.path) as raw:
    yield from read_rows(part.path, raw, part.header, part.start, part.stop, columns,
                         labels)
