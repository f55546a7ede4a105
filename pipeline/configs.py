"""Defaults of a pipeline run; every one can be overridden by `aitm run` options."""

import os

from components import label_blind_split
from components.label_blind_split import Split

PIPELINE_NAME = "aitm"
MODEL_NAME = "aitm"
# Complete versions the Pusher keeps in <serving_dir>/<model_name> (older ones are
# deleted after a newer one is published): room for `aitm rollback`.
KEEP_VERSIONS = 5
# `aitm run --warm-start`: off by default, so a run's model depends only on its
# data, config and seed (a retrain with the same seed reproduces it, which the
# blessing tests rely on); daily runs over spans turn it on.
WARM_START = False
RUNS_DIR = "runs"
DEFAULT_DATA_DIR = os.path.join(RUNS_DIR, "data")
DEFAULT_PIPELINE_ROOT = os.path.join(RUNS_DIR, "pipeline")
DEFAULT_SERVING_DIR = os.path.join(RUNS_DIR, "serving")
DEFAULT_COMPARE_ROOT = os.path.join(RUNS_DIR, "compare")
# Rows of generated data when `aitm run` gets no --data: a few minutes on 2 cores.
DEFAULT_ROWS = 50_000
DEFAULT_SEED = 7
# With --data holding span-N/ directories: the spans the Trainer reads, the newest
# ingested up to this run's; 1 trains on this run's span alone.
TRAIN_SPANS = 1

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_PATH = os.path.join(PROJECT_DIR, "schemas", "taobao_raw.pbtxt")
# The EasyRec config `aitm run` uses without --config.
CONFIG_PATH = os.path.join(PROJECT_DIR, "configs", "aitm_taobao.config")
# What `aitm compare` trains by default: AITM and its peers, one funnel, same features.
PEER_CONFIGS = tuple(os.path.join(PROJECT_DIR, "configs", f"{name}.config") for name in (
    "aitm_taobao", "shared_bottom", "esmm", "mmoe", "ple"))
# ExampleGen's split of the input (components/label_blind_split.py): by row, 4 parts
# train, 1 part eval, the labels never read.
SPLIT = Split()
TRAIN_BUCKETS, EVAL_BUCKETS = label_blind_split.TRAIN_BUCKETS, label_blind_split.EVAL_BUCKETS
# In-process Beam: no Prism/portable runner, nothing downloaded at run time. Also
# the Kubeflow default, inside each component's pod (pipeline.beam_options for more).
BEAM_PIPELINE_ARGS = ("--runner=DirectRunner", "--direct_running_mode=in_memory",
                      "--direct_num_workers=1")
# Infra validation before the Pusher (pipeline.pipeline.InfraValidation): locally the
# candidate in a fresh `aitm serve` process; compiled for Kubeflow, TFX's InfraValidator
# with this TF Serving image (kubeflow/serving/'s) on the cluster.
TF_SERVING_IMAGE, TF_SERVING_TAG = "tensorflow/serving", "2.16.1"
# What `aitm compile-kfp` writes and `aitm schedule-kfp` reads, unless told otherwise.
KFP_PACKAGE = "aitm_pipeline.yaml"
# `aitm schedule-kfp`: the recurring run's cron (KFP's: 6 fields, seconds first; every
# day at 03:00 in the KFP server's time zone), its experiment and its name.
KFP_CRON = "0 0 3 * * *"
KFP_EXPERIMENT = "aitm"
KFP_RECURRING_RUN = "aitm-daily"
# `aitm run` exits with this when the model was trained and evaluated but not blessed,
# so nothing was pushed (0: pushed; 1: an error, nothing trained or pushed).
EXIT_NOT_BLESSED = 3
# The image kubeflow/Dockerfile builds (`docker build -f kubeflow/Dockerfile -t
# aitm-tfx:0.1.0 .`, then push it to your registry): the Kubeflow steps' default.
KUBEFLOW_IMAGE = "aitm-tfx:0.1.0"


def metadata_path(pipeline_root: str) -> str:
  """The SQLite ML Metadata store that records the runs under `pipeline_root`."""
  return os.path.join(pipeline_root, "metadata.sqlite")
