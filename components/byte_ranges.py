"""Files read in byte ranges, each range by a worker of its own: the rule both
ExampleGens (CSV, Ali-CCP) read big files by.

Handed whole, a 1 GB file is read by one worker however many there are. Cut into
ranges of about `range_bytes` (64 MiB by default, as Beam's own text reader), it
is read by as many workers as there are ranges. A range owns the lines that
start in it, Hadoop's and Beam's text-split rule: its reader skips the end of the
line running into the range and reads past the range's end to finish its last
line, so every line is read once whatever the cuts. A line starts right after a
line break, which is why a record must be one line (csv_parser). A range doesn't
know its line numbers; `line_number` counts one, for an error message.

A compressed file (Beam's suffixes: .gz, .bz2, .deflate, .zst, .xz, .lzma) can't
be entered mid-stream: it is one range, read whole.
"""

from typing import BinaryIO, Iterator, List, Optional, Tuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

DEFAULT_RANGE_BYTES = 64 << 20
# Bytes read at a time when counting the lines before an offset.
_COUNT_BLOCK = 1 << 20


def cut(start: int, stop: int, range_bytes: int) -> List[Tuple[int, int]]:
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


def open_file(path: str) -> BinaryIO:
  """The file's bytes, decompressed when its suffix says it is compressed (reading a
  range of it then means reading up to it)."""
  return FileSystems.open(path, compression_type=(
      CompressionTypes.AUTO if is_compressed(path) else CompressionTypes.UNCOMPRESSED))


def size(stream: BinaryIO) -> int:
  """The length of a stream that seeks (an uncompressed file's)."""
  stream.seek(0, 2)
  return stream.tell()


def lines(stream: BinaryIO, start: int, stop: Optional[int]) -> Iterator[Tuple[int, bytes]]:
  """(byte offset, line with its line break) of every line that starts in [start, stop)
  (stop None: to the end), in order; the last is read to its end, past `stop`."""
  if start > 0:
    # From the byte before `start` through the next line break: the end of a line that
    # began before (the range before owns it), or only that line break.
    stream.seek(start - 1)
    offset = start - 1 + len(stream.readline())
  else:
    stream.seek(0)
    offset = 0
  while stop is None or offset < stop:
    line = stream.readline()
    if not line:
      return
    yield offset, line
    offset += len(line)


def line_number(stream: BinaryIO, offset: int) -> int:
  """The number (from 1) of the line that starts at byte `offset`: one more than the
  line breaks before it. Reads the stream up to there, which only an error pays for."""
  stream.seek(0)
  breaks, left = 0, offset
  while left > 0:
    block = stream.read(min(left, _COUNT_BLOCK))
    if not block:
      break
    breaks += block.count(b"\n")
    left -= len(block)
  return breaks + 1
