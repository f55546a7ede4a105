"""`aitm compile-kfp`: the pipeline as a Kubeflow Pipelines v2 spec (pipeline/kubeflow_runner.py)."""

import sys

from cli import common_flags
from pipeline import configs
from pipeline.vertex_training import DEFAULT_MACHINE_TYPE

LOADS_TENSORFLOW = True
# The Vertex AI training flags, as their argparse dests.
_VERTEX_FLAGS = ("train_workers", "vertex_project", "vertex_region", "train_machine_type")


def add_parser(subparsers):
  """Adds `compile-kfp` (alias compile-kubeflow) and its flags to `subparsers`; returns
  its parser."""
  parser = subparsers.add_parser("compile-kfp", aliases=["compile-kubeflow"],
                                 help="write the pipeline as a Kubeflow Pipelines v2 spec "
                                 "(KubeflowV2DagRunner)")
  parser.add_argument("--output", "--out", default=configs.KFP_PACKAGE,
                      help=".json or .yaml (default %(default)s, what schedule-kfp reads)")
  parser.add_argument("--image", default=configs.KUBEFLOW_IMAGE,
                      help="the image built from kubeflow/Dockerfile, in your registry "
                      "(default: %(default)s)")
  parser.add_argument("--pipeline-root", required=True, help="e.g. gs://bucket/aitm/root")
  parser.add_argument("--data", help="default of the data_root runtime parameter "
                      "(default: <pipeline-root>/data)")
  parser.add_argument("--serving-dir", help="default of the push_destination runtime "
                      "parameter is <serving-dir>/<model-name> (default: "
                      "<pipeline-root>/serving)")
  parser.add_argument("--train-steps", type=int, help="default num_steps of the train_args "
                      "runtime parameter (default: the config's budget, early stopping)")
  parser.add_argument("--config", default=configs.CONFIG_PATH,
                      help="EasyRec config (default: %(default)s)")
  common_flags.add_model_name(parser)
  common_flags.add_keep_versions(parser)
  parser.add_argument("--spans", action="store_true", help="data_root holds span-N/ "
                      "directories: each run reads the newest (no drift check or training "
                      "window on Kubeflow)")
  common_flags.add_warm_start(parser, "the latest blessed model")
  common_flags.add_split(parser)
  parser.add_argument("--no-infra-validation", action="store_true",
                      help="no TFX InfraValidator (tensorflow/serving on the cluster) before "
                      "the Pusher: for Vertex AI Pipelines, which has no cluster to run it")
  parser.add_argument("--bulk-infer", metavar="DIR", help="also score the candidate CSV "
                      "files in DIR with TFX's BulkInferrer once the model is blessed; DIR "
                      "is the default of a candidates_root runtime parameter")
  _add_vertex_training(parser)
  common_flags.add_beam_args(parser, "in-process DirectRunner in each component's pod")
  return parser


def _add_vertex_training(parser):
  parser.add_argument("--train-workers", type=int, help="run the Trainer as a Vertex AI "
                      "custom job on this many workers (the chief included; the config must "
                      "set train_distribute: MultiWorkerMirroredStrategy when more than 1)")
  parser.add_argument("--vertex-project", help="Google Cloud project of the training job")
  parser.add_argument("--vertex-region", help="its region, e.g. us-central1")
  parser.add_argument("--train-machine-type", help="each worker's machine (default "
                      f"{DEFAULT_MACHINE_TYPE})")


def _flag(dest):
  """An argparse dest as the flag it comes from: train_workers -> --train-workers."""
  return "--" + dest.replace("_", "-")


def _vertex_training(args):
  """--train-workers etc.: the Trainer as a Vertex AI custom job, or None."""
  wanted = [f for f in _VERTEX_FLAGS if getattr(args, f) is not None]
  if not wanted:
    return None
  from pipeline.vertex_training import VertexTraining
  missing = [_flag(f) for f in ("vertex_project", "vertex_region") if getattr(args, f) is None]
  if missing:
    sys.exit(f"error: training on Vertex AI ({', '.join(map(_flag, wanted))}) also needs "
             f"{' and '.join(missing)}")
  try:
    return VertexTraining(project=args.vertex_project, region=args.vertex_region,
                          image=args.image, workers=args.train_workers or 1,
                          **({"machine_type": args.train_machine_type}
                             if args.train_machine_type else {}))
  except ValueError as e:
    sys.exit(f"error: {e}")


def run(args):
  """Writes the Kubeflow Pipelines v2 spec to `--output`; exits with the error on bad
  settings."""
  from pipeline.kubeflow_runner import (CANDIDATES_PARAMETER, RUNTIME_PARAMETERS,
                                        compile_pipeline)
  config, = common_flags.load_configs([args.config])
  common_flags.check_split(args.split, config)
  try:
    path = compile_pipeline(config=config, output_file=args.output, image=args.image,
                            pipeline_root=args.pipeline_root, data_root=args.data,
                            serving_dir=args.serving_dir, model_name=args.model_name,
                            train_steps=args.train_steps,
                            beam_pipeline_args=common_flags.beam_args(args),
                            vertex_training=_vertex_training(args),
                            keep_versions=args.keep_versions, spans=args.spans,
                            warm_start=args.warm_start, split=args.split,
                            infra_validation=not args.no_infra_validation,
                            bulk_infer=args.bulk_infer)
  except ValueError as e:
    sys.exit(f"error: {e}")
  parameters = RUNTIME_PARAMETERS + ((CANDIDATES_PARAMETER,) if args.bulk_infer else ())
  print(f"wrote the Kubeflow Pipelines v2 spec to {path} (image {args.image}; runtime "
        f"parameters {', '.join(parameters)})")
