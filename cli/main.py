"""`aitm`: generate data, run the TFX pipeline locally, compare models, compile it for
Kubeflow, serve the pushed model over TF Serving's gRPC API and query it."""

import os

# Before TensorFlow is imported anywhere: TFX 1.16 components expect Keras 2.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

# google-cloud libraries warn about Python 3.10 on import; TFX 1.16 needs it.
warnings.filterwarnings("ignore", category=FutureWarning)
# ... and again in each process of a multi-process DirectRunner.
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")

import argparse  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from pipeline import configs  # noqa: E402
from models.gate_thresholds import DEFAULT_MAX_AUC_DROP, DEFAULT_MIN_AUC  # noqa: E402
from models.training import TrainingConfig  # noqa: E402
from pipeline.vertex_training import DEFAULT_MACHINE_TYPE  # noqa: E402
from serving.limits import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_CONCURRENT_RPCS  # noqa: E402

# The first line of a failure that names the bad input, however deep Beam or
# TFX wrapped it.
_DATA_ERROR = re.compile(r"(Bad input[^\n]*|(?:ExampleValidator found anomalies|"
                         r"DistributionValidator found drift)[^\n]*(?:\n  [^\n]+)*)")


def _generate_data(args):
  from datagen import taobao
  try:
    repeats = taobao.Repeats(share=args.repeat_share)
  except ValueError as e:
    sys.exit(f"error: --repeat-share: {e}")
  if args.spans:
    if args.truth:
      sys.exit("error: --truth is written for a single file, not with --spans")
    shift = None
    if args.shift:
      column, sep, factor = args.shift.partition("=")
      try:
        shift = (column, float(factor))
      except ValueError:
        sep = ""
      if not sep:
        sys.exit(f"error: --shift {args.shift!r}: write FEATURE=FACTOR, e.g. price=3")
    try:
      paths = taobao.write_spans(args.out, args.rows, args.spans, args.seed, shift=shift,
                                 shift_from=args.shift_from_span, with_cart=args.with_cart,
                                 repeats=repeats)
    except ValueError as e:
      sys.exit(f"error: {e}")
    print(f"wrote {args.spans} spans of {args.rows:,} rows to {args.out}/span-1 .. "
          f"span-{args.spans}" + (f"; {shift[0]} x {shift[1]:g} from span "
                                  f"{args.shift_from_span} on" if shift else ""))
    return
  if args.shift:
    sys.exit("error: --shift needs --spans")
  path = taobao.write_csv(args.out, args.rows, args.seed, truth_path=args.truth,
                          with_cart=args.with_cart, repeats=repeats)
  print(f"wrote {args.rows:,} rows to {path}")


def _training_settings(args):
  """`--learning-rate` etc.: they win over the config file's settings."""
  settings = {}
  for key in ("learning_rate", "batch_size", "max_epochs", "patience", "seed"):
    value = getattr(args, key)
    if value is not None:
      settings[key] = value
  try:
    TrainingConfig.from_dict(settings)  # refuse bad settings before any work
  except ValueError as e:
    sys.exit(f"error: {e}")
  return settings


def _load_configs(paths):
  """Every config read and checked before any work; the first error ends the command."""
  from models.config import ConfigError, load_config
  try:
    return [load_config(path) for path in paths]
  except ConfigError as e:
    sys.exit(f"error: {e}")


def _check_schema(config, schema_path):
  from models.config import ConfigError
  from pipeline.schema_check import check_schema
  try:
    check_schema(config, schema_path)
  except ConfigError as e:
    sys.exit(f"error: {e}")


def _explain_failure(e: Exception):
  match = _DATA_ERROR.search(str(e))
  if not match:
    raise e
  # The cause a user can act on, not Beam's and TFX's stack.
  sys.exit(f"error: {match.group(1)}\nthe run failed; nothing was pushed")


def _span_settings(args, data):
  """create_pipeline's span and split arguments for --data (span-N/ directories or plain
  CSVs) and --split."""
  from components.label_blind_split import Split
  from pipeline.spans import spans_in
  found = spans_in(data) if args.data_format == "csv" else []
  split = args.split
  if not found:
    if args.span is not None or args.train_spans is not None or split.kind == "span":
      sys.exit(f"error: --span, --train-spans and --split span need --data with span-N/ "
               f"directories; {data} has none")
    return {"split": split}
  if args.span is not None and args.span not in found:
    sys.exit(f"error: --span {args.span}: {data} has spans {', '.join(map(str, found))}")
  span = args.span if args.span is not None else found[-1]
  if split.kind == "span":
    split = Split("span", span=args.span, train_spans=args.train_spans)
    earlier = [s for s in found if s < span][-(args.train_spans or len(found)):]
    if not earlier:
      sys.exit(f"error: --split span evaluates span {span} on a model trained on the spans "
               f"before it, and {data} has none before it")
    print(f"{data}: spans {', '.join(map(str, found))}; split by span: span {span} evaluates, "
          f"span(s) {', '.join(map(str, earlier))} train (ExampleGen reads them all; no "
          "drift check)")
    return {"split": split}
  train_spans = args.train_spans or 1
  print(f"{data}: spans {', '.join(map(str, found))}; reading span {span}"
        + (f", training on the last {train_spans} ingested spans up to it"
           if train_spans > 1 else ""))
  return dict(spans=True, span=args.span, train_spans=train_spans,
              drift_check=not args.no_drift_check, split=split)


def _run(args):
  config, = _load_configs([args.config])  # before TensorFlow is imported: fails fast
  _check_schema(config, args.schema)
  training = _training_settings(args)
  beam_args = _beam_args(args, configs.BEAM_PIPELINE_ARGS)
  from datagen import taobao
  from models.eval_config import thresholds_from_flags
  from pipeline.local_runner import run_local
  from report.run_summary import summarize
  try:
    min_auc = thresholds_from_flags(config, "--min-auc", args.min_auc)
    max_auc_drop = thresholds_from_flags(config, "--max-auc-drop", args.max_auc_drop)
  except ValueError as e:
    sys.exit(f"error: {e}")

  data = args.data
  if args.data_format == "aliccp":
    from components.aliccp_example_gen import check_config
    from models.config import ConfigError
    if data is None:
      sys.exit("error: --data-format aliccp needs --data, the folder of Ali-CCP's raw files")
    try:
      check_config(config)
    except ConfigError as e:
      sys.exit(f"error: {e}")
  if data is None:
    data = configs.DEFAULT_DATA_DIR
    if os.path.exists(os.path.join(data, "data.csv")):
      print(f"no --data given: using {data}/data.csv, generated earlier (delete it to regenerate)")
    else:
      print(f"no --data given: generating {args.rows:,} rows into {data}")
      taobao.write_csv(data, args.rows, configs.DEFAULT_SEED)
  elif not os.path.isdir(data):
    sys.exit(f"error: --data {data} is not a directory of CSV files")
  _check_split(args.split, config)
  span_args = _span_settings(args, data)

  start = time.time()
  try:
    metadata = run_local(config=config, data_root=data, pipeline_root=args.pipeline_root,
                         serving_dir=args.serving_dir, model_name=args.model_name,
                         schema_path=args.schema, training=training, min_auc=min_auc,
                         max_auc_drop=max_auc_drop, enable_cache=not args.no_cache,
                         beam_pipeline_args=beam_args, data_format=args.data_format,
                         keep_versions=args.keep_versions, warm_start=args.warm_start,
                         **span_args)
    summary = summarize(metadata, labels=config.labels)
  except Exception as e:  # noqa: BLE001 - re-raised unless it names bad input
    _report_after_run(args.pipeline_root, since=start, failed=True)
    _explain_failure(e)
  print(f"\n{config.source}: pipeline finished in {time.time() - start:.0f}s")
  print(summary.table())
  if summary.pushed_dir:
    base = os.path.dirname(summary.pushed_dir.rstrip("/"))
    print("\nserve it over TF Serving's gRPC API (the local stand-in; in production "
          "tensorflow/serving, kubeflow/serving/):\n"
          f"  aitm serve --model-base-path {base} --model-name {args.model_name} --port 8500\n"
          f"  aitm predict --server localhost:8500 --model-name {args.model_name} "
          "--input rows.csv")
  _report_after_run(args.pipeline_root, since=start)
  if summary.blessed is False:
    print("\nthe model was not blessed (see above why), so it was not pushed")
    sys.exit(configs.EXIT_NOT_BLESSED)


def _report_after_run(pipeline_root, since, failed=False):
  """The run's evaluation as an HTML page; its path is the last line printed."""
  from report import NoEvaluation, write_report
  try:
    path = write_report(pipeline_root, since=since)
  except NoEvaluation:
    why = "the run stopped before the Evaluator finished, so " if failed else ""
    print(f"\nno report: {why}no evaluation exists for this run in {pipeline_root}")
    return
  except Exception as e:  # noqa: BLE001 - the report must not hide the run's own outcome
    print(f"\nno report: writing it failed: {type(e).__name__}: {e}")
    return
  print(f"\nevaluation report: {os.path.abspath(path)}")


def _report(args):
  from report import NoEvaluation, write_report
  try:
    path = write_report(args.pipeline_root, args.output)
  except NoEvaluation as e:
    sys.exit(f"error: {e}")
  print(f"evaluation report: {os.path.abspath(path)}")


def _compare(args):
  configs_ = _load_configs(args.configs)
  for config in configs_:
    _check_schema(config, args.schema)
  training = _training_settings(args)
  beam_args = _beam_args(args, configs.BEAM_PIPELINE_ARGS)
  from report import compare

  if not os.path.isdir(args.data):
    sys.exit(f"error: --data {args.data} is not a directory of CSV files")
  for config in configs_:
    _check_split(args.split, config)
  try:
    scores = compare.compare(configs_, data_root=args.data, pipeline_root=args.pipeline_root,
                             training=training, beam_pipeline_args=beam_args,
                             split=args.split)
  except ValueError as e:
    sys.exit(f"error: {e}")
  except Exception as e:  # noqa: BLE001 - re-raised unless it names bad input
    _explain_failure(e)
  print(f"\nmodels compared on {args.data} (TFMA AUC on the same eval split):\n")
  print(compare.table(scores))


def _beam_args(args, defaults):
  """`--beam-args` (repeatable, shell-quoted) over the defaults, checked by Beam."""
  from pipeline import beam_options
  merged = beam_options.merge(defaults, beam_options.split(args.beam_args or []))
  try:
    beam_options.parse(merged)
  except ValueError as e:
    sys.exit(f"error: --beam-args: {e}")
  return merged


def _vertex_training(args):
  """--train-workers etc.: the Trainer as a Vertex AI custom job, or None."""
  wanted = [f for f in ("train_workers", "vertex_project", "vertex_region",
                        "train_machine_type") if getattr(args, f) is not None]
  if not wanted:
    return None
  from pipeline.vertex_training import VertexTraining
  missing = [f"--{f.replace('_', '-')}" for f in ("vertex_project", "vertex_region")
             if getattr(args, f) is None]
  if missing:
    sys.exit(f"error: training on Vertex AI ({', '.join('--' + f.replace('_', '-') for f in wanted)})"
             f" also needs {' and '.join(missing)}")
  try:
    return VertexTraining(project=args.vertex_project, region=args.vertex_region,
                          image=args.image, workers=args.train_workers or 1,
                          **({"machine_type": args.train_machine_type}
                             if args.train_machine_type else {}))
  except ValueError as e:
    sys.exit(f"error: {e}")


def _keep_versions_argument(parser):
  parser.add_argument("--keep-versions", type=_positive_int, default=configs.KEEP_VERSIONS,
                      help="complete model versions the Pusher keeps in the serving dir; "
                      f"older ones are deleted after a push (default {configs.KEEP_VERSIONS})")


def _warm_start_argument(parser, base):
  parser.add_argument("--warm-start", action="store_true", default=configs.WARM_START,
                      help=f"the Trainer starts from the weights of {base} when the "
                      "architecture matches (vocabulary rows remapped by token), else fresh, "
                      "saying why")


def _split_argument(parser):
  parser.add_argument("--split", type=_split, default=configs.SPLIT,
                      metavar="row|span|columns=NAME[,NAME]",
                      help="how ExampleGen cuts train from eval, never by the labels "
                      "(default %(default)s): row (4:1 by each row's file and place), "
                      "columns=user_id (rows "
                      "sharing those values stay together: users the model never saw), "
                      "span (--data holds span-N/: the newest span evaluates, the ones "
                      "before it train)")


def _check_split(split, config):
  try:
    split.check_columns([c.name for c in config.columns], config.labels, config.source)
  except ValueError as e:
    sys.exit(f"error: --split: {e}")


def _split(text):
  from components.label_blind_split import Split
  try:
    return Split.parse(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


def _default_repeat_share():
  from datagen.taobao import Repeats
  return Repeats().share


def _positive_int(text):
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
  return value


def _rollback(args):
  from serving import version_store
  base = os.path.join(args.serving_dir, args.model_name)
  try:
    if args.restore is not None:
      path = version_store.restore(base, args.restore)
      print(f"restored version {args.restore} to {path}; it is served again if it is the "
            "newest version")
      return
    done = version_store.rollback(base, args.to)
  except version_store.VersionStoreError as e:
    sys.exit(f"error: {e}")
  print(f"{base}: version {done.served_now} is now the newest, served by TF Serving's latest "
        f"policy (was {done.served_before}); moved {', '.join(map(str, done.moved))} to "
        f"{done.rolled_back_dir} (undo: aitm rollback --serving-dir {args.serving_dir} "
        f"--model-name {args.model_name} --restore VERSION)")


def _schedule_kfp(args):
  from kubeflow.schedule import schedule
  params = {}
  for item in args.param or []:
    key, sep, value = item.partition("=")
    if not sep:
      sys.exit(f"error: --param {item!r}: write NAME=VALUE")
    params[key] = value
  if not os.path.exists(args.package):
    sys.exit(f"error: --package {args.package} does not exist (write it with aitm compile-kfp)")
  import kfp
  try:
    run = schedule(kfp.Client(host=args.host, namespace=args.namespace), args.package,
                   cron=args.cron, experiment=args.experiment, name=args.name, params=params,
                   namespace=args.namespace)
  except ValueError as e:
    sys.exit(f"error: {e}")
  print(f"recurring run {args.name!r} ({getattr(run, 'recurring_run_id', '?')}): "
        f"{args.package} at cron {args.cron!r}, one run at a time, no catch-up")


def _compile_kfp(args):
  from kubeflow.runner import compile_pipeline
  config, = _load_configs([args.config])
  _check_split(args.split, config)
  try:
    path = compile_pipeline(config=config, output_file=args.output, image=args.image,
                            pipeline_root=args.pipeline_root, data_root=args.data,
                            serving_dir=args.serving_dir, model_name=args.model_name,
                            train_steps=args.train_steps,
                            beam_pipeline_args=_beam_args(args, configs.BEAM_PIPELINE_ARGS),
                            vertex_training=_vertex_training(args),
                            keep_versions=args.keep_versions, spans=args.spans,
                            warm_start=args.warm_start, split=args.split)
  except ValueError as e:
    sys.exit(f"error: {e}")
  print(f"wrote the Kubeflow Pipelines v2 spec to {path} (image {args.image}; runtime "
        "parameters data_root, train_args, push_destination)")


def _serve(args):
  from serving.model_versions import ModelSource, VersionPolicy, read_model_config_file
  from serving.server import LocalModelServer
  sources = None
  if args.model_config_file:
    if args.model_base_path:
      sys.exit("error: give --model-config-file or --model-base-path, not both")
    try:
      for source in read_model_config_file(args.model_config_file):
        print(f"[serve] {source.name}: versions under {source.base_path}")
    except (OSError, ValueError) as e:
      sys.exit(f"error: {e}")
  else:
    if not args.model_base_path:
      sys.exit("error: --model-base-path (the Pusher's <serving-dir>/<model-name>) or "
               "--model-config-file is required")
    sources = [ModelSource(args.model_name, os.path.abspath(args.model_base_path),
                           VersionPolicy(latest=args.num_versions))]
    print(f"[serve] {args.model_name}: versions under {sources[0].base_path}")
  try:
    server = LocalModelServer(sources, port=args.port, host=args.host,
                              poll_wait_seconds=args.file_system_poll_wait_seconds,
                              config_file=args.model_config_file,
                              max_batch_size=args.max_batch_size,
                              max_concurrent_rpcs=args.max_concurrent_rpcs)
    server.start()
  except (OSError, ValueError) as e:
    sys.exit(f"error: {e}")
  print("[serve] local stand-in for TF Serving (development and tests); in production "
        "run tensorflow/serving (kubeflow/serving/). Ctrl-C stops it.", flush=True)
  try:
    server.wait()
  except KeyboardInterrupt:
    server.stop()


def _predict(args):
  import csv
  import json
  from serving.client import ServingClient, ServingError
  from serving.request_rows import RowError, read_rows
  source = "stdin" if args.input == "-" else args.input
  if args.input != "-" and not os.path.isfile(args.input):
    sys.exit(f"error: --input {args.input} is not a file")
  try:
    with ServingClient(args.server, args.model_name, timeout=args.timeout) as client:
      if args.wait:
        client.wait_until_available(args.wait, args.version, args.version_label)
      rows = list(read_rows(args.input, args.format))
      scores = client.predict(rows, signature=args.signature, version=args.version,
                              label=args.version_label, batch_size=args.batch_size,
                              source=source)
      version = client.last_version
  except (ServingError, RowError, TimeoutError, ValueError) as e:
    sys.exit(f"error: {e}")
  print(f"{len(rows):,} rows scored by {args.model_name} version {version}", file=sys.stderr)
  tasks = sorted(scores)
  out = open(args.output, "w", newline="") if args.output else sys.stdout
  try:
    if (args.output or "").endswith((".jsonl", ".json")):
      for i in range(len(rows)):
        out.write(json.dumps({t: float(scores[t][i]) for t in tasks}) + "\n")
    else:
      writer = csv.writer(out)
      writer.writerow(tasks)
      writer.writerows(zip(*(("%.6g" % v for v in scores[t]) for t in tasks)))
  finally:
    if args.output:
      out.close()
      print(f"wrote {len(rows):,} predictions ({', '.join(tasks)}) to {args.output}",
            file=sys.stderr)


def _beam_arguments(parser, default):
  parser.add_argument("--beam-args", action="append", metavar='"--flag=value ..."',
                      help="Beam pipeline options for ExampleGen, StatisticsGen, Transform and "
                      f"Evaluator, over the default ({default}); repeatable, e.g. "
                      '"--direct_running_mode=multi_processing --direct_num_workers=2" or '
                      "Dataflow/Flink/Spark options (README: Beam at scale)")


def _training_arguments(parser):
  group = parser.add_argument_group("training (each wins over the config file)")
  group.add_argument("--learning-rate", type=float, help="a constant learning rate")
  group.add_argument("--batch-size", type=int, help="default: data_config.batch_size, else "
                     "sized from the train rows")
  group.add_argument("--max-epochs", type=int, help="default: data_config.num_epochs, else "
                     "sized from the train rows")
  group.add_argument("--patience", type=int,
                     help="epochs without eval AUC improvement before stopping (default "
                     f"{TrainingConfig().patience})")
  group.add_argument("--seed", type=int, help="seeds weight initialization, dropout and the "
                     "input shuffle: the same seed, data and settings train the same model "
                     "(default: a fresh seed each run)")


def _version() -> str:
  from importlib import metadata
  try:
    return metadata.version("aitm-tfx")
  except metadata.PackageNotFoundError:
    return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="aitm", description=__doc__,
      epilog=f"`aitm run` exits 0 when it pushed a model, {configs.EXIT_NOT_BLESSED} when it "
      "trained and evaluated one that was not blessed (nothing pushed), 1 on an error "
      "(nothing pushed).")
  parser.add_argument("--version", action="version", version=f"aitm {_version()}")
  sub = parser.add_subparsers(dest="command", required=True)

  gen = sub.add_parser("generate-data", help="write synthetic Taobao impressions as CSV")
  gen.add_argument("--out", required=True, help="directory to write data.csv into")
  gen.add_argument("--rows", type=int, default=configs.DEFAULT_ROWS)
  gen.add_argument("--seed", type=int, default=configs.DEFAULT_SEED)
  gen.add_argument("--truth", help="also write the true p_click,p_buy per row to this file")
  gen.add_argument("--with-cart", action="store_true",
                   help="add the funnel step `cart` between click and purchase")
  gen.add_argument("--spans", type=_positive_int,
                   help="write OUT/span-1 .. span-K (--rows each), one world's consecutive days")
  gen.add_argument("--shift", metavar="FEATURE=FACTOR",
                   help="with --spans: multiply a numeric feature (price) from "
                   "--shift-from-span on, clipped to its range")
  gen.add_argument("--shift-from-span", type=_positive_int, default=2)
  gen.add_argument("--repeat-share", type=float, default=_default_repeat_share(),
                   help="share of each user's impressions that go to a few ads of the "
                   "user's own, shown again and again (default %(default)s; 0: no repeated "
                   "user-ad pairs beyond chance)")
  gen.set_defaults(func=_generate_data)

  run = sub.add_parser("run", help="run the TFX pipeline locally (LocalDagRunner)")
  run.add_argument("--config", default=configs.CONFIG_PATH,
                   help="EasyRec config, protobuf text format (default: %(default)s)")
  run.add_argument("--schema", default=configs.SCHEMA_PATH,
                   help="curated raw-data schema ExampleValidator checks against")
  run.add_argument("--data", help="directory of CSV files with a header "
                   f"(default: generate {configs.DEFAULT_ROWS:,} rows)")
  run.add_argument("--data-format", choices=("csv", "aliccp"), default="csv",
                   help="csv: CSV files with a header; aliccp: Ali-CCP's raw sample_skeleton_* "
                   "+ common_features_* files (with --config configs/aitm_aliccp.config "
                   "--schema schemas/aliccp_raw.pbtxt)")
  run.add_argument("--rows", type=int, default=configs.DEFAULT_ROWS,
                   help="rows to generate when --data is not given")
  run.add_argument("--pipeline-root", default=configs.DEFAULT_PIPELINE_ROOT)
  run.add_argument("--serving-dir", default=configs.DEFAULT_SERVING_DIR)
  run.add_argument("--model-name", default=configs.MODEL_NAME)
  _training_arguments(run)
  run.add_argument("--min-auc", action="append", metavar="[TASK=]AUC",
                   help="blessing floor of the eval AUC, for every task or one (repeat the "
                   f"flag; default {DEFAULT_MIN_AUC})")
  run.add_argument("--max-auc-drop", action="append", metavar="[TASK=]DROP",
                   help="how far the eval AUC may fall below the latest blessed model's, "
                   f"for every task or one (repeat the flag; default {DEFAULT_MAX_AUC_DROP})")
  run.add_argument("--no-cache", action="store_true", help="rerun every component")
  run.add_argument("--span", type=int, help="with --data holding span-N/ directories: the "
                   "span to read (default: the newest)")
  run.add_argument("--train-spans", type=_positive_int,
                   help="train on the last K spans ingested up to this one (default 1); "
                   "with --split span, the K spans before the evaluated one (default all)")
  run.add_argument("--no-drift-check", action="store_true",
                   help="accept a span whose distribution moved from the previous span's")
  _split_argument(run)
  _warm_start_argument(run, "the latest blessed model trained on other data")
  _keep_versions_argument(run)
  _beam_arguments(run, "in-process DirectRunner, one worker")
  run.set_defaults(func=_run)

  cmp = sub.add_parser("compare", help="train several model configs on the same split and "
                       "print one table (per-task AUC, train time, parameters)")
  cmp.add_argument("--data", required=True, help="directory of CSV files with a header")
  cmp.add_argument("--configs", nargs="+", default=list(configs.PEER_CONFIGS),
                   help="EasyRec configs of one funnel (default: AITM and its peers)")
  cmp.add_argument("--schema", default=configs.SCHEMA_PATH)
  cmp.add_argument("--pipeline-root", default=configs.DEFAULT_COMPARE_ROOT)
  _split_argument(cmp)
  _training_arguments(cmp)
  _beam_arguments(cmp, "in-process DirectRunner, one worker")
  cmp.set_defaults(func=_compare)

  rep = sub.add_parser("report", help="render the latest evaluation of a pipeline root as a "
                       "self-contained HTML page (tables by task and slice, plots, blessing)")
  rep.add_argument("--pipeline-root", default=configs.DEFAULT_PIPELINE_ROOT,
                   help="the pipeline root of `aitm run` (default: %(default)s)")
  rep.add_argument("--output", help="HTML file to write (default: <pipeline-root>/"
                   "report.html, replaced by each run)")
  rep.set_defaults(func=_report)

  kfp = sub.add_parser("compile-kfp", aliases=["compile-kubeflow"],
                       help="write the pipeline as a Kubeflow Pipelines v2 spec "
                       "(KubeflowV2DagRunner)")
  kfp.add_argument("--output", "--out", default=configs.KFP_PACKAGE,
                   help=".json or .yaml (default %(default)s, what schedule-kfp reads)")
  kfp.add_argument("--image", default=configs.KUBEFLOW_IMAGE,
                   help="the image built from kubeflow/Dockerfile, in your registry")
  kfp.add_argument("--pipeline-root", required=True, help="e.g. gs://bucket/aitm/root")
  kfp.add_argument("--data", help="default of the data_root runtime parameter "
                   "(default: <pipeline-root>/data)")
  kfp.add_argument("--serving-dir", help="default of the push_destination runtime parameter "
                   "is <serving-dir>/<model-name> (default: <pipeline-root>/serving)")
  kfp.add_argument("--train-steps", type=int, help="default num_steps of the train_args "
                   "runtime parameter (default: the config's budget, early stopping)")
  kfp.add_argument("--config", default=configs.CONFIG_PATH, help="EasyRec config")
  kfp.add_argument("--model-name", default=configs.MODEL_NAME)
  _keep_versions_argument(kfp)
  kfp.add_argument("--spans", action="store_true", help="data_root holds span-N/ "
                   "directories: each run reads the newest (no drift check or training "
                   "window on Kubeflow)")
  _warm_start_argument(kfp, "the latest blessed model")
  _split_argument(kfp)
  kfp.add_argument("--train-workers", type=int, help="run the Trainer as a Vertex AI custom "
                   "job on this many workers (the chief included; the config must set "
                   "train_distribute: MultiWorkerMirroredStrategy when more than 1)")
  kfp.add_argument("--vertex-project", help="Google Cloud project of the training job")
  kfp.add_argument("--vertex-region", help="its region, e.g. us-central1")
  kfp.add_argument("--train-machine-type", help="each worker's machine (default "
                   f"{DEFAULT_MACHINE_TYPE})")
  _beam_arguments(kfp, "in-process DirectRunner in each component's pod")
  kfp.set_defaults(func=_compile_kfp)

  sch = sub.add_parser("schedule-kfp", help="run the compiled spec every day on Kubeflow "
                       "Pipelines (a recurring run)")
  sch.add_argument("--host", required=True, help="the KFP API, e.g. https://kfp.example.com")
  sch.add_argument("--package", default=configs.KFP_PACKAGE,
                   help="aitm compile-kfp's output (default %(default)s)")
  sch.add_argument("--cron", default="0 0 3 * * *",
                   help="6 fields, seconds first (KFP's cron); default %(default)r, daily at "
                   "03:00")
  sch.add_argument("--experiment", default="aitm")
  sch.add_argument("--name", default="aitm-daily")
  sch.add_argument("--namespace", help="the Kubeflow profile's namespace (multi-user KFP)")
  sch.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a runtime parameter for every run (data_root, train_args, "
                   "push_destination)")
  sch.set_defaults(func=_schedule_kfp)

  rb = sub.add_parser("rollback", help="serve an earlier pushed version: the newer ones move "
                      "to <serving-dir>/<model-name>/rolled_back/")
  rb.add_argument("--serving-dir", default=configs.DEFAULT_SERVING_DIR)
  rb.add_argument("--model-name", default=configs.MODEL_NAME)
  which = rb.add_mutually_exclusive_group()
  which.add_argument("--to", type=int, metavar="VERSION",
                     help="the version to serve (default: the one before the newest)")
  which.add_argument("--restore", type=int, metavar="VERSION",
                     help="move a rolled-back version back into place")
  rb.set_defaults(func=_rollback)

  srv = sub.add_parser("serve", help="serve pushed SavedModels over TF Serving's gRPC API "
                       "(a local stand-in for tensorflow/serving)")
  srv.add_argument("--model-base-path", help="the Pusher's <serving-dir>/<model-name>: "
                   "numeric version directories")
  srv.add_argument("--model-name", default=configs.MODEL_NAME)
  srv.add_argument("--model-config-file", help="TF Serving's ModelServerConfig (text "
                   "proto), e.g. kubeflow/serving/models.config; re-read when it changes")
  srv.add_argument("--port", type=int, default=8500, help="gRPC port (0: any free port)")
  srv.add_argument("--host", default="127.0.0.1", help="address to listen on")
  srv.add_argument("--num-versions", type=_positive_int, default=1,
                   help="versions kept loaded, newest first (TF Serving's latest policy)")
  srv.add_argument("--file-system-poll-wait-seconds", type=float, default=1.0,
                   help="how often the base path is checked for new versions")
  srv.add_argument("--max-batch-size", type=_positive_int, default=DEFAULT_MAX_BATCH_SIZE,
                   help="rows a Predict request may carry; more is INVALID_ARGUMENT "
                   "(default %(default)s)")
  srv.add_argument("--max-concurrent-rpcs", type=_positive_int,
                   default=DEFAULT_MAX_CONCURRENT_RPCS,
                   help="requests served at once; more get RESOURCE_EXHAUSTED "
                   "(default %(default)s)")
  srv.set_defaults(func=_serve)

  prd = sub.add_parser("predict", help="score rows of raw features through TF Serving's "
                       "gRPC API (TF Serving or `aitm serve`)")
  prd.add_argument("--server", default="localhost:8500", help="host:port of the gRPC API")
  prd.add_argument("--model-name", default=configs.MODEL_NAME)
  prd.add_argument("--input", required=True, help="CSV with a header or JSON lines "
                   "('-': stdin), columns as in the training data")
  prd.add_argument("--format", choices=("csv", "jsonl"), help="default: from the extension")
  prd.add_argument("--signature", default="serving_default",
                   choices=("serving_default", "serving_raw"))
  which = prd.add_mutually_exclusive_group()
  which.add_argument("--version", type=int, help="a model version (default: the newest)")
  which.add_argument("--version-label", help="a version label of the model config")
  prd.add_argument("--batch-size", type=int, default=256, help="rows per Predict call")
  prd.add_argument("--timeout", type=float, default=10.0, help="deadline per call, seconds")
  prd.add_argument("--wait", type=float, default=0.0,
                   help="first wait up to this many seconds for the model to be AVAILABLE")
  prd.add_argument("--output", help="CSV, or JSON lines when it ends in .jsonl "
                   "(default: CSV on stdout)")
  prd.set_defaults(func=_predict)
  return parser


def main(argv=None):
  args = build_parser().parse_args(argv)
  if args.func is not _generate_data:  # every other command loads TensorFlow
    from cli.tensorflow_import import import_tensorflow
    import_tensorflow()
  args.func(args)


if __name__ == "__main__":
  main()
