"""ExampleGen's train/eval split, decided without reading the labels.

TFX's ExampleGen hashes each whole example into its split, labels included.
Real impression logs repeat rows: the same user shown the same ad several
times, with nothing but the labels telling the copies apart. Hashed whole,
the copies with clk=1 land in one split and those with clk=0 in the other,
so what a model learns about a repeated user-ad pair in train is wrong in
eval, and the eval AUC falls below 0.5 as the model gets better.

Here each row is hashed by a key that holds no label, in TFX's way (sha256 of
the key modulo the sum of the splits' `hash_buckets`), so the split is the
same for the same input and the cache holds:

* `row` (the default): the row's place in the input: its file (relative to
  input_base) and the byte its row starts at, `data.csv@1234` (CSV: a
  worker reading a byte range of a big file knows a row's offset, not its
  number), or its file and sample_id (Ali-CCP). Copies of an impression fall
  into both splits, 4:1 like every other row, so the eval split repeats
  train's user-ad pairs as the impressions the model will serve do.
* `columns`: the values of the named columns, e.g. `user_id` for an
  evaluation on users the model never trained on. A row without a value in
  one of them hashes with the empty value.
* `span`: input_base holds `span-N/` directories; the newest span (or
  `span`) is the eval split and the `train_spans` spans before it (default:
  all) the train split, so the model is evaluated on the day after the ones
  it learned from. The hash buckets are not used.

The ExampleGen executors (csv_example_gen, aliccp_example_gen) subclass
`split_executor.LabelBlindSplitExecutor`: their reading PTransform yields
`KeyedExample`s, which `partition` assigns to a split. Plain Python, so the
pipeline's settings can name a Split without loading Beam or TFX.
"""

import bisect
import dataclasses
import hashlib
import os
import re
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple


KINDS = ("row", "columns", "span")
# exec_properties key through which the split tells the reading PTransform which spans to read.
READ_SPANS_KEY = "_read_spans"
TRAIN, EVAL = "train", "eval"
# Train:eval parts of a split by row or by columns.
TRAIN_BUCKETS, EVAL_BUCKETS = 4, 1
# A span's directory under input_base (datagen.taobao.write_spans, pipeline.spans).
SPAN_DIR = re.compile(r"^span-(\d+)$")
# ExampleGen's input pattern for a run over one span: the driver substitutes the
# newest span number (or the one its range_config names) for {SPAN}.
SPAN_PATTERN = "span-{SPAN}/*"
# Every span's files, for a split by span.
ALL_SPANS_PATTERN = "span-*/*"


@dataclasses.dataclass(frozen=True)
class Split:
  """How ExampleGen splits its input into train and eval (module docstring)."""
  kind: str = "row"
  columns: Tuple[str, ...] = ()         # kind "columns": the columns hashed
  span: Optional[int] = None            # kind "span": the eval span (None: the newest)
  train_spans: Optional[int] = None     # kind "span": spans before it trained on (None: all)

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"split kind must be one of {KINDS}, got {self.kind!r}")
    if (self.kind == "columns") != bool(self.columns):
      raise ValueError("a split by columns names at least one column, and only it names any")
    if self.kind != "span" and (self.span is not None or self.train_spans is not None):
      raise ValueError("span and train_spans belong to a split by span")
    if self.train_spans is not None and self.train_spans < 1:
      raise ValueError(f"train_spans must be at least 1, got {self.train_spans}")

  @classmethod
  def parse(cls, text: str) -> "Split":
    """`row`, `span` or `columns=NAME[,NAME...]` (the CLI's --split)."""
    kind, _, names = text.strip().partition("=")
    columns = tuple(n.strip() for n in names.split(",") if n.strip())
    if kind == "columns" and not columns:
      raise ValueError("--split columns=NAME[,NAME...] names the columns to hash")
    if kind != "columns" and names:
      raise ValueError(f"--split {text!r}: only columns=... takes names")
    if kind not in KINDS:
      raise ValueError(f"--split {text!r}: expected row, span or columns=NAME[,NAME...]")
    return cls(kind, columns)

  def __str__(self) -> str:
    """The --split text that parses back into this split's kind and columns."""
    return f"columns={','.join(self.columns)}" if self.kind == "columns" else self.kind

  def describe(self) -> str:
    """The split in words, for the run's output."""
    if self.kind == "row":
      return "by row (each row's file and place in it; labels never read)"
    if self.kind == "columns":
      return f"by {', '.join(self.columns)} (rows sharing their values stay together)"
    trained = "every earlier span" if self.train_spans is None else \
        f"the {self.train_spans} span(s) before it"
    evaluated = "the newest span" if self.span is None else f"span {self.span}"
    return f"by span: {evaluated} evaluates, {trained} train"

  def check_columns(self, available: Sequence[str], labels: Sequence[str], source: str) -> None:
    """ValueError naming the column when a split column is a label or doesn't exist."""
    for name in self.columns:
      if name in labels:
        raise ValueError(f"{source}: the split can't hash the label {name!r}: a split "
                         f"must never depend on the labels")
      if name not in available:
        raise ValueError(f"{source}: the split column {name!r} is not a column of the "
                         f"input ({', '.join(available)})")

  def to_json(self) -> Dict[str, Any]:
    """The fields as a JSON-ready dict (from_json reads it back)."""
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, value: Optional[Dict[str, Any]]) -> "Split":
    """The split to_json wrote; None or empty: the default split, by row."""
    if not value:
      return cls()
    return cls(value["kind"], tuple(value.get("columns", ())), value.get("span"),
               value.get("train_spans"))


class KeyedExample(NamedTuple):
  """One example and what its split is decided by: `row_key`, the row's place in the
  input (bytes), and `span`, the span its file belongs to (None outside span-N/)."""
  row_key: bytes
  span: Optional[int]
  example: Any                # tf.train.Example


def span_of(relative_path: str) -> Optional[int]:
  """The N of a path under input_base that starts with `span-N/`, else None."""
  first = relative_path.replace(os.sep, "/").split("/", 1)[0]
  match = SPAN_DIR.match(first)
  return int(match.group(1)) if match else None


def examples_span(artifact) -> int:
  """An Examples artifact's span (ExampleGen records it as a custom property)."""
  text = artifact.get_string_custom_property("span")
  return int(text) if text else artifact.get_int_custom_property("span")


def spans_to_read(relative_paths: Sequence[str], split: Split) -> Tuple[int, List[int]]:
  """(eval span, train spans) of a split by span over these files; ValueError saying what
  is missing when there is no eval span or nothing before it."""
  found = sorted({s for s in map(span_of, relative_paths) if s is not None})
  if not found:
    raise ValueError("a split by span needs input_base to hold span-N/ directories; "
                     f"none of {list(relative_paths)[:3]} is in one")
  last = found[-1] if split.span is None else split.span
  if last not in found:
    raise ValueError(f"a split by span: span {last} is not among the spans found "
                     f"({', '.join(map(str, found))})")
  earlier = [s for s in found if s < last]
  if split.train_spans is not None:
    earlier = earlier[-split.train_spans:]
  if not earlier:
    raise ValueError(f"a split by span evaluates span {last} on a model trained on the "
                     f"spans before it, and there is none: add an earlier span-N/ directory")
  return last, earlier


def _column_key(example, columns: Sequence[str]) -> bytes:
  features = example.features.feature
  return b"\0".join(features[c].SerializeToString(deterministic=True) if c in features
                    else b"" for c in columns)


def _hash_bucket(key: bytes, buckets: Sequence[int]) -> int:
  return bisect.bisect(buckets, int(hashlib.sha256(key).hexdigest(), 16) % buckets[-1])


def partition(keyed: KeyedExample, num_partitions: int, buckets: Sequence[int],
              split: Split, names: Sequence[str], eval_span: Optional[int] = None) -> int:
  """The output split's index of one KeyedExample (beam.Partition's function)."""
  del num_partitions  # == len(buckets)
  if split.kind == "span":
    return names.index(EVAL if keyed.span == eval_span else TRAIN)
  key = keyed.row_key if split.kind == "row" else _column_key(keyed.example, split.columns)
  return _hash_bucket(key, buckets)


def check_split_names(names: Sequence[str], split: Split) -> None:
  """ValueError unless a split by span writes exactly the train and eval splits."""
  if split.kind == "span" and sorted(names) != sorted((TRAIN, EVAL)):
    raise ValueError(f"a split by span writes the splits {TRAIN} and {EVAL}, not {list(names)}")


def read_spans(exec_properties: Dict[str, Any]) -> Optional[List[int]]:
  """The spans a split by span reads (None: read every file the pattern matches)."""
  return exec_properties.get(READ_SPANS_KEY)
