"""Raw input text, read the same way by ExampleGen's CSV reader and the serving client:
lines decoded as UTF-8 one at a time (so a bad byte is reported with its line, and a
byte-order mark before the first line is dropped), integer cells as ASCII digits
within int64."""

import re
from typing import Callable, Iterable, Iterator, Tuple

# Python's int() also takes "1_9" and other scripts' digits.
_INTEGER = re.compile(r"[+-]?[0-9]+")
INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1


def parse_int64(text: str) -> int:
  """An integer cell's value; ValueError saying why it is not one."""
  if not _INTEGER.fullmatch(text):
    raise ValueError("not an integer (ASCII digits)")
  number = int(text)
  if not INT64_MIN <= number <= INT64_MAX:
    raise ValueError("beyond int64")
  return number


def decoded_lines(raw: Iterable[bytes],
                  refuse: Callable[[int, UnicodeDecodeError], Exception]
                  ) -> Iterator[Tuple[int, str]]:
  """(line number from 1, text) of a binary stream's lines; a line that is not UTF-8
  raises refuse(its number, the decode error), the caller's own error naming its file."""
  for number, line in enumerate(raw, 1):
    try:
      yield number, line.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as e:
      raise refuse(number, e) from None
