"""`aitm report`: the renderers on hand-made data, then the page of a real pipeline run
rendered by headless Chromium (Debian's `chromium` package)."""

import contextlib
import io
import math
import os
import shutil
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser

import pytest

import report
from report import (BASELINE, CANDIDATE, ModelInfo, ReportData, SliceRow, TaskResult, Threshold,
                    Verdict)

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- parsing pages


class Page(HTMLParser):
  """What the tests read from a page (ours, or the DOM Chromium dumps): the metric
  tables, the SVG elements, the text."""

  def __init__(self, text: str):
    super().__init__(convert_charrefs=True)
    self.tables = {}       # data-task -> {"head": [...], "rows": [(tr attrs, [(td attrs, text)])]}
    self.svgs = []         # class attribute of every <svg>
    self.plots = []        # (task section, class) of every <svg>
    self.svg_children = 0  # elements drawn inside them
    self.tags = []         # every start tag name
    self.text = []
    self.missing = []      # (task section, class) of the missing-plot notes
    self._table = self._row = self._cell = self._section = None
    self._in_svg = 0
    self.feed(text)
    self.text = " ".join(" ".join(self.text).split())

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    self.tags.append(tag)
    classes = (attrs.get("class") or "").split()
    if tag == "section" and "task" in classes:
      self._section = attrs.get("data-task")
    if tag == "svg":
      self.svgs.append(attrs.get("class", ""))
      self.plots.append((self._section, attrs.get("class", "")))
      self._in_svg += 1
    elif self._in_svg:
      self.svg_children += 1
    if tag == "p" and "missing" in classes:
      self.missing.append((self._section, attrs.get("class")))
    if tag == "table" and "metrics" in classes:
      self._table = self.tables.setdefault(attrs.get("data-task", ""), {"head": [], "rows": []})
    elif self._table is not None and tag == "tr":
      self._row = (attrs, [])
      self._table["rows"].append(self._row)
    elif self._table is not None and tag in ("td", "th"):
      self._cell = [attrs, ""]

  def handle_endtag(self, tag):
    if tag == "svg":
      self._in_svg -= 1
    if tag == "table":
      self._table = None
    elif tag in ("td", "th") and self._cell is not None:
      attrs, text = self._cell
      text = " ".join(text.split())
      if tag == "th" and self._row is not None and not self._row[1] and \
          self._table["rows"] and self._table["rows"][-1] is self._row:
        self._table["head"].append(text)
      else:
        self._row[1].append((attrs, text))
      self._cell = None

  def handle_data(self, data):
    self.text.append(data)
    if self._cell is not None:
      self._cell[1] += data

  def body_rows(self, task):
    """(slice label, {metric: (value text, cell text, attrs)}) for the metric rows."""
    rows = []
    for tr, cells in self.tables[task]["rows"]:
      if tr.get("class") in ("overall", "slice-row"):
        values = {attrs["data-metric"]: (text.split(" \u0394")[0], text, attrs)
                  for attrs, text in cells[1:]}
        rows.append((cells[0][1], values))
    return rows

  def head(self, task):
    return self.tables[task]["head"]


# --------------------------------------------------------------------------- hand-made data


def _row(slice_, **values):
  return SliceRow(tuple(slice_), dict(values))


def _sample(with_baseline=True) -> ReportData:
  ctr_rows = [
      _row([("pid", "b_2")], example_count=400, auc=0.61, log_loss=0.2),
      _row([], example_count=1000, auc=0.6789, auc_precision_recall=0.1234, log_loss=0.19,
           calibration=0.9, mean_prediction=0.045, mean_label=0.05),
      _row([("pid", "a_1")], example_count=600, auc=0.7, log_loss=0.18),
      _row([("age_level", "10")], example_count=10, auc=0.55),
      _row([("age_level", "2")], example_count=500, auc=0.65),
      _row([("age_level", "<script>alert('x')</script>")], example_count=3, auc=float("nan")),
  ]
  if with_baseline:
    ctr_rows[1].baseline = {"example_count": 1000, "auc": 0.6689, "log_loss": 0.18,
                            "calibration": 1.2, "mean_label": 0.05}
    ctr_rows[1].diff = {"example_count": 0.0, "auc": 0.01, "log_loss": 0.01,
                        "calibration": -0.3, "mean_label": 0.0}
  # TFMA's fixed-width histogram: mean prediction per bucket is its midpoint, the label
  # rate is half the prediction (an over-predicting model).
  buckets = [(i / 100, (i + 1) / 100, 50.0, 50.0 * (i + 0.5) / 200, 50.0 * (i + 0.5) / 100)
             for i in range(20)]
  # A perfect ranker: every positive scores above every negative.
  perfect = [(t, 10.0 if t < 0.5 else 0.0, 90.0 if t < 0.1 else 0.0,
              0.0 if t < 0.1 else 90.0, 0.0 if t < 0.5 else 10.0)
             for t in (-1e-6, 0.05, 0.2, 0.6, 0.9)]
  ctr = TaskResult("ctr", ctr_rows, label="clk",
                   calibration={CANDIDATE: buckets, **({BASELINE: buckets} if with_baseline
                                                       else {})},
                   confusion={CANDIDATE: perfect})
  cvr = TaskResult("cvr", [
      _row([], example_count=1000, auc=0.81, order_violation_rate=0.0123, conditional_auc=0.7,
           conditional_example_count=50),
      _row([("pid", "a_1")], example_count=600, auc=0.8)], label="buy")
  funnel = TaskResult("", [_row([], cvr_order_violation_rate=0.004)])
  failure = Threshold("cvr", "auc", (), "value", ">= 0.9", True, 0.81)
  verdict = Verdict(
      blessed=False, baseline_compared=with_baseline,
      thresholds=[Threshold("ctr", "auc", (), "value", ">= 0.55"), failure],
      failures=[failure])
  return ReportData(
      pipeline_name="aitm & <friends>", run_id="2026-11-29T02:09:27", evaluated_at=1.8e9,
      evaluation_uri="/root/Evaluator/evaluation/8",
      candidate=ModelInfo("/root/Trainer/model/7", "AITM",
                          {"model_name": "AITM", "parameters": 11782322, "epochs_run": 5,
                           "eval_auc": {"ctr": 0.67, "cvr": 0.8}}),
      baseline=ModelInfo("/root/Trainer/model/3", "<b>old</b>") if with_baseline else None,
      verdict=verdict, tasks=[ctr, cvr, funnel],
      slice_features=["pid", "age_level"])


@pytest.fixture(scope="module")
def sample_page():
  return Page(report.render_page(_sample()))


def test_text_is_escaped_and_the_page_is_self_contained():
  html = report.render_page(_sample())
  assert "<script" not in html and "<b>old</b>" not in html
  assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
  assert "aitm &amp; &lt;friends&gt;" in html and "&lt;b&gt;old&lt;/b&gt;" in html
  # Nothing fetched: no scripts, stylesheets, images, fonts or frames.
  for needle in ("<link", "<img", "<iframe", "<object", "<embed", "src=", "@import", "url(",
                 "@font-face"):
    assert needle not in html, needle
  assert html.replace('xmlns="http://www.w3.org/2000/svg"', "").count("http") == 0


def test_the_trainer_summary_says_whether_the_model_was_warm_started():
  import dataclasses
  sample = _sample()
  base = "/root/Trainer/model/3/Format-Serving"

  def page(warm_start):
    training = dict(sample.candidate.training, warm_start=warm_start)
    return report.render_page(dataclasses.replace(
        sample, candidate=dataclasses.replace(sample.candidate, training=training)))

  warm = page({"base_model": base, "warm": True, "reason": None, "copied": ["a", "b"],
               "remapped": {"pid": {"kept": 2, "new": 0, "dropped": 0, "oov": 1}}})
  assert (f"warm start: from {base} (2 weights copied, 1 vocabulary tables remapped by "
          "token)") in warm
  fresh = page({"base_model": base, "warm": False, "reason": "feature pid: buckets 1 != 2",
                "copied": [], "remapped": {}})
  assert "warm start: fresh start, feature pid: buckets 1 != 2" in fresh
  assert "warm start" not in page(None)


def test_one_table_per_task_with_every_metric_as_a_column(sample_page):
  assert list(sample_page.tables) == ["ctr", "cvr", ""]
  assert sample_page.head("ctr") == ["slice", "examples", "AUC", "AUC-PR", "log loss",
                                     "calibration", "mean prediction", "mean label"]
  assert sample_page.head("cvr") == ["slice", "examples", "AUC", "conditional examples",
                                     "conditional AUC", "order violations"]
  assert sample_page.head("") == ["slice", "cvr_order_violation_rate"]
  assert "Across tasks" in sample_page.text


def test_rows_are_overall_then_each_feature_with_sorted_values(sample_page):
  labels = [label for label, _ in sample_page.body_rows("ctr")]
  # EvalConfig order of the features (pid, age_level); numeric values in numeric order.
  assert labels == ["Overall", "a_1", "b_2", "2", "10", "<script>alert('x')</script>"]
  groups = [cells[0][1] for tr, cells in sample_page.tables["ctr"]["rows"]
            if tr.get("class") == "group"]
  assert groups == ["by pid", "by age_level"]


def test_numbers_are_formatted_with_sensible_precision(sample_page):
  rows = dict(sample_page.body_rows("ctr"))
  overall = rows["Overall"]
  assert overall["example_count"][0] == "1,000"
  assert overall["auc"][0] == "0.6789"
  assert float(overall["auc"][2]["data-value"]) == 0.6789
  assert overall["mean_prediction"][0] == "0.0450"
  assert rows["<script>alert('x')</script>"]["auc"][0] == "n/a"
  assert rows["a_1"]["auc_precision_recall"][0] == "\u2013"     # not computed there
  assert dict(sample_page.body_rows("cvr"))["Overall"]["order_violation_rate"][0] == "0.0123"
  assert report.format_value("mean_label", 0.005604168) == "0.005604"
  assert report.format_value("auc", -0.000136, signed=True, like=0.004) == "-0.000136"
  assert report.format_value("conditional_example_count", 1234.0) == "1,234"


def test_baseline_value_and_change_are_shown_and_judged(sample_page):
  overall = dict(sample_page.body_rows("ctr"))["Overall"]
  _, auc_text, _ = overall["auc"]
  assert auc_text == "0.6789 \u0394 +0.0100 (was 0.6689)"
  # Same count and label rate in both models: no change line.
  assert overall["example_count"][1] == "1,000" and overall["mean_label"][1] == "0.0500"
  html = report.render_page(_sample())
  assert 'class="chg better">\u0394 +0.0100' in html                # AUC up
  assert 'class="chg worse">\u0394 +0.0100' in html                 # log loss up
  assert 'class="chg better">\u0394 -0.3000' in html                # calibration 1.2 -> 0.9
  no_baseline = Page(report.render_page(_sample(with_baseline=False)))
  assert "\u0394" not in " ".join(t for _, (_, t, _) in
                                  dict(no_baseline.body_rows("ctr"))["Overall"].items())
  assert "No baseline model was compared" in no_baseline.text


def test_verdict_says_why(sample_page):
  assert "NOT BLESSED" in sample_page.text
  assert "1 threshold failed" in sample_page.text
  assert "cvr AUC on Overall is 0.8100; required: >= 0.9" in sample_page.text
  # The failing cell is marked in the table.
  cvr_overall = dict(sample_page.body_rows("cvr"))["Overall"]
  assert "fail" in cvr_overall["auc"][2]["class"]
  blessed = _sample()
  blessed.verdict = Verdict(blessed=True, baseline_compared=True,
                            thresholds=[Threshold("ctr", "auc", (), "value", ">= 0.55")])
  assert "BLESSED All 1 thresholds passed." in Page(report.render_page(blessed)).text
  blessed.verdict = Verdict(blessed=None, baseline_compared=False)
  assert "not validated" in Page(report.render_page(blessed)).text


def test_plots_are_inline_svg_and_missing_plots_are_named(sample_page):
  classes = sample_page.svgs
  assert classes.count("plot calibration") == 1          # ctr has the plots, cvr not
  assert classes.count("plot roc") == 1
  assert classes.count("plot bars") == 2                 # ctr and cvr by slice
  assert sample_page.missing == [("cvr", "missing calibration"), ("cvr", "missing roc")]
  assert 'class="CalibrationPlot"' not in report.render_page(_sample())
  assert 'CalibrationPlot' in sample_page.text and 'ConfusionMatrixPlot' in sample_page.text
  ctr = _sample().tasks[0]
  svg = report.svg_roc("ctr", ctr.confusion, {})
  assert 'class="diagonal"' in svg and "area \u2248 1.000" in svg
  svg = report.svg_calibration("ctr", ctr.calibration, {CANDIDATE: "AITM", BASELINE: "old"})
  assert svg.count("<circle") == 20 and "AITM" in svg and "old" in svg


def test_calibration_points_merge_buckets_into_equal_count_bins():
  buckets = [(i / 1000, (i + 1) / 1000, 10.0, 1.0, 10.0 * (i + 0.5) / 1000) for i in range(100)]
  buckets.append((0.9, 0.901, 0.0, 0.0, 0.0))            # empty buckets don't count
  points = report.calibration_points(buckets, bins=10)
  assert len(points) == 10
  assert all(n == 100 for _, _, n in points)
  assert all(math.isclose(label, 0.1) for _, label, _ in points)
  assert points[0][0] == pytest.approx(0.005)
  assert report.calibration_points([]) == []


def test_roc_points_from_confusion_matrices():
  # threshold, tp, fp, tn, fn: a random ranker.
  matrices = [(t, 50 * (1 - t), 50 * (1 - t), 50 * t, 50 * t) for t in (0.0, 0.25, 0.5, 1.0)]
  points = report.roc_points(matrices)
  assert points[0] == (0.0, 0.0) and points[-1] == (1.0, 1.0)
  assert report.roc_auc(points) == pytest.approx(0.5)


def test_slice_bars_mark_overall_and_baseline():
  data = _sample()
  data.tasks[0].rows[0].baseline = {"auc": 0.6}
  svg = report.svg_slice_bars(data.tasks[0], "auc", data.slice_features)
  assert svg.count('class="bar"') == 5
  assert "overall 0.6789" in svg and 'class="baseline-tick"' in svg
  assert "(n=400)" in svg


# --------------------------------------------------------------------------- CLI errors


def test_report_on_a_root_without_metadata_fails_naming_the_root(tmp_path):
  root = tmp_path / "never_ran"
  result = subprocess.run([sys.executable, "-m", "cli.main", "report", "--pipeline-root",
                           str(root)], capture_output=True, text=True, timeout=120,
                          cwd=PROJECT_DIR)
  assert result.returncode == 1
  assert result.stderr.strip().startswith(f"error: no evaluation in pipeline root {root}")
  assert not os.path.exists(root / "report.html")


def test_report_on_a_run_without_evaluator_fails_naming_the_root(tmp_path):
  from ml_metadata.metadata_store import metadata_store
  from ml_metadata.proto import metadata_store_pb2

  from cli.commands.report import report_after_run
  from cli.main import main
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = str(tmp_path / "metadata.sqlite")
  metadata_store.MetadataStore(config)   # an empty store, as a run that failed early leaves
  with pytest.raises(SystemExit) as exit_:
    main(["report", "--pipeline-root", str(tmp_path)])
  assert str(exit_.value) == (f"error: no evaluation in pipeline root {tmp_path}: ML Metadata "
                              "records no finished Evaluator run (did the pipeline stop "
                              "before the Evaluator?)")
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    report_after_run(str(tmp_path), since=0.0, failed=True)
  assert out.getvalue().strip() == (
      "no report: the run stopped before the Evaluator finished, so no evaluation exists "
      f"for this run in {tmp_path}")


# --------------------------------------------------------------------------- a real run


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars")
WINDOW = (1280, 2400)


def _chromium() -> str:
  path = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
  if not path:
    pytest.fail("headless Chromium is needed to check the report renders: install Debian's "
                "chromium package (apt-get install -y chromium); .ci/run does this")
  return path


def test_without_chromium_the_rendering_tests_fail_saying_what_to_install(monkeypatch):
  exists = os.path.exists
  monkeypatch.setattr(os.path, "exists", lambda p: p != "/usr/bin/chromium" and exists(p))
  monkeypatch.setattr(shutil, "which", lambda name: None)
  with pytest.raises(pytest.fail.Exception, match="install Debian's chromium package"):
    _chromium()


def _run_chromium(tmp_path, *args) -> subprocess.CompletedProcess:
  user_dir = tmp_path / f"chromium-profile-{len(os.listdir(tmp_path))}"
  result = subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={user_dir}", *args],
                          capture_output=True, text=True, timeout=180)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _latest_evaluation(pipeline_root):
  """The newest finished Evaluator execution's ModelEvaluation URI and blessing, read from
  ML Metadata here rather than through report.metadata."""
  from ml_metadata.metadata_store import metadata_store
  from ml_metadata.proto import metadata_store_pb2
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = os.path.join(pipeline_root, "metadata.sqlite")
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  store = metadata_store.MetadataStore(config)
  done = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
  executions = [e for e in store.get_executions_by_type(
      "tfx.components.evaluator.component.Evaluator") if e.last_known_state in done]
  latest = max(executions, key=lambda e: e.id)
  outputs = {e.path.steps[0].key: e.artifact_id
             for e in store.get_events_by_execution_ids([latest.id])
             if e.type == metadata_store_pb2.Event.OUTPUT}
  evaluation, = store.get_artifacts_by_id([outputs["evaluation"]])
  blessed = None
  if "blessing" in outputs:
    blessing, = store.get_artifacts_by_id([outputs["blessing"]])
    if "blessed" in blessing.custom_properties:
      blessed = bool(blessing.custom_properties["blessed"].int_value)
  return evaluation.uri, blessed


@pytest.fixture(scope="module")
def rendered(pipeline_run, tmp_path_factory):
  """`aitm report` on the session's pipeline run, then Chromium's DOM and screenshot."""
  from cli.main import main
  tmp_path = tmp_path_factory.mktemp("report")
  page = tmp_path / "report.html"
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    main(["report", "--pipeline-root", pipeline_run.pipeline_root, "--output", str(page)])
  printed = out.getvalue().strip().splitlines()
  dom = _run_chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
  shot = tmp_path / "report.png"
  _run_chromium(tmp_path, f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={shot}",
                page.as_uri())
  return dict(printed=printed, page=page, dom=Page(dom), dom_text=dom, screenshot=shot,
              root=pipeline_run.pipeline_root)


def test_report_command_prints_the_page_path(rendered):
  assert rendered["printed"] == [f"evaluation report: {rendered['page']}"]
  assert os.path.getsize(rendered["page"]) > 5000


def test_rendered_tables_hold_tfma_numbers(rendered):
  import tensorflow_model_analysis as tfma
  from tensorflow_model_analysis.writers import eval_config_writer
  uri, _ = _latest_evaluation(rendered["root"])
  dom = rendered["dom"]
  assert uri in dom.text
  eval_config = eval_config_writer.load_eval_run(uri)[0]
  baselines = {spec.name for spec in eval_config.model_specs if spec.is_baseline}
  overall_auc = {}
  for record in tfma.load_metrics(uri):
    if not record.slice_key.single_slice_keys:
      for kv in record.metric_keys_and_values:
        if kv.key.name == "auc" and not kv.key.is_diff and kv.key.model_name not in baselines:
          overall_auc[kv.key.output_name] = kv.value.double_value.value
  assert set(overall_auc) == {"ctr", "cvr"}
  for task, auc in overall_auc.items():
    assert task in dom.tables, f"no table for task {task}"
    rows = dom.body_rows(task)
    assert rows[0][0] == "Overall"
    shown = rows[0][1]["auc"][0]
    assert abs(float(shown) - auc) < 5e-5, (task, shown, auc)
    assert float(rows[0][1]["auc"][2]["data-value"]) == pytest.approx(auc, abs=1e-12)
    assert len(rows) >= 3                                  # Overall and the pid values
    assert {"examples", "AUC", "AUC-PR"} <= set(dom.head(task))


def test_rendered_page_has_plots_or_says_they_are_missing(rendered):
  import tensorflow_model_analysis as tfma
  uri, _ = _latest_evaluation(rendered["root"])
  dom = rendered["dom"]
  assert dom.svgs.count("plot bars") == 2                 # AUC by slice, per task
  assert dom.svg_children > 20                            # bars, ticks, labels
  plotted = {(kv.key.output_name, kv.key.model_name): kv.value
             for record in tfma.load_plots(uri) if not record.slice_key.single_slice_keys
             for kv in record.plot_keys_and_values}
  for task in ("ctr", "cvr"):
    has_calibration = any(value.calibration_histogram_buckets.buckets
                          for (output, _), value in plotted.items() if output == task)
    has_roc = any(value.confusion_matrix_at_thresholds.matrices
                  for (output, _), value in plotted.items() if output == task)
    assert ((task, "plot calibration") in dom.plots) == has_calibration
    assert ((task, "plot roc") in dom.plots) == has_roc
    assert ((task, "missing calibration") in dom.missing) == (not has_calibration)
    assert ((task, "missing roc") in dom.missing) == (not has_roc)


def test_rendered_header_names_the_run_and_the_verdict(rendered):
  _, blessed = _latest_evaluation(rendered["root"])
  text = rendered["dom"].text
  assert "pipeline aitm" in text
  assert "Trainer/model/" in text
  expected = {True: "BLESSED", False: "NOT BLESSED", None: "not validated"}[blessed]
  assert f"Blessing {expected}" in text


def test_screenshot_is_a_non_trivial_png(rendered):
  data = rendered["screenshot"].read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n"
  width, height = struct.unpack(">II", data[16:24])
  assert (width, height) == WINDOW
  # Decompressed scanlines of a blank page repeat a few byte values; tables and plots don't.
  pixels, offset = b"", 8
  while offset < len(data):
    length, kind = struct.unpack(">I4s", data[offset:offset + 8])
    if kind == b"IDAT":
      pixels += data[offset + 8:offset + 8 + length]
    offset += 12 + length
  raw = zlib.decompress(pixels)
  assert len(set(raw)) > 100
  assert len(data) > 50_000


def test_run_ends_by_printing_the_report_path(pipeline_run):
  from cli.commands.report import report_after_run
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    report_after_run(pipeline_run.pipeline_root, since=0.0)
  path = os.path.join(os.path.abspath(pipeline_run.pipeline_root), "report.html")
  assert out.getvalue().strip().splitlines()[-1] == f"evaluation report: {path}"
  assert os.path.getsize(path) > 5000


def test_warnings_that_the_numbers_may_not_measure_the_model_come_first():
  import dataclasses
  warning = ("ctr eval AUC 0.240 is below 0.5: the model ranks the eval split worse than "
             "chance <split>")
  html = report.render_page(dataclasses.replace(_sample(), warnings=[warning]))
  page = Page(html)
  assert "These numbers may not measure the model" in html
  assert "chance &lt;split&gt;" in html
  assert html.index('id="warnings"') < html.index('id="verdict"')
  assert 'id="warnings"' not in report.render_page(_sample())
  assert page  # parses


def test_warnings_read_the_evaluated_examples_statistics(tmp_path):
  """An eval AUC below chance and label rates far apart, from the StatisticsGen output
  of the examples the evaluation read."""
  from tensorflow_metadata.proto.v0 import statistics_pb2
  from report.evaluation import _warnings
  for split, rate in (("train", 0.048), ("eval", 0.063)):
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats.datasets.add(num_examples=100_000)
    feature = dataset.features.add()
    feature.path.step.append("clk")
    feature.num_stats.mean = rate
    os.makedirs(tmp_path / f"Split-{split}")
    (tmp_path / f"Split-{split}" / "FeatureStats.pb").write_bytes(stats.SerializeToString())
  ctr = TaskResult("ctr", [_row([], example_count=100_000, auc=0.31)], label="clk")
  warnings = _warnings([ctr], None, str(tmp_path))
  assert [w.split(":")[0] for w in warnings] == ["ctr eval AUC 0.310 is below 0.5",
                                                 "clk rate 6.30% in eval, 4.80% in train"]
  assert _warnings([ctr], None, None) == [warnings[0]]


def test_the_session_runs_report_reads_its_statistics_and_has_no_warnings(pipeline_run):
  from report.metadata import find_evaluation
  record = find_evaluation(pipeline_run.pipeline_root)
  assert record.statistics_uri and os.path.isdir(
      os.path.join(record.statistics_uri, "Split-eval"))
  assert report.load_report(pipeline_run.pipeline_root).warnings == []


def test_tasks_come_in_funnel_order_not_by_name():
  """click -> cart -> buy: the page's tables follow the funnel, as the run summary does
  (sorted by name they would read buy, cart, click)."""
  from models.config import load_config
  from models.eval_config import make_eval_config
  from pipeline import configs
  from report.evaluation import task_order
  config = load_config(os.path.join(configs.PROJECT_DIR, "configs", "aitm_click_cart_buy.config"))
  funnel = [task.name for task in config.tasks]
  assert funnel != sorted(funnel)
  assert task_order(make_eval_config(config, gate=True)) == funnel
  assert task_order(make_eval_config(config, gate=False)) == funnel
