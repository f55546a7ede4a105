"""EasyRec's own multi-task samples for the Taobao data, read unchanged: each model class
(esmm, mmoe, ple, dbmtl, simple_multi_task and the backbone style) checks, builds with
the layer sizes its config's numbers give, computes what EasyRec's model computes (ESMM's
product, DBMTL's relation wiring), and trains above chance through the pipeline."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from models.backbone import build_model, model_features
from models.config import ConfigError, load_config, parse_config
from pipeline import configs

# EasyRec's samples, copied unchanged into configs/ as easyrec_<sample>.config.
SAMPLES = sorted(glob.glob(os.path.join(configs.PROJECT_DIR, "configs", "easyrec_*.config")))
ROWS = 50   # embedding rows per feature: the sizes below don't depend on them


def _sample(name):
  return os.path.join(configs.PROJECT_DIR, "configs", f"easyrec_{name}.config")


def _model(name):
  config = load_config(_sample(name))
  return config, build_model(config, {f.name: ROWS for f in config.features})


def _batch(config, model, size=16, seed=0):
  rng = np.random.default_rng(seed)
  batch = {}
  for feature in model_features(config):
    spec = model.input[feature.name]
    shape = (size,) + tuple(spec.shape[1:])
    batch[feature.name] = (rng.random(shape).astype("float32") if spec.dtype == tf.float32
                           else rng.integers(0, ROWS, size=shape))
  return batch


def _kernels(model, layer_name):
  """The kernel shapes of the Dense layers inside a layer, in build order."""
  return [tuple(w.shape) for w in model.get_layer(layer_name).weights
          if w.name.endswith("kernel:0")]


def _group_width(config, group):
  """A feature group's concatenated width, from the config: its features' embedding_dims."""
  dims = {f.name: f.embedding_dim for f in config.features}
  names = next(g.feature_names for g in config.proto.model_config.feature_groups
               if g.group_name == group)
  return sum(dims[n] for n in names)


def _chain(width, units):
  """The kernel shapes of a DNN with `units` on a `width`-wide input."""
  shapes = []
  for u in units:
    shapes.append((width, u))
    width = u
  return shapes


def test_there_are_the_nine_samples():
  assert len(SAMPLES) == 9 and all(os.path.exists(p) for p in SAMPLES), SAMPLES


@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_every_sample_checks_builds_and_predicts_ctr_and_cvr(path):
  config = load_config(path)
  assert [(t.name, t.label) for t in config.tasks] == [("ctr", "clk"), ("cvr", "buy")]
  model = build_model(config, {f.name: ROWS for f in config.features})
  out = model(_batch(config, model), training=False)
  assert set(out) == {"ctr", "cvr"}
  for p in out.values():
    assert p.shape == (16, 1)
    assert np.all((p.numpy() >= 0) & (p.numpy() <= 1))


def test_simple_multi_task_towers_read_group_all():
  config, model = _model("simple_multi_task_on_taobao")
  width = _group_width(config, "all")
  assert width == 17 * 16
  for tower in ("ctr", "cvr"):
    assert _kernels(model, f"{tower}_dnn") == _chain(width, [256, 192, 128, 64])
    assert _kernels(model, f"{tower}_head") == [(64, 1)]
  assert config.model.model_params.l2_regularization == pytest.approx(1e-7)


def test_simple_multi_task_backbone_is_the_same_model():
  """The same layers, built in the same order from the same seed: the same weights and
  the same predictions (the pipeline test below therefore trains only one of the two)."""
  tf.keras.utils.set_random_seed(5)
  a, model_a = _model("simple_multi_task_on_taobao")
  tf.keras.utils.set_random_seed(5)
  b, model_b = _model("simple_multi_task_backbone_on_taobao")
  assert model_a.count_params() == model_b.count_params()
  assert _kernels(model_b, "ctr_dnn") == _chain(_group_width(b, "all"), [256, 192, 128, 64])
  assert [tuple(w.shape) for w in model_a.weights] == [tuple(w.shape) for w in model_b.weights]
  for wa, wb in zip(model_a.weights, model_b.weights):
    np.testing.assert_array_equal(wa.numpy(), wb.numpy())
  batch = _batch(a, model_a)
  out_a, out_b = model_a(batch, training=False), model_b(batch, training=False)
  for task in ("ctr", "cvr"):
    np.testing.assert_allclose(out_a[task].numpy(), out_b[task].numpy(), rtol=1e-6)


def test_mmoe_experts_and_gates_as_its_config_sizes_them():
  config, model = _model("mmoe_on_taobao")
  width = _group_width(config, "all")
  kernels = _kernels(model, "mmoe")
  # 4 experts of expert_dnn [256, 192, 128, 64], then one 4-way gate per task.
  assert kernels == _chain(width, [256, 192, 128, 64]) * 4 + [(width, 4)] * 2
  for tower in ("ctr", "cvr"):
    assert _kernels(model, f"{tower}_dnn") == _chain(64, [256, 192, 128, 64])
  assert config.model.model_params.l2_regularization == pytest.approx(1e-6)


def test_ple_levels_as_its_extraction_networks_size_them():
  config, model = _model("ple_on_taobao")
  width = _group_width(config, "all")
  ple = model.get_layer("ple")
  # Level 1: 3 experts per task and 3 shared, [128, 64, 32] on the group; the task gates
  # choose among 3 + 3, the shared gate among 2 x 3 + 3.
  assert [tuple(w.shape) for w in ple.task_experts[0][0][0].weights
          if "kernel" in w.name] == _chain(width, [128, 64, 32])
  assert len(ple.task_experts[0][0]) == 3 and len(ple.shared_experts[0]) == 3
  assert tuple(ple.task_gates[0][0][-1].kernel.shape) == (width, 6)
  assert tuple(ple.shared_gates[0][-1].kernel.shape) == (width, 9)
  # Levels 2 and 3: [64, 32, 16] on level 1's 32-wide mix; the last has no shared gate.
  assert [tuple(w.shape) for w in ple.shared_experts[2][0].weights
          if "kernel" in w.name] == _chain(16, [64, 32, 16])
  assert [tuple(w.shape) for w in ple.task_experts[1][1][2].weights
          if "kernel" in w.name] == _chain(32, [64, 32, 16])
  assert len(ple.shared_gates) == 2
  assert _kernels(model, "ctr_dnn") == _chain(16, [128, 64, 32])
  assert _kernels(model, "cvr_dnn") == _chain(16, [256, 128, 64, 32])


def test_dbmtl_relation_as_its_config_sizes_it():
  config, model = _model("dbmtl_on_taobao")
  width = _group_width(config, "all")
  assert _kernels(model, "bottom_dnn") == _chain(width, [1024, 512, 256])
  for tower in ("ctr", "cvr"):
    assert _kernels(model, f"{tower}_dnn") == _chain(256, [256, 128, 64, 32])
  # ctr relates to nothing: its relation_dnn [32] reads its own 32; cvr's reads its own
  # 32 and ctr's relation features, 32 more.
  assert _kernels(model, "ctr_relation_dnn") == [(32, 32)]
  assert _kernels(model, "cvr_relation_dnn") == [(64, 32)]
  assert _kernels(model, "cvr_head") == [(32, 1)]


def test_dbmtl_cvr_reads_ctr_relation_features_numerically():
  config, model = _model("dbmtl_on_taobao")
  probe = tf.keras.Model(model.inputs, [
      model.get_layer("cvr_relation_inputs").output, model.get_layer("cvr_dnn").output,
      model.get_layer("ctr_relation_dnn").output])
  joined, own, related = (t.numpy() for t in probe(_batch(config, model), training=False))
  np.testing.assert_allclose(joined, np.concatenate([own, related], axis=1), rtol=1e-6)
  # And the gradient of cvr's output reaches ctr's relation DNN.
  batch = _batch(config, model)
  with tf.GradientTape() as tape:
    cvr = model(batch, training=False)["cvr"]
  grads = tape.gradient(cvr, model.get_layer("ctr_relation_dnn").trainable_weights)
  assert any(float(tf.norm(g)) > 0 for g in grads)


def test_dbmtl_backbone_masknet_feeds_both_towers():
  config, model = _model("dbmtl_backbone_on_taobao")
  # MaskNet's mlp [512, 256] ends 256 wide; both towers read it.
  for tower in ("ctr", "cvr"):
    assert _kernels(model, f"{tower}_dnn") == _chain(256, [256, 128, 64, 32])
  assert _kernels(model, "cvr_relation_dnn") == [(64, 32)]


def test_mmoe_backbone_senet_on_the_feature_list():
  config, model = _model("mmoe_backbone_on_taobao")
  fields = len(next(g.feature_names for g in config.proto.model_config.feature_groups))
  senet = model.get_layer("senet")
  # Squeeze: 2 groups x (max, mean) per field; excite to fields x 2 x 2 // 4, then back
  # to the 17 x 16 embedding width.
  assert _kernels(model, "senet") == [(fields * 4, fields * 4 // 4), (fields, fields * 16)]
  assert senet.count_params() == 6_613
  assert _kernels(model, "mmoe")[-2:] == [(fields * 16, 3), (fields * 16, 3)]
  for tower in ("ctr", "cvr"):
    assert _kernels(model, f"{tower}_dnn") == _chain(128, [128, 64])


def test_esmm_group_towers_and_its_ctcvr_product():
  config, model = _model("esmm_on_taobao")
  widths = {g: _group_width(config, g) for g in ("user", "item", "combo")}
  assert widths == {"user": 8 * 16, "item": 6 * 16, "combo": 3 * 16}
  assert _kernels(model, "user_dnn") == _chain(widths["user"], [256, 128, 96, 64])
  assert _kernels(model, "combo_dnn") == _chain(widths["combo"], [128, 96, 64, 32])
  for tower in ("ctr", "cvr"):
    assert _kernels(model, f"{tower}_dnn") == _chain(64 + 64 + 32, [128, 96, 64, 32, 16])
  # The towers in funnel order, ctr first, though the config lists cvr_tower first.
  assert [t.name for t in config.tasks] == ["ctr", "cvr"]
  probe = tf.keras.Model(model.inputs, [model.get_layer("cvr_head").output,
                                        model.output["ctr"], model.output["cvr"]])
  p_cvr_given_click, p_ctr, p_ctcvr = (t.numpy() for t in probe(_batch(config, model)))
  np.testing.assert_allclose(p_ctcvr, p_cvr_given_click * p_ctr, rtol=1e-5)
  assert np.all(p_ctcvr <= p_ctr)


def _with(sample, old, new):
  with open(_sample(sample)) as f:
    text = f.read()
  assert old in text, old
  return text.replace(old, new, 1)


def _refused(text, pattern):
  with pytest.raises(ConfigError, match=pattern):
    parse_config(text, source="bad.config")


@pytest.mark.parametrize("sample, old, new, pattern", [
    ("mmoe_on_taobao", "mmoe {", "deepfm {",
     r"bad\.config:\d+:\d+: deepfm: EasyRec's deepfm model is not a multi-task model"),
    ("mmoe_on_taobao", 'model_class: "MMoE"', 'model_class: "PLE"',
     r"bad\.config:\d+: model_class: model_class 'PLE' takes 'ple \{ \}', got 'mmoe \{ \}'"),
    ("mmoe_on_taobao", "num_expert: 4", "num_expert: 0",
     r"bad\.config:\d+: mmoe: MMoE needs expert_dnn and num_expert >= 1"),
    ("mmoe_on_taobao", 'group_name: "all"', 'group_name: "everything"',
     r"feature_groups: 'mmoe \{ \}' reads the feature group 'all'"),
    ("dbmtl_on_taobao", "bottom_dnn {", "bottom_cmbf {",
     r"bad\.config:\d+:\d+: bottom_cmbf: multi-modal"),
    ("dbmtl_on_taobao", "loss_type: CLASSIFICATION", "loss_type: JRC_LOSS",
     r"loss_type: tower 'ctr': JRC_LOSS is not supported for a binary task"),
    ("dbmtl_on_taobao", "loss_type: CLASSIFICATION", "loss_type: L2_LOSS",
     r"loss_type: tower 'ctr': L2_LOSS is not supported"),
    ("dbmtl_on_taobao", "weight: 1.0", "weight: 1.0\n      task_space_indicator_label: 'clk'",
     r"task_space_indicator_label: tower 'ctr': task-space weights are not supported"),
    ("dbmtl_backbone_on_taobao", "masknet {", "masknet {\n            use_parallel: false",
     None),
    ("dbmtl_backbone_on_taobao", "aggregation_size: 512", "input_layer_norm: true",
     r"mask_blocks: block 'mask_net': mask block 0 needs reduction_factor or "
     r"aggregation_size"),
    ("mmoe_backbone_on_taobao", "only_output_feature_list: true",
     "only_output_feature_list: true\n          wide_output_dim: 8",
     r"wide_output_dim: input_layer block 'all': WIDE features are not supported"),
    ("simple_multi_task_backbone_on_taobao", 'name: "identity"', 'name: "identity"\n      '
     'lambda { expression: "lambda x: x" }',
     r"bad\.config:\d+:\d+: lambda: a Lambda block runs Python code"),
])
def test_what_is_not_supported_is_refused_by_name_with_its_line(sample, old, new, pattern):
  text = _with(sample, old, new)
  if pattern is None:
    parse_config(text, source="fine.config")   # a supported variant, for contrast
  else:
    _refused(text, pattern)


def test_a_binary_loss_besides_classification_is_a_named_term():
  text = _with("dbmtl_on_taobao", "loss_type: CLASSIFICATION", """losses {
        loss_type: CLASSIFICATION
      }
      losses {
        loss_type: BINARY_FOCAL_LOSS
        weight: 0.5
        binary_focal_loss { gamma: 1.5 }
      }""")
  ctr = parse_config(text, source="focal.config").tasks[0]
  assert ctr.classification_weight == 1.0
  assert ctr.extra_losses == (("BINARY_FOCAL_LOSS", 0.5, "", (("gamma", 1.5),)),)
  from models.trainer import task_loss
  loss = task_loss(ctr)
  assert loss.term_names == ["cross_entropy_loss_ctr", "binary_focal_loss_ctr"]
  y, p = tf.constant([[1.0], [0.0], [1.0]]), tf.constant([[0.8], [0.3], [0.4]])
  terms = loss.term_values(y, p)
  assert float(loss(y, p)) == pytest.approx(
      float(terms["cross_entropy_loss_ctr"]) + 0.5 * float(terms["binary_focal_loss_ctr"]),
      rel=1e-5)


# --- through the pipeline ------------------------------------------------------------
# EasyRec's --edit_config_json, as a user shortens a sample for a quick run: 800 steps
# of 128 rows instead of the samples' thousands of steps of 4,096. Much fewer don't do:
# with batch norm on every layer, their eval AUC stays near 0.5 for the first ~500
# steps, while the moving statistics lag embeddings that are still moving fast.
QUICK = {"train_config.num_steps": 800, "data_config.batch_size": 128}
PIPELINE_ROWS, PIPELINE_SEED = 40_000, 23
# Every sample but simple_multi_task's backbone style, the same model as its classic
# style (test_simple_multi_task_backbone_is_the_same_model): training it again would
# cost a Trainer run (about 45 s) and test nothing more.
TRAINED = [p for p in SAMPLES if not p.endswith("simple_multi_task_backbone_on_taobao.config")]


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory):
  from datagen import taobao
  data_dir = str(tmp_path_factory.mktemp("samples_data"))
  taobao.write_csv(data_dir, PIPELINE_ROWS, PIPELINE_SEED)
  return data_dir


@pytest.fixture(scope="module")
def compared(sample_data, tmp_path_factory):
  """`aitm compare` of every sample up to the Trainer: the samples share data and
  features, so ExampleGen .. Transform run once and each model trains through the
  pipeline's Trainer, which scores it on the eval split (the Evaluator's part is the
  `aitm run` test's)."""
  from report import compare
  # The AITM sample's constant learning rate, 1e-4, is set for millions of rows: a
  # quick run at it learns little, so this one raises it (the others decay from 1e-3).
  aitm_rate = {"train_config.optimizer_config[0].adam_optimizer.learning_rate."
               "constant_learning_rate.learning_rate": 1e-3}
  samples = [load_config(path, edits=dict(QUICK, **(aitm_rate if "aitm" in path else {})))
             for path in TRAINED]
  return compare.compare(samples, data_root=sample_data,
                         pipeline_root=str(tmp_path_factory.mktemp("samples_root")),
                         pipeline_name="easyrec-samples", evaluate=False)


@pytest.mark.e2e
def test_every_sample_trains_above_chance_through_the_pipeline(compared):
  from report import compare
  assert len(TRAINED) == len(SAMPLES) - 1
  assert [s.name for s in compared] == [
      os.path.basename(p)[:-len(".config")] for p in TRAINED]
  print(compare.table(compared))
  for score in compared:
    assert set(score.auc) == {"ctr", "cvr"}, score
  # 800 steps on 32,000 train rows; a model that learnt nothing scores 0.5 (the eval
  # split has about 50 purchases, so a cvr AUC is +-0.04). At 750 steps DBMTL, ESMM,
  # MMoE and PLE were at 0.73-0.77 (ctr) and 0.82-0.87 (cvr).
  low = [(s.name, s.auc) for s in compared if min(s.auc.values()) <= 0.65]
  assert not low, low
  table = compare.table(compared).splitlines()
  assert len(table) == 2 + len(TRAINED)
  assert all(f"| {os.path.basename(p)[:-len('.config')]} |" in "\n".join(table)
             for p in TRAINED)


@pytest.mark.e2e
def test_a_sample_runs_unchanged_through_aitm_run_and_pushes_ctr_and_cvr(sample_data,
                                                                          tmp_path, capsys):
  """The issue's promise, as a user types it: EasyRec's file, a shorter run by
  --edit-config-json, a pushed model whose serving_default answers ctr and cvr."""
  import json
  from cli.main import main
  serving = tmp_path / "serving"
  main(["run", "--config", _sample("dbmtl_backbone_on_taobao"), "--data", sample_data,
        "--pipeline-root", str(tmp_path / "root"), "--serving-dir", str(serving),
        "--edit-config-json", json.dumps(QUICK)])
  out = capsys.readouterr().out
  assert "edit: train_config.num_steps = 800 (1 field)" in out
  versions = glob.glob(str(serving / "*" / "*" / "saved_model.pb"))
  assert len(versions) == 1, out
  loaded = tf.saved_model.load(os.path.dirname(versions[0]))
  assert set(loaded.signatures["serving_default"].structured_outputs) >= {"ctr", "cvr"}
