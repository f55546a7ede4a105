"""`aitm run`: the TFX pipeline on this machine (LocalDagRunner, pipeline/local_runner.py)."""

import os
import sys
import time

from cli import common_flags
from cli.commands.report import report_after_run
from cli.errors import explain_failure
from models.gate_thresholds import DEFAULT_MAX_AUC_DROP, DEFAULT_MIN_AUC
from pipeline import configs
from serving import defaults as serving_defaults

LOADS_TENSORFLOW = True


def add_parser(subparsers):
  """Adds `run` and its flags to `subparsers`; returns its parser."""
  parser = subparsers.add_parser("run", help="run the TFX pipeline locally (LocalDagRunner)")
  parser.add_argument("--config", default=configs.CONFIG_PATH,
                      help="EasyRec config, protobuf text format (default: %(default)s)")
  common_flags.add_schema(parser)
  common_flags.add_edit_config_json(parser)
  parser.add_argument("--data", help="directory of CSV files with a header "
                      f"(default: generate {configs.DEFAULT_ROWS:,} rows)")
  parser.add_argument("--data-format", choices=("csv", "aliccp"), default="csv",
                      help="csv: CSV files with a header; aliccp: Ali-CCP's raw "
                      "sample_skeleton_* + common_features_* files (with --config "
                      "configs/aitm_aliccp.config --schema schemas/aliccp_raw.pbtxt; "
                      "default: %(default)s)")
  parser.add_argument("--rows", type=int, default=configs.DEFAULT_ROWS,
                      help="rows to generate when --data is not given (default: %(default)s)")
  parser.add_argument("--pipeline-root", default=configs.DEFAULT_PIPELINE_ROOT,
                      help="where the run's artifacts and ML Metadata go (default: "
                      "%(default)s)")
  common_flags.add_serving_dir(parser)
  common_flags.add_model_name(parser)
  common_flags.add_training(parser)
  _add_thresholds(parser)
  parser.add_argument("--no-cache", action="store_true", help="rerun every component")
  _add_spans(parser)
  common_flags.add_split(parser)
  common_flags.add_warm_start(parser, "the latest blessed model trained on other data")
  common_flags.add_keep_versions(parser)
  common_flags.add_beam_args(parser, "in-process DirectRunner")
  parser.add_argument("--bulk-infer", metavar="DIR",
                      help="also score the candidate CSV files in DIR (labels optional) with "
                      "TFX's BulkInferrer, once the Evaluator blessed the model; the "
                      "summary says where the scored tf.Examples are")
  return parser


def _add_thresholds(parser):
  parser.add_argument("--min-auc", action="append", metavar="[TASK=]AUC",
                      help="blessing floor of the eval AUC, for every task or one (repeat the "
                      f"flag; default {DEFAULT_MIN_AUC})")
  parser.add_argument("--max-auc-drop", action="append", metavar="[TASK=]DROP",
                      help="how far the eval AUC may fall below the latest blessed model's, "
                      "for every task or one (repeat the flag; default "
                      f"{DEFAULT_MAX_AUC_DROP})")


def _add_spans(parser):
  parser.add_argument("--span", type=int, help="with --data holding span-N/ directories: "
                      "the span to read (default: the newest)")
  parser.add_argument("--train-spans", type=common_flags.positive_int,
                      help="train on the last K spans ingested up to this one (default "
                      f"{configs.TRAIN_SPANS}); with --split span, the K spans before the "
                      "evaluated one (default all)")
  parser.add_argument("--no-drift-check", action="store_true",
                      help="accept a span whose distribution moved from the previous span's")


def run(args):
  """Runs the pipeline locally on `--data` (else the demo data), then prints its summary
  and writes its report; see _print_outcome for the exit status."""
  config, = common_flags.load_configs([args.config], args.schema,
                                     common_flags.config_edits(args))
  training = common_flags.training_settings(args)
  beam_args = common_flags.beam_args(args)
  from pipeline.local_runner import run_local
  from report.run_summary import summarize
  min_auc, max_auc_drop = _thresholds(args, config)
  data = _data_root(args, config)
  common_flags.check_split(args.split, config)
  span_args = _span_arguments(args, data)
  bulk_infer = _bulk_infer_dir(args)

  start = time.time()
  try:
    metadata = run_local(config=config, data_root=data, pipeline_root=args.pipeline_root,
                         serving_dir=args.serving_dir, model_name=args.model_name,
                         schema_path=args.schema, training=training, min_auc=min_auc,
                         max_auc_drop=max_auc_drop, enable_cache=not args.no_cache,
                         beam_pipeline_args=beam_args, data_format=args.data_format,
                         keep_versions=args.keep_versions, warm_start=args.warm_start,
                         bulk_infer=bulk_infer, **span_args)
    summary = summarize(metadata, labels=config.labels)
  except Exception as e:  # noqa: BLE001 - re-raised unless it names bad input
    report_after_run(args.pipeline_root, since=start, failed=True)
    explain_failure(e)
  _print_outcome(args, config, summary, start)


def _thresholds(args, config):
  """The blessing's (min_auc, max_auc_drop): task -> AUC, from the flags and the config."""
  from models.eval_config import thresholds_from_flags
  try:
    return (thresholds_from_flags(config, "--min-auc", args.min_auc),
            thresholds_from_flags(config, "--max-auc-drop", args.max_auc_drop))
  except ValueError as e:
    sys.exit(f"error: {e}")


def _data_root(args, config):
  """--data, checked against --data-format; without it, the demo data."""
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
    return _demo_data(args.rows)
  if not os.path.isdir(data):
    sys.exit(f"error: --data {data} is not a directory of CSV files")
  return data


def _demo_data(rows):
  """The generated data's directory, written on the first run without --data only."""
  from datagen import taobao
  data = configs.DEFAULT_DATA_DIR
  path = os.path.join(data, taobao.DATA_FILE)
  if os.path.exists(path):
    print(f"no --data given: using {path}, generated earlier (delete it to regenerate)")
  else:
    print(f"no --data given: generating {rows:,} rows into {data}")
    taobao.write_csv(data, rows, configs.DEFAULT_SEED)
  return data


def _bulk_infer_dir(args):
  """--bulk-infer as an absolute directory (ExampleGen's input_base), or None."""
  if args.bulk_infer is None:
    return None
  if not os.path.isdir(args.bulk_infer):
    sys.exit(f"error: --bulk-infer {args.bulk_infer} is not a directory of CSV files")
  return os.path.abspath(args.bulk_infer)


def _span_arguments(args, data):
  """run_local's span and split arguments for --data and --span/--train-spans/--split."""
  from pipeline.spans import span_reading
  try:
    reading = span_reading(data, args.split, span=args.span, train_spans=args.train_spans,
                           drift_check=not args.no_drift_check, data_format=args.data_format)
  except ValueError as e:
    sys.exit(f"error: {e}")
  if reading.summary:
    print(reading.summary)
  return reading.arguments


def _print_outcome(args, config, summary, start):
  """The run's summary, how to serve what it pushed and its report; exits
  EXIT_NOT_BLESSED when nothing was pushed because the model was not blessed."""
  print(f"\n{config.source}: pipeline finished in {time.time() - start:.0f}s")
  print(summary.table())
  if summary.pushed_dir:
    base = os.path.dirname(summary.pushed_dir.rstrip("/"))
    print("\nserve it over TF Serving's gRPC API (the local stand-in; in production "
          "tensorflow/serving, kubeflow/serving/):\n"
          f"  aitm serve --model-base-path {base} --model-name {args.model_name} "
          f"--port {serving_defaults.PORT}\n"
          f"  aitm predict --server {serving_defaults.SERVER} --model-name {args.model_name} "
          "--input rows.csv")
  report_after_run(args.pipeline_root, since=start)
  if summary.blessed is False or summary.infra_blessed is False:
    print("\nthe model was not blessed (see above why), so it was not pushed")
    sys.exit(configs.EXIT_NOT_BLESSED)
