"""Beam arguments for each runner: built, merged and parsed as Beam reads them."""

import pytest

from pipeline import beam_options, configs


def test_local_default_is_in_process_and_two_workers_use_processes():
  assert beam_options.direct() == list(configs.BEAM_PIPELINE_ARGS)
  options = beam_options.parse(beam_options.direct(2)).get_all_options()
  assert options["runner"] == "DirectRunner"
  assert options["direct_running_mode"] == "multi_processing"
  assert options["direct_num_workers"] == 2
  with pytest.raises(ValueError, match="at least 1"):
    beam_options.direct(0)


def test_dataflow_options_parse_as_dataflow_reads_them():
  from apache_beam.options.pipeline_options import GoogleCloudOptions, WorkerOptions
  args = beam_options.dataflow(project="p", region="europe-west4",
                               temp_location="gs://b/tmp", max_num_workers=8,
                               machine_type="n2-standard-4",
                               sdk_container_image="europe-docker.pkg.dev/p/r/aitm-tfx:0.1.0",
                               service_account_email="sa@p.iam.gserviceaccount.com")
  options = beam_options.parse(args)
  cloud, workers = options.view_as(GoogleCloudOptions), options.view_as(WorkerOptions)
  assert (cloud.project, cloud.region, cloud.temp_location) == ("p", "europe-west4", "gs://b/tmp")
  assert cloud.service_account_email == "sa@p.iam.gserviceaccount.com"
  assert workers.max_num_workers == 8 and workers.machine_type == "n2-standard-4"
  assert workers.sdk_container_image.endswith("aitm-tfx:0.1.0")
  assert "use_runner_v2" in options.get_all_options()["experiments"]
  with pytest.raises(ValueError, match="gs:// path"):
    beam_options.dataflow(project="p", region="r", temp_location="/tmp",
                          sdk_container_image="i")


@pytest.mark.parametrize("runner, endpoint_option", [("FlinkRunner", "flink_master"),
                                                      ("SparkRunner", "spark_master_url"),
                                                      ("PortableRunner", "job_endpoint")])
def test_portable_runners_get_their_endpoint_and_the_project_image(runner, endpoint_option):
  args = beam_options.portable(runner, "flink-jobmanager:8081",
                               sdk_container_image="registry/aitm-tfx:0.1.0", parallelism=4)
  options = beam_options.parse(args).get_all_options()
  assert options["runner"] == runner and options[endpoint_option] == "flink-jobmanager:8081"
  assert options["environment_type"] == "DOCKER"
  assert options["environment_config"] == "registry/aitm-tfx:0.1.0"
  assert options["sdk_container_image"] == "registry/aitm-tfx:0.1.0"
  external = beam_options.parse(beam_options.portable(
      runner, "x:1", environment_type="EXTERNAL", environment_config="localhost:50000"))
  assert external.get_all_options()["environment_config"] == "localhost:50000"
  with pytest.raises(ValueError, match="needs sdk_container_image"):
    beam_options.portable(runner, "x:1")


def test_portable_local_is_the_portable_runner_with_an_external_worker_pool():
  args = beam_options.portable_local("localhost:8099", "localhost:50000")
  options = beam_options.parse(args).get_all_options()
  assert options["runner"] == "PortableRunner" and options["job_endpoint"] == "localhost:8099"
  assert options["environment_type"] == "EXTERNAL"
  assert options["environment_config"] == "localhost:50000"
  assert args[:-1] == beam_options.portable("PortableRunner", "localhost:8099",
                                            environment_type="EXTERNAL",
                                            environment_config="localhost:50000")
  # Beam's default, 60 s, also cuts the job's state stream: longer jobs would fail.
  assert options["job_server_timeout"] == beam_options.PORTABLE_LOCAL_JOB_TIMEOUT >= 3600
  short = beam_options.parse(beam_options.portable_local("h:1", "h:2", job_timeout_seconds=90))
  assert short.get_all_options()["job_server_timeout"] == 90
  for bad in ("localhost", "localhost:", ":8099", "localhost:http", "localhost:70000"):
    with pytest.raises(ValueError, match="must be host:port"):
      beam_options.portable_local(bad, "localhost:50000")
  with pytest.raises(ValueError, match="two ports"):
    beam_options.portable_local("localhost:8099", "localhost:8099")


def test_aitm_run_takes_the_local_portable_flags_as_beam_args():
  """`aitm run --beam-args=...` over the defaults: the DirectRunner's own flags go, the
  portable ones stay, and the CLI's parser and Beam accept them."""
  from cli.common_flags import beam_args
  from cli.main import build_parser
  flags = " ".join(beam_options.portable_local("localhost:8099", "localhost:50000"))
  args = build_parser().parse_args(["run", f"--beam-args={flags}"])
  merged = beam_args(args)
  assert merged == beam_options.portable_local("localhost:8099", "localhost:50000")
  assert not [a for a in merged if a.startswith("--direct_")]


def test_overrides_replace_single_flags_and_a_new_runner_drops_direct_ones():
  merged = beam_options.merge(configs.BEAM_PIPELINE_ARGS,
                              beam_options.split("--direct_num_workers=2 "
                                                 "--direct_running_mode=multi_processing"))
  assert merged == ["--runner=DirectRunner", "--direct_num_workers=2",
                    "--direct_running_mode=multi_processing"]
  flink = beam_options.merge(configs.BEAM_PIPELINE_ARGS,
                             ["--runner=FlinkRunner", "--flink_master=jm:8081"])
  assert flink == ["--runner=FlinkRunner", "--flink_master=jm:8081"]
  assert beam_options.split(["--a=1 --b='x y'", "--c"]) == ["--a=1", "--b=x y", "--c"]


@pytest.mark.parametrize("args, message", [
    (["--runner=DirectRuner"], "not one of"),
    (["--direct_num_wrkers=2"], "does not know"),
    (["runner=DirectRunner"], "not of the form"),
])
def test_typos_fail_before_any_cluster_sees_them(args, message):
  with pytest.raises(ValueError, match=message):
    beam_options.parse(args)
