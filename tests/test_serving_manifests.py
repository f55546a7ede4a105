"""The TF Serving manifests (kubeflow/serving/) agree with each other, with TF
Serving's own flags and config protos, and with where the Pusher puts models.
On a cluster any mismatch here shows up only as a pod that never gets ready, or
one that quietly serves without batching."""

import os
import re
import shutil
import subprocess

import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from tensorflow_serving.config import model_server_config_pb2

from pipeline import configs
from serving import health

SERVING_DIR = os.path.join(configs.PROJECT_DIR, "kubeflow", "serving")
LOCK_PATH = os.path.join(configs.PROJECT_DIR, "requirements.lock")
MANIFESTS = ("deployment.yaml", "service.yaml", "pvc.yaml", "kustomization.yaml")

# tensorflow_model_server's flags (tensorflow_serving/model_servers/main.cc, 2.16).
# It reports an unknown flag on stdout and then runs without it, so a typo would
# not stop the pod, only silently drop the setting.
TF_SERVING_FLAGS = frozenset({
    "port", "grpc_socket_path", "rest_api_port", "rest_api_num_threads",
    "rest_api_timeout_in_ms", "rest_api_enable_cors_support", "enable_batching",
    "allow_version_labels_for_unavailable_models", "batching_parameters_file",
    "enable_per_model_batching_parameters", "model_config_file",
    "model_config_file_poll_wait_seconds", "model_name", "model_base_path",
    "num_load_threads", "num_unload_threads", "max_num_load_retries",
    "load_retry_interval_micros", "file_system_poll_wait_seconds", "flush_filesystem_caches",
    "tensorflow_session_parallelism", "tensorflow_session_config_file",
    "tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism",
    "use_alts_credentials", "ssl_config_file", "platform_config_file",
    "per_process_gpu_memory_fraction", "saved_model_tags", "grpc_channel_arguments",
    "grpc_max_threads", "enable_model_warmup", "num_request_iterations_for_warmup",
    "version", "monitoring_config_file", "remove_unused_fields_from_bundle_metagraph",
    "prefer_tflite_model", "num_tflite_pools", "num_tflite_interpreters_per_pool",
    "enable_signature_method_name_check", "xla_cpu_compilation_enabled", "enable_profiler",
    "thread_pool_factory_config_file", "mixed_precision", "skip_initialize_tpu",
    "enable_grpc_healthcheck_service",
})
# TF Serving's BatchingParameters (servables/tensorflow/session_bundle_config.proto);
# the proto ships in no pip wheel, so batching.config is checked against its names.
BATCHING_FIELDS = frozenset({
    "max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
    "thread_pool_name", "allowed_batch_sizes", "pad_variable_length_inputs",
    "enable_large_batch_splitting", "max_execution_batch_size",
})
# The largest batch a client sends (`aitm predict --batch-size`'s default, the
# client benchmark's largest): TF Serving rejects a request over max_batch_size.
LARGEST_CLIENT_BATCH = 256


def _docs(name):
  with open(os.path.join(SERVING_DIR, name)) as f:
    return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def _one(name, kind):
  docs = [doc for doc in _docs(name) if doc.get("kind") == kind]
  assert len(docs) == 1, f"{name}: {len(docs)} {kind} documents"
  return docs[0]


def _deployment():
  return _one("deployment.yaml", "Deployment")


def _container():
  containers = _deployment()["spec"]["template"]["spec"]["containers"]
  servers = [c for c in containers if c["image"].split(":")[0] == "tensorflow/serving"]
  assert len(servers) == 1, [c["image"] for c in containers]
  return servers[0]


def _flags():
  """The container's args as {flag: value}; TF's flag parser only takes --flag=value."""
  flags = {}
  for arg in _container()["args"]:
    match = re.fullmatch(r"--([a-z0-9_]+)=(.+)", arg)
    assert match, f"not --flag=value: {arg!r}"
    assert match.group(1) not in flags, f"{match.group(1)} given twice"
    flags[match.group(1)] = match.group(2)
  return flags


def _volume(name):
  volumes = {v["name"]: v for v in _deployment()["spec"]["template"]["spec"]["volumes"]}
  return volumes[name]


def _mount_path(volume_name):
  mounts = [m for m in _container()["volumeMounts"] if m["name"] == volume_name]
  assert len(mounts) == 1, mounts
  return mounts[0]["mountPath"]


def _port(port):
  """A probe's or a Service's port (a number or a container port name) as a number."""
  if isinstance(port, int):
    return port
  named = {p["name"]: p["containerPort"] for p in _container()["ports"]}
  assert port in named, f"no container port named {port!r}"
  return named[port]


def _config_map_generator():
  generators = _one("kustomization.yaml", "Kustomization")["configMapGenerator"]
  assert len(generators) == 1, generators
  return generators[0]


def _models_config():
  with open(os.path.join(SERVING_DIR, "models.config")) as f:
    return text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())


def _monitoring_config_message():
  """TF Serving's MonitoringConfig: from tensorflow_serving's config protos when they are
  importable; tensorflow-serving-api 2.16.1 ships no monitoring_config_pb2, so otherwise
  from its definition in tensorflow_serving/config/monitoring_config.proto (2.16.1), as a
  descriptor in a pool of its own: the same fields, numbers and types, for text_format's
  strict parse."""
  try:
    from tensorflow_serving.config import monitoring_config_pb2
    return monitoring_config_pb2.MonitoringConfig()
  except ImportError:
    pass
  field = descriptor_pb2.FieldDescriptorProto
  proto = descriptor_pb2.FileDescriptorProto(
      name="tensorflow_serving/config/monitoring_config.proto",
      package="tensorflow.serving", syntax="proto3")
  prometheus = proto.message_type.add(name="PrometheusConfig")
  prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL,
                       label=field.LABEL_OPTIONAL)
  prometheus.field.add(name="path", number=2, type=field.TYPE_STRING,
                       label=field.LABEL_OPTIONAL)
  monitoring = proto.message_type.add(name="MonitoringConfig")
  monitoring.field.add(name="prometheus_config", number=1, type=field.TYPE_MESSAGE,
                       type_name=".tensorflow.serving.PrometheusConfig",
                       label=field.LABEL_OPTIONAL)
  pool = descriptor_pool.DescriptorPool()
  pool.Add(proto)
  return message_factory.MessageFactory(pool).GetPrototype(
      pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))()


def _monitoring_config():
  with open(os.path.join(SERVING_DIR, "monitoring.config")) as f:
    return text_format.Parse(f.read(), _monitoring_config_message())


def _parse_text_proto(text):
  """A text-format message as {field: [values]}, a message value as the same kind
  of dict: enough for BatchingParameters without its generated class."""
  tokens = [t for t in re.findall(r'"(?:[^"\\]|\\.)*"|#[^\n]*|[{}:]|[^\s{}:#"]+', text)
            if not t.startswith("#")]
  pos = 0

  def message(closing):
    nonlocal pos
    fields = {}
    while pos < len(tokens) and tokens[pos] != closing:
      name = tokens[pos]
      if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"expected a field name, got {name!r}")
      pos += 1
      if pos < len(tokens) and tokens[pos] == ":":
        pos += 1
      if pos >= len(tokens):
        raise ValueError(f"{name} has no value")
      if tokens[pos] == "{":
        pos += 1
        value = message("}")
        pos += 1
      elif tokens[pos] in "{}:":
        raise ValueError(f"{name}: unexpected {tokens[pos]!r}")
      else:
        value = tokens[pos]
        pos += 1
      fields.setdefault(name, []).append(value)
    if closing is not None and pos >= len(tokens):
      raise ValueError("unclosed {")
    return fields

  fields = message(None)
  if pos != len(tokens):
    raise ValueError(f"unexpected {tokens[pos]!r}")
  return fields


def _batching():
  with open(os.path.join(SERVING_DIR, "batching.config")) as f:
    return _parse_text_proto(f.read())


def _wrapped_int(fields, name):
  """An Int64Value field's number, as `name { value: N }`."""
  (value,) = fields[name]
  return int(value["value"][0])


def _cpu(quantity):
  quantity = str(quantity)
  return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _bytes(quantity):
  units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
           "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
  match = re.fullmatch(r"(\d+)([KMGT]i?)?", str(quantity))
  assert match, f"not a memory quantity: {quantity!r}"
  return int(match.group(1)) * units.get(match.group(2), 1)


def test_manifests_parse_and_kustomization_lists_them():
  kinds = {}
  for name in MANIFESTS:
    docs = _docs(name)
    assert docs, f"{name} is empty"
    for doc in docs:
      assert doc.get("apiVersion") and doc.get("kind"), f"{name}: {doc}"
      kinds.setdefault(doc["kind"], []).append(name)
  assert sorted(kinds) == ["Deployment", "Kustomization", "PersistentVolumeClaim", "Service"]
  resources = _one("kustomization.yaml", "Kustomization")["resources"]
  assert sorted(resources) == sorted(n for n in MANIFESTS if n != "kustomization.yaml")


def test_image_is_the_serving_api_release_in_the_lock():
  with open(LOCK_PATH) as f:
    pins = re.findall(r"^tensorflow-serving-api==(\S+)", f.read(), re.MULTILINE)
  assert len(pins) == 1, pins
  assert _container()["image"] == f"tensorflow/serving:{pins[0]}"


def test_ports_and_service_reach_the_pods():
  ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
  assert ports == {"grpc": 8500, "http": 8501}
  service = _one("service.yaml", "Service")
  assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
  exposed = {p["name"]: (p["port"], _port(p["targetPort"])) for p in service["spec"]["ports"]}
  assert exposed == {"grpc": (8500, 8500), "http": (8501, 8501)}
  pod_labels = _deployment()["spec"]["template"]["metadata"]["labels"]
  for selector in (service["spec"]["selector"],
                   _deployment()["spec"]["selector"]["matchLabels"]):
    assert selector and selector.items() <= pod_labels.items(), (selector, pod_labels)


def test_args_are_tf_serving_flags_and_match_the_ports():
  flags = _flags()
  unknown = sorted(set(flags) - TF_SERVING_FLAGS)
  assert not unknown, f"not tensorflow_model_server flags: {unknown}"
  assert int(flags["port"]) == _port("grpc")
  assert int(flags["rest_api_port"]) == _port("http")
  assert flags["enable_batching"] == "true"
  # The image's entrypoint script would add single-model flags of its own.
  assert _container()["command"] == ["/usr/bin/tensorflow_model_server"]


def test_config_files_come_from_the_generated_config_map():
  flags = _flags()
  generator = _config_map_generator()
  assert sorted(generator["files"]) == ["batching.config", "models.config", "monitoring.config"]
  mounts = {m["name"]: m for m in _container()["volumeMounts"]}
  config_volumes = [name for name, mount in mounts.items()
                    if "configMap" in _volume(name)]
  assert len(config_volumes) == 1, config_volumes
  volume = _volume(config_volumes[0])
  assert volume["configMap"]["name"] == generator["name"]
  # Without the hash suffix the name in deployment.yaml is the one applied, and
  # models.config edits reach the running server through its config poll.
  assert generator["options"]["disableNameSuffixHash"] is True
  mount_path = mounts[config_volumes[0]]["mountPath"]
  # A subPath mount would never see ConfigMap updates.
  assert "subPath" not in mounts[config_volumes[0]]
  for flag, file in (("model_config_file", "models.config"),
                     ("batching_parameters_file", "batching.config"),
                     ("monitoring_config_file", "monitoring.config")):
    assert flags[flag] == os.path.join(mount_path, file), (flag, flags[flag])
  assert int(flags["model_config_file_poll_wait_seconds"]) > 0


def test_models_config_reads_the_pusher_layout():
  config = _models_config()
  (model,) = config.model_config_list.config
  assert model.name == configs.MODEL_NAME
  # Pusher: <serving_dir>/<model_name>/<version>/, serving_dir = the claim's mount.
  assert model.base_path == os.path.join(_mount_path("models"), configs.MODEL_NAME)
  assert model.model_platform == "tensorflow"
  # The previous version stays loaded, so a label can send clients back to it.
  assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
  assert model.model_version_policy.latest.num_versions >= 2
  # A label on a version that is not loaded stops the server from starting.
  assert not model.version_labels


def test_readme_label_snippet_fits_the_config():
  with open(os.path.join(SERVING_DIR, "README.md")) as f:
    snippets = re.findall(r"^version_labels \{.*\}$", f.read(), re.MULTILINE)
  assert snippets, "README.md shows no version_labels line"
  with open(os.path.join(SERVING_DIR, "models.config")) as f:
    text = f.read()
  labelled = text.replace("model_platform:", snippets[0] + "\n    model_platform:", 1)
  config = text_format.Parse(labelled, model_server_config_pb2.ModelServerConfig())
  assert config.model_config_list.config[0].version_labels["stable"] > 0


def test_models_volume_is_the_claim_mounted_read_only():
  claim = _one("pvc.yaml", "PersistentVolumeClaim")
  volume = _volume("models")
  assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
  mount = [m for m in _container()["volumeMounts"] if m["name"] == "models"][0]
  assert mount.get("readOnly") is True
  # The Pusher's pod writes while the serving pods, maybe on other nodes, read.
  assert "ReadWriteMany" in claim["spec"]["accessModes"]
  assert claim["spec"]["resources"]["requests"]["storage"]


def test_batching_config_uses_batching_parameters_fields():
  fields = _batching()
  unknown = sorted(set(fields) - BATCHING_FIELDS)
  assert not unknown, f"not BatchingParameters fields: {unknown}"
  assert _wrapped_int(fields, "max_batch_size") >= LARGEST_CLIENT_BATCH
  assert _wrapped_int(fields, "batch_timeout_micros") >= 0
  assert _wrapped_int(fields, "max_enqueued_batches") > 0


def test_text_proto_parser_rejects_what_tf_serving_would():
  assert _parse_text_proto('a { value: 1 }  # c\nb: "x # y"\nc: 2\nc: 3') == {
      "a": [{"value": ["1"]}], "b": ['"x # y"'], "c": ["2", "3"]}
  for bad in ("max_batch_size { value: 256", "max_batch_size {", "{ value: 1 }",
              "max_batch_size }"):
    with pytest.raises(ValueError):
      _parse_text_proto(bad)


def test_probes_ask_tf_servings_grpc_health_service():
  container, flags = _container(), _flags()
  # Off by default in tensorflow_model_server: without it every probe would fail.
  assert flags["enable_grpc_healthcheck_service"] == "true"
  for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
    probe = container[kind]
    assert set(probe) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, kind
    # Kubernetes' GRPCAction takes a port number, not a container port's name.
    port = probe["grpc"]["port"]
    assert isinstance(port, int) and port == _port("grpc") == int(flags["port"]), kind
    # A service TF Serving's health service answers SERVING (an unknown one is
    # NOT_FOUND, and the pod would never be ready); `aitm serve` answers the same names.
    assert probe["grpc"].get("service", health.OVERALL) in (
        (health.OVERALL,) + health.TF_SERVING_SERVICES), kind
    assert probe["periodSeconds"] > 0 and probe["failureThreshold"] > 0, kind
  # The startup probe waits for the first push on an empty volume (minutes).
  startup = container["startupProbe"]
  assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


def test_monitoring_config_is_tf_servings_and_the_annotations_point_at_it():
  config = _monitoring_config()
  assert config.prometheus_config.enable is True
  path = config.prometheus_config.path
  assert path.startswith("/") and path != "/"
  # TF Serving serves the metrics on its REST port only.
  flags = _flags()
  assert int(flags["rest_api_port"]) == _port("http")
  annotations = _deployment()["spec"]["template"]["metadata"]["annotations"]
  scrape = {key: value for key, value in annotations.items() if key.startswith("prometheus.io/")}
  # Annotation values must be strings, or the API server refuses the Deployment.
  assert all(isinstance(value, str) for value in scrape.values()), scrape
  assert scrape == {"prometheus.io/scrape": "true", "prometheus.io/port": str(_port("http")),
                    "prometheus.io/path": path}


def test_the_monitoring_config_check_refuses_what_tf_serving_would():
  for bad in ("prometheus_config { enabled: true }", "prometheus_config { enable: 1.5 }",
              "prometheus { enable: true }", 'prometheus_config { path: 3 }'):
    with pytest.raises(text_format.ParseError):
      text_format.Parse(bad, _monitoring_config_message())


def test_resources_bound_the_server_threads():
  resources = _container()["resources"]
  requests, limits = resources["requests"], resources["limits"]
  assert _cpu(requests["cpu"]) <= _cpu(limits["cpu"])
  assert _bytes(requests["memory"]) <= _bytes(limits["memory"])
  # TensorFlow sizes thread pools from the node's cores, not from the limit.
  cpus = _cpu(limits["cpu"])
  flags = _flags()
  for flag in ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism"):
    assert 0 < int(flags[flag]) <= cpus, (flag, flags[flag], cpus)
  assert 0 < _wrapped_int(_batching(), "num_batch_threads") <= cpus


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl")
def test_kustomize_build_mounts_the_generated_config_map():
  out = subprocess.run(["kubectl", "kustomize", SERVING_DIR], check=True,
                       capture_output=True, text=True, timeout=120).stdout
  docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
  generator = _config_map_generator()
  config_map = docs[("ConfigMap", generator["name"])]
  for file in generator["files"]:
    with open(os.path.join(SERVING_DIR, file)) as f:
      assert config_map["data"][file] == f.read()
  deployment = docs[("Deployment", _deployment()["metadata"]["name"])]
  names = [v["configMap"]["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]
           if "configMap" in v]
  assert names == [generator["name"]]


def test_rollback_job_runs_aitm_rollback_on_the_models_claim():
  from cli.commands import rollback
  from cli.main import build_parser
  from pipeline import configs
  job = _one("rollback-job.yaml", "Job")
  pod = job["spec"]["template"]["spec"]
  container, = pod["containers"]
  assert container["image"] == configs.KUBEFLOW_IMAGE   # the project image, as compiled
  assert container["command"] == ["aitm"]
  args = build_parser().parse_args(container["args"])   # the CLI accepts them as written
  assert args.func is rollback.run
  # It acts on the directory TF Serving reads: <serving_dir>/<model_name> == base_path.
  mount, = container["volumeMounts"]
  assert mount["mountPath"] == args.serving_dir and not mount.get("readOnly")
  volume, = pod["volumes"]
  assert volume["name"] == mount["name"]
  claim = _one("pvc.yaml", "PersistentVolumeClaim")
  assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
  assert _volume("models")["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
  base_path = f"{args.serving_dir}/{args.model_name}"
  with open(os.path.join(SERVING_DIR, "models.config")) as f:
    assert f'base_path: "{base_path}"' in f.read()
  assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0


# The volume types and capabilities Kubernetes' restricted Pod Security Standard allows.
_RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                       "persistentVolumeClaim", "projected", "secret"}


def _restricted_violations(pod):
  """What keeps a pod spec from Kubernetes' restricted Pod Security Standard (v1.30),
  plus the read-only root filesystem this project asks for."""
  found = []
  pod_context = pod.get("securityContext", {})
  for key in ("hostNetwork", "hostPID", "hostIPC"):
    if pod.get(key):
      found.append(key)
  for volume in pod.get("volumes", []):
    kinds = set(volume) - {"name"}
    if not kinds <= _RESTRICTED_VOLUMES:
      found.append(f"volume {volume['name']}: {sorted(kinds)}")
  for container in pod.get("containers", []) + pod.get("initContainers", []):
    name, context = container["name"], container.get("securityContext", {})

    def setting(key):
      return context.get(key, pod_context.get(key))
    if context.get("privileged"):
      found.append(f"{name}: privileged")
    if context.get("allowPrivilegeEscalation") is not False:
      found.append(f"{name}: allowPrivilegeEscalation not false")
    if setting("runAsNonRoot") is not True:
      found.append(f"{name}: runAsNonRoot not true")
    if setting("runAsUser") == 0:
      found.append(f"{name}: runAsUser 0")
    seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {})
    if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
      found.append(f"{name}: seccompProfile {seccomp.get('type')}")
    capabilities = context.get("capabilities", {})
    if "ALL" not in capabilities.get("drop", []):
      found.append(f"{name}: capabilities not all dropped")
    if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
      found.append(f"{name}: capabilities added {capabilities['add']}")
    if context.get("readOnlyRootFilesystem") is not True:
      found.append(f"{name}: root filesystem writable")
    for port in container.get("ports", []):
      if port.get("hostPort"):
        found.append(f"{name}: hostPort {port['hostPort']}")
  return found


def test_the_restricted_checks_catch_a_default_pod():
  assert len(_restricted_violations({"containers": [{"name": "c"}]})) == 5


def test_every_pod_of_the_kustomization_meets_the_restricted_standard():
  """On kustomize's rendered output (kubectl's), or the listed manifests without it."""
  if shutil.which("kubectl"):
    out = subprocess.run(["kubectl", "kustomize", SERVING_DIR], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    docs = list(yaml.safe_load_all(out))
  else:
    with open(os.path.join(SERVING_DIR, "kustomization.yaml")) as f:
      listed = yaml.safe_load(f)["resources"]
    docs = []
    for name in listed:
      with open(os.path.join(SERVING_DIR, name)) as f:
        docs += list(yaml.safe_load_all(f))
  pods = [d["spec"]["template"]["spec"] for d in docs
          if d and d["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet")]
  assert pods
  for pod in pods:
    assert _restricted_violations(pod) == []
  # TF Serving writes only to /tmp: a volume of its own.
  container, = pods[0]["containers"]
  assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
