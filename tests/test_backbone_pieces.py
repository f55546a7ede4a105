"""EasyRec's backbone pieces beyond keras layers: input_layer blocks (GroupInput), blocks
without a layer, the output a backbone without output_blocks has (leaves or
concat_blocks, concatenated, then top_mlp), and PLE levels of their own."""

import os

import numpy as np
import pytest
import tensorflow as tf

from models.backbone import build_model
from models.config import ConfigError, parse_config
from models.layers import PLE
from models.layers.input_layer import GroupInput
from pipeline import configs

SAMPLE = os.path.join(configs.PROJECT_DIR, "configs",
                      "easyrec_simple_multi_task_backbone_on_taobao.config")
IDENTITY = '''    blocks {
      name: "identity"
      inputs {
        feature_group_name: "all"
      }
    }'''


def _features(n=3, width=4, batch=5, seed=0):
  rng = np.random.default_rng(seed)
  return [tf.constant(rng.normal(size=(batch, width)).astype("float32")) for _ in range(n)]


def test_group_input_concat_list_and_stack():
  features = _features()
  assert GroupInput()(features).shape == (5, 12)
  listed = GroupInput(only_output_feature_list=True)(features)
  assert isinstance(listed, list) and [f.shape for f in listed] == [(5, 4)] * 3
  assert GroupInput(only_output_3d_tensor=True)(features).shape == (5, 3, 4)
  with pytest.raises(ValueError, match="one embedding width"):
    GroupInput(only_output_3d_tensor=True)(features + [tf.zeros((5, 2))])
  with pytest.raises(ValueError, match="exclude each other"):
    GroupInput(do_batch_norm=True, do_layer_norm=True)


def test_group_input_layer_norm_per_feature_and_on_the_concat():
  features = _features()
  listed = GroupInput(only_output_feature_list=True, do_layer_norm=True)(features)
  for raw, normed in zip(features, listed):
    x = raw.numpy()
    expected = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(normed.numpy(), expected, atol=1e-4)
  joined = GroupInput(do_layer_norm=True)(features).numpy()
  np.testing.assert_allclose(joined.mean(1), 0, atol=1e-5)


def test_feature_dropout_drops_whole_features_for_the_whole_batch():
  tf.random.set_seed(3)
  features = [tf.ones((64, 4)) for _ in range(8)]
  layer = GroupInput(feature_dropout_rate=0.5)
  out = layer(features, training=True).numpy().reshape(64, 8, 4)
  per_feature = out[0, :, 0]
  assert set(np.round(per_feature, 4)) <= {0.0, 2.0} and 0 < per_feature.sum() < 16
  # One draw per feature: every row and unit of a feature agree.
  assert np.all(out == per_feature[None, :, None])
  np.testing.assert_array_equal(layer(features, training=False).numpy(), np.ones((64, 32)))


def test_group_input_round_trips_its_config():
  layer = GroupInput(do_batch_norm=True, dropout_rate=0.1, only_output_feature_list=True)
  again = GroupInput.from_config(layer.get_config())
  assert again.get_config() == layer.get_config()


def test_ple_levels_of_their_own_and_no_shared_experts_on_the_last():
  levels = [dict(num_expert_per_task=2, num_expert_share=1,
                 task_expert=dict(hidden_units=[8, 6]), share_expert=dict(hidden_units=[6])),
            dict(num_expert_per_task=1, num_expert_share=0,
                 task_expert=dict(hidden_units=[4]))]
  layer = PLE(num_task=2, expert_units=[99], levels=levels)
  out = layer(tf.ones((3, 10)))
  assert [o.shape for o in out] == [(3, 4), (3, 4)]
  assert len(layer.shared_experts[1]) == 0 and len(layer.shared_gates) == 1
  # Level 1's task gates mix 2 own + 1 shared experts; the shared gate 2 x 2 + 1.
  assert layer.task_gates[0][0][-1].kernel.shape == (10, 3)
  assert layer.shared_gates[0][-1].kernel.shape == (10, 5)
  again = PLE.from_config(layer.get_config())
  again(tf.ones((3, 10)))
  again.set_weights(layer.get_weights())
  np.testing.assert_allclose(again(tf.ones((3, 10)))[1], out[1], rtol=1e-6)
  with pytest.raises(ValueError, match="same width"):
    PLE(num_task=2, expert_units=[4], levels=[dict(
        num_expert_per_task=1, num_expert_share=1, task_expert=dict(hidden_units=[4]),
        share_expert=dict(hidden_units=[5]))])


def _config(backbone_blocks, extra=""):
  with open(SAMPLE) as f:
    text = f.read()
  assert IDENTITY in text
  return parse_config(text.replace(IDENTITY, backbone_blocks + extra), source="b.config")


def test_leaf_blocks_are_concatenated_then_top_mlp_and_every_tower_reads_it():
  config = _config('''    blocks { name: "a" inputs { feature_group_name: "all" }
             keras_layer { class_name: "MLP" mlp { hidden_units: [8] } } }
    blocks { name: "b" inputs { feature_group_name: "all" }
             keras_layer { class_name: "MLP" mlp { hidden_units: [4] } } }''',
                   "\n    top_mlp { hidden_units: [6] }")
  assert [(t.output_block, t.output_index) for t in config.tasks] == [("top_mlp", None)] * 2
  model = build_model(config, {f.name: 20 for f in config.features})
  assert model.get_layer("backbone").output.shape[-1] == 8 + 4
  assert model.get_layer("ctr_dnn").input.shape[-1] == 6


def test_concat_blocks_name_the_output_and_a_list_needs_one_element_per_tower():
  config = _config('''    blocks { name: "a" inputs { feature_group_name: "all" }
             keras_layer { class_name: "MLP" mlp { hidden_units: [8] } } }
    blocks { name: "b" inputs { block_name: "a" }
             keras_layer { class_name: "MLP" mlp { hidden_units: [4] } } }''',
                   '\n    concat_blocks: "a"')
  assert config.tasks[0].output_block == "a"
  with pytest.raises(ConfigError, match=r"'pair' has 3 outputs but there are 2 task_towers"):
    _config('''    blocks { name: "pair" inputs { feature_group_name: "all" }
               inputs { feature_group_name: "all" } inputs { feature_group_name: "all" }
               merge_inputs_into_list: true }''')


def test_an_input_layer_block_takes_one_group_and_may_carry_its_name():
  with pytest.raises(ConfigError, match="input_layer block 'all' takes exactly one "
                                        "feature_group_name input"):
    _config('''    blocks { name: "all" inputs { feature_group_name: "all" }
               inputs { feature_group_name: "all" } input_layer { } }''')
  with pytest.raises(ConfigError, match="block name 'all' is used twice"):
    _config('''    blocks { name: "all" inputs { feature_group_name: "all" }
               keras_layer { class_name: "MLP" mlp { hidden_units: [4] } } }''')
