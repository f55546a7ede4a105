"""Daily data as spans: `DIR/span-{SPAN}/*.csv`, one directory per day.

ExampleGen reads the newest span (or the one `--span` names) through its
`{SPAN}` input pattern and records the span on its Examples artifact. Two
resolvers over ML Metadata then look back over the spans this pipeline has
ingested:

* `SpanWindowStrategy`: the last `num_spans` spans up to this run's (the newest
  Examples artifact of each), which Transform analyses and the Trainer trains
  on: a rolling window;
* `PreviousSpanStrategy`: the statistics of the span before this run's (and
  that span's Examples, which name it), the baseline of the drift check (TFX's
  DistributionValidator). The first span has none; it is compared with
  itself, which finds nothing.

Each reads every artifact its producer ever wrote and runs after this run's
producer (an explicit upstream edge), so this run's span is among them: the
span `--span` names, else the newest.

Both are custom strategies, which LocalDagRunner runs; KubeflowV2DagRunner
compiles only TFX's latest-artifact and latest-blessed-model strategies.
"""

import dataclasses
import os
from typing import Any, Dict, List, Optional

from tfx import v1 as tfx
from tfx.proto import distribution_validator_pb2
from tfx.utils import io_utils
from tensorflow_metadata.proto.v0 import schema_pb2

from components.label_blind_split import SPAN_DIR, Split, examples_span
from pipeline import configs

PREVIOUS_SPAN_ID = "previous_span_statistics"
SPAN_WINDOW_ID = "span_window"


@dataclasses.dataclass(frozen=True)
class SpanSettings:
  """A run over `span-N/` directories, one span ingested per run.

  `span`: the span ExampleGen reads (None: the newest). Transform and the Trainer
  take the last `train_spans` ingested spans up to it; with `drift_check` the span's
  statistics are compared with the previous span's (DistributionValidator).
  """
  span: Optional[int] = None
  train_spans: int = 1
  drift_check: bool = True

  def __post_init__(self):
    if self.train_spans < 1:
      raise ValueError(f"train_spans {self.train_spans}: at least 1")

  def resolver_config(self) -> Dict[str, int]:
    """The run's span for the resolvers; left out, they take the newest (a resolver's
    config can't hold None)."""
    return {} if self.span is None else {"span": self.span}


def spans_in(data_root: str) -> List[int]:
  """The span numbers of the `span-N` directories under data_root (sorted)."""
  if not os.path.isdir(data_root):
    return []
  return sorted(int(m.group(1)) for m in map(SPAN_DIR.match, os.listdir(data_root))
                if m and os.path.isdir(os.path.join(data_root, m.group(0))))


@dataclasses.dataclass(frozen=True)
class SpanReading:
  """What a run reads of its data root: run_local's span and split arguments, and a
  line saying which spans (None for plain CSV files)."""
  arguments: Dict[str, Any]
  summary: Optional[str] = None


def span_reading(data_root: str, split: Split, span: Optional[int] = None,
                 train_spans: Optional[int] = None, drift_check: bool = True,
                 data_format: str = "csv") -> SpanReading:
  """The spans a run reads of data_root (`span-N/` directories or plain CSV files) as
  `aitm run --span/--train-spans/--split/--no-drift-check` ask; raises ValueError,
  naming those flags, when data_root can't serve them."""
  found = spans_in(data_root) if data_format == "csv" else []
  if not found:
    if span is not None or train_spans is not None or split.kind == "span":
      raise ValueError(f"--span, --train-spans and --split span need --data with span-N/ "
                       f"directories; {data_root} has none")
    return SpanReading({"split": split})
  if span is not None and span not in found:
    raise ValueError(f"--span {span}: {data_root} has spans {', '.join(map(str, found))}")
  if split.kind == "span":
    return _split_by_span(data_root, found, span, train_spans)
  train_spans = train_spans or configs.TRAIN_SPANS
  read = span if span is not None else found[-1]
  return SpanReading(
      dict(spans=SpanSettings(span=span, train_spans=train_spans, drift_check=drift_check),
           split=split),
      f"{data_root}: spans {', '.join(map(str, found))}; reading span {read}"
      + (f", training on the last {train_spans} ingested spans up to it"
         if train_spans > 1 else ""))


def _split_by_span(data_root: str, found: List[int], span: Optional[int],
                   train_spans: Optional[int]) -> SpanReading:
  """--split span: `span` evaluates (None: the newest), the `train_spans` spans before
  it train (None: all of them)."""
  evaluated = span if span is not None else found[-1]
  earlier = [s for s in found if s < evaluated][-(train_spans or len(found)):]
  if not earlier:
    raise ValueError(f"--split span evaluates span {evaluated} on a model trained on the "
                     f"spans before it, and {data_root} has none before it")
  return SpanReading(
      {"split": Split("span", span=span, train_spans=train_spans)},
      f"{data_root}: spans {', '.join(map(str, found))}; split by span: span {evaluated} "
      f"evaluates, span(s) {', '.join(map(str, earlier))} train (ExampleGen reads them all; "
      "no drift check)")


def _newest_per_span(artifacts, span_of=examples_span) -> Dict[int, object]:
  """span -> the newest artifact of that span (a span re-ingested has several);
  artifacts whose span `span_of` can't tell (None) are left out."""
  newest = {}
  for artifact in artifacts:
    span = span_of(artifact)
    if span is not None and (span not in newest or artifact.id > newest[span].id):
      newest[span] = artifact
  return newest


def _statistics_spans(store, statistics, examples) -> Dict[int, int]:
  """statistics artifact id -> the span of the Examples it was computed from.
  StatisticsGen does not copy the span, so it is read from the lineage in
  ML Metadata: the execution that wrote the statistics, and its input Examples."""
  span_of_examples = {a.id: examples_span(a) for a in examples}
  producer = {e.artifact_id: e.execution_id
              for e in store.get_events_by_artifact_ids([a.id for a in statistics])
              if e.type == e.OUTPUT}
  inputs = store.get_events_by_execution_ids(sorted(set(producer.values())))
  span_of_execution = {e.execution_id: span_of_examples[e.artifact_id]
                       for e in inputs if e.type == e.INPUT and e.artifact_id in span_of_examples}
  return {a.id: span_of_execution[producer[a.id]] for a in statistics
          if producer.get(a.id) in span_of_execution}


def _current_span(artifacts, span: Optional[int]) -> Optional[int]:
  """The run's span: the one it was told to read, else the newest ingested."""
  if span is not None:
    return span
  return max((examples_span(a) for a in artifacts), default=None)


class SpanWindowStrategy(tfx.dsl.experimental.ResolverStrategy):
  """Input `examples` (every Examples artifact ExampleGen produced, resolved after
  this run's ExampleGen): outputs the newest artifact of each of the `num_spans`
  spans ending at `span` (None: the newest ingested), newest first."""

  def __init__(self, num_spans: int, span: Optional[int] = None):
    if num_spans < 1:
      raise ValueError(f"num_spans must be at least 1, got {num_spans}")
    self.num_spans, self.span = num_spans, span

  def resolve_artifacts(self, store, input_dict):
    """`{"examples": [...]}`, the newest artifact of each span in the window, newest
    first; None when the window holds no span."""
    artifacts = list(input_dict.get("examples", []))
    last = _current_span(artifacts, self.span)
    newest = _newest_per_span(artifacts)
    window = [newest[s] for s in sorted(newest, reverse=True)
              if last is not None and last - self.num_spans < s <= last]
    return {"examples": window} if window else None


class PreviousSpanStrategy(tfx.dsl.experimental.ResolverStrategy):
  """Inputs `statistics` (every ExampleStatistics StatisticsGen produced) and
  `examples` (every Examples ExampleGen produced), resolved after this run's
  StatisticsGen: outputs the newest statistics of the largest span below `span`
  (None: the newest span) and that span's Examples artifact; when there is no
  earlier span, the current span's own (compared with itself: nothing to find)."""

  def __init__(self, span: Optional[int] = None):
    self.span = span

  def resolve_artifacts(self, store, input_dict):
    """`{"statistics": [s], "examples": [e]}` of the previous span (the current one when
    there is none earlier); None when there is no span, or no statistics of it."""
    examples = list(input_dict.get("examples", []))
    statistics = list(input_dict.get("statistics", []))
    current = _current_span(examples, self.span)
    if current is None:
      return None
    spans = _statistics_spans(store, statistics, examples)
    newest = _newest_per_span(statistics, span_of=lambda a: spans.get(a.id))
    earlier = [s for s in newest if s < current]
    chosen = max(earlier) if earlier else current
    if chosen not in newest:
      return None
    return {"statistics": [newest[chosen]],
            "examples": [_newest_per_span(examples)[chosen]]}


def drift_config(schema_path: str) -> Optional[distribution_validator_pb2.DistributionValidatorConfig]:
  """DistributionValidator's config from the curated schema's `drift_comparator`s
  (TFDV's place for them), or None when the schema sets none."""
  schema = io_utils.parse_pbtxt_file(schema_path, schema_pb2.Schema())
  config = distribution_validator_pb2.DistributionValidatorConfig()
  for feature in schema.feature:
    if feature.HasField("drift_comparator"):
      comparator = config.default_slice_config.feature.add()
      comparator.path.step.append(feature.name)
      comparator.distribution_comparator.CopyFrom(feature.drift_comparator)
  return config if config.default_slice_config.feature else None
