"""SENet, MaskBlock and MaskNet: by hand in NumPy, EasyRec's parameter counts, refusals,
and config round trips."""

import json

import numpy as np
import pytest
import tensorflow as tf

from models.layers import MaskBlock, MaskNet, SENet

EPS = 1e-3  # Keras' LayerNormalization epsilon, EasyRec's too


def _layer_norm(x, ln):
  mean = x.mean(-1, keepdims=True)
  var = x.var(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + EPS) * ln.gamma.numpy() + ln.beta.numpy()


def _dense(x, dense):
  y = x @ dense.kernel.numpy()
  return y + dense.bias.numpy() if dense.use_bias else y


def _randomize(layer, seed):
  """Every weight random (biases, gamma and beta included), so a missed term shows."""
  rng = np.random.default_rng(seed)
  layer.set_weights([rng.normal(size=w.shape).astype("float32") * 0.5
                     for w in layer.get_weights()])


def _size(weights):
  return sum(int(np.prod(w.shape)) for w in weights)


def _fields(widths, batch=5, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=(batch, d)).astype("float32") for d in widths]


# --- SENet ---------------------------------------------------------------------------


def _senet_by_hand(layer, fields, g):
  squeezed = []
  for e in fields:
    groups = e.reshape(e.shape[0], g, e.shape[1] // g)
    squeezed += [groups.max(-1), groups.mean(-1)]
  z = np.concatenate(squeezed, axis=1)
  a = _dense(np.maximum(_dense(z, layer.reduce_layer), 0), layer.excite_layer)  # relu, linear
  x = np.concatenate(fields, axis=1)
  out = x * a
  if layer.use_skip_connection:
    out = out + x
  if layer.use_output_layer_norm:
    out = _layer_norm(out, layer.layer_norm)
  return out


@pytest.mark.parametrize("skip,norm", [(True, True), (False, False), (True, False),
                                       (False, True)])
def test_senet_matches_numpy_by_hand(skip, norm):
  widths = [4, 8, 6]     # unequal, each a multiple of g
  fields = _fields(widths)
  layer = SENet(reduction_ratio=2, num_squeeze_group=2, use_skip_connection=skip,
                use_output_layer_norm=norm)
  layer([tf.constant(f) for f in fields])
  _randomize(layer, 3)
  out = layer([tf.constant(f) for f in fields]).numpy()
  # z has 3 fields * 2 groups * 2 stats = 12 entries; W1 12 // 2 = 6 units; W2 one per column.
  assert layer.reduce_layer.kernel.shape == (12, 6)
  assert layer.excite_layer.kernel.shape == (6, 18)
  assert out.shape == (5, 18)
  np.testing.assert_allclose(out, _senet_by_hand(layer, fields, 2), rtol=1e-4, atol=1e-4)


def test_senet_groups_of_one_and_of_the_whole_field():
  fields = _fields([3, 3])
  for g in (1, 3):
    layer = SENet(reduction_ratio=1, num_squeeze_group=g)
    layer([tf.constant(f) for f in fields])
    _randomize(layer, g)
    np.testing.assert_allclose(layer([tf.constant(f) for f in fields]).numpy(),
                               _senet_by_hand(layer, fields, g), rtol=1e-4, atol=1e-4)


def test_senet_parameters_of_the_mmoe_backbone_sample():
  # mmoe_backbone_on_taobao: SENet { reduction_ratio: 4 } on 17 fields of width 16, g = 2.
  # z: 17 * 2 * 2 = 68. W1: 68 // 4 = 17 units, 68*17 + 17 = 1,173.
  # W2: 17 -> 17*16 = 272, 17*272 + 272 = 4,896. Output LN: gamma + beta = 2*272 = 544.
  # 1,173 + 4,896 + 544 = 6,613, all trainable, none regularized.
  layer = SENet()
  out = layer([tf.zeros((2, 16)) for _ in range(17)])
  assert out.shape == (2, 272)
  assert layer.reduce_layer.units == 17
  assert 68 * 17 + 17 + 17 * 272 + 272 + 2 * 272 == 6_613
  assert layer.count_params() == 6_613
  assert _size(layer.trainable_weights) == 6_613
  assert not layer.non_trainable_weights and not layer.losses


def test_senet_reduction_size_is_at_least_one():
  layer = SENet(reduction_ratio=8, num_squeeze_group=1)   # 1 * 1 * 2 // 8 = 0 -> 1
  layer([tf.zeros((2, 4))])
  assert layer.reduce_layer.units == 1


@pytest.mark.parametrize("widths,message", [
    ([4, 5], "field 1 has width 5"),     # not a multiple of g = 2
    ([4, 1], "field 1 has width 1"),     # narrower than g
])
def test_senet_refuses_field_widths(widths, message):
  with pytest.raises(ValueError, match=message):
    SENet()([tf.zeros((2, d)) for d in widths])


def test_senet_refuses_one_tensor_and_other_ranks():
  with pytest.raises(ValueError, match="list of field embeddings"):
    SENet()(tf.zeros((2, 8)))
  with pytest.raises(ValueError, match="field 0 must be"):
    SENet()([tf.zeros((2, 2, 4))])
  with pytest.raises(ValueError, match=">= 1"):
    SENet(reduction_ratio=0)


# --- MaskBlock -----------------------------------------------------------------------


def _mask_block_by_hand(block, net, mask_input):
  if block.input_layer_norm:
    net = _layer_norm(net, block.input_ln)
  h = mask_input
  if block.projection_dim:
    h = h @ block.project_layer.kernel.numpy()          # no bias
  aggr = np.maximum(_dense(h, block.aggr_layer), 0)
  masked = net * _dense(aggr, block.weight_layer)
  if not block.output_size:
    return masked
  hidden = masked @ block.output_layer.kernel.numpy()   # no bias
  return np.maximum(_layer_norm(hidden, block.output_ln), 0)


@pytest.mark.parametrize("output_size", [None, 5])
@pytest.mark.parametrize("projection_dim", [None, 3])
def test_mask_block_matches_numpy_by_hand(output_size, projection_dim):
  net, mask_input = _fields([6, 4], seed=1)
  block = MaskBlock(aggregation_size=7, output_size=output_size,
                    projection_dim=projection_dim)
  block((tf.constant(net), tf.constant(mask_input)))
  _randomize(block, 4)
  out = block((tf.constant(net), tf.constant(mask_input))).numpy()
  assert out.shape == (5, output_size or 6)
  assert block.aggr_layer.kernel.shape == (projection_dim or 4, 7)
  assert block.weight_layer.kernel.shape == (7, 6)      # the mask is net's width
  np.testing.assert_allclose(out, _mask_block_by_hand(block, net, mask_input),
                             rtol=1e-4, atol=1e-4)


def test_mask_block_on_one_tensor_and_with_input_layer_norm():
  (x,) = _fields([6], seed=2)
  block = MaskBlock(reduction_factor=0.5, input_layer_norm=True)
  block(tf.constant(x))
  _randomize(block, 5)
  assert block.aggr_layer.units == 3                    # int(6 * 0.5)
  np.testing.assert_allclose(block(tf.constant(x)).numpy(),
                             _mask_block_by_hand(block, x, x), rtol=1e-4, atol=1e-4)


def test_mask_block_reduction_factor_as_easyrec_reads_it():
  # The proto field is a float32: 0.7 is 0.69999998, so int(10 * 0.7) is 6 in EasyRec,
  # where a double would give 7. It also wins over aggregation_size, as in EasyRec.
  block = MaskBlock(reduction_factor=0.7, aggregation_size=100)
  block(tf.zeros((2, 10)))
  assert block.aggr_layer.units == 6
  block = MaskBlock(reduction_factor=2.0)
  block((tf.zeros((2, 3)), tf.zeros((2, 5))))
  assert block.aggr_layer.units == 10                   # from mask_input's width, 5
  assert block.weight_layer.units == 3


def test_mask_block_refusals():
  with pytest.raises(ValueError, match="reduction_factor` or `aggregation_size"):
    MaskBlock(output_size=4)
  with pytest.raises(ValueError, match="is 0"):
    MaskBlock(reduction_factor=0.1)(tf.zeros((2, 4)))  # int(4 * 0.1) = 0
  with pytest.raises(ValueError, match="output_size"):
    MaskBlock(aggregation_size=4, output_size=0)
  with pytest.raises(ValueError, match="x or \\(net, mask_input\\)"):
    MaskBlock(aggregation_size=4)([tf.zeros((2, 4))])


def test_mask_block_l2_only_on_aggregation_and_projection():
  block = MaskBlock(aggregation_size=4, output_size=3, projection_dim=2, l2_reg=0.1)
  block(tf.ones((2, 5)))
  expected = 0.1 * sum(float(np.sum(k.numpy() ** 2)) for k in
                       (block.project_layer.kernel, block.aggr_layer.kernel))
  assert len(block.losses) == 2
  assert float(tf.add_n(block.losses)) == pytest.approx(expected, rel=1e-5)


# --- MaskNet -------------------------------------------------------------------------


@pytest.mark.parametrize("parallel", [True, False])
def test_mask_net_matches_numpy_by_hand(parallel):
  (x,) = _fields([6], seed=3)
  blocks = [{"aggregation_size": 4, "output_size": 3},
            {"reduction_factor": 2.0, "output_size": 5},
            {"aggregation_size": 2}]                    # no output_size: keeps net's width
  layer = MaskNet(blocks, use_parallel=parallel)
  layer(tf.constant(x))
  _randomize(layer, 6)
  out = layer(tf.constant(x)).numpy()
  normed = _layer_norm(x, layer.input_ln)
  b0, b1, b2 = layer.mask_layers
  if parallel:
    # Every block masks the normed input with itself: widths 3 + 5 + 6.
    expected = np.concatenate([_mask_block_by_hand(b, normed, normed) for b in (b0, b1, b2)], 1)
    assert out.shape == (5, 14)
    assert b1.aggr_layer.units == 12                    # int(6 * 2.0)
  else:
    # Each block masks the previous output, the mask still from the normed input.
    net = _mask_block_by_hand(b0, normed, normed)
    net = _mask_block_by_hand(b1, net, normed)
    expected = _mask_block_by_hand(b2, net, normed)
    assert out.shape == (5, 5)
    assert b1.weight_layer.units == 3 and b2.weight_layer.units == 5
    assert b1.aggr_layer.units == 12                    # from the mask input, 6 wide
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_mask_net_shapes_with_mlp_and_without_input_layer_norm():
  blocks = [{"aggregation_size": 8, "output_size": 4}] * 2
  mlp = {"hidden_units": [6, 2]}
  assert MaskNet(blocks, mlp=mlp)(tf.zeros((3, 10))).shape == (3, 2)
  serial = MaskNet(blocks, use_parallel=False, mlp=mlp, input_layer_norm=False)
  assert serial(tf.zeros((3, 10))).shape == (3, 2)
  assert serial.input_ln is None
  assert serial.mlp._layers[0].kernel.shape == (4, 6)  # the last block's width
  assert MaskNet(blocks)(tf.zeros((3, 10))).shape == (3, 8)


def test_mask_net_parameters_of_the_dbmtl_backbone_sample():
  # dbmtl_backbone_on_taobao: masknet { mask_blocks { aggregation_size: 512 output_size: 256 }
  # x 3, mlp { hidden_units: [512, 256] } } on group all, 272 wide; parallel, input LN.
  # The MLP as EasyRec's keras MLP: Dense without bias, BN, relu on every layer.
  # Trainable:
  #   input LN: 2*272 = 544
  #   per block: aggregation 272*512 + 512 = 139,776; mask 512*272 + 272 = 139,536;
  #     output (no bias) 272*256 = 69,632; output LN 2*256 = 512; sum 349,456; x 3 = 1,048,368
  #   MLP layer 0: 3*256 = 768 -> 512: 768*512 = 393,216 + BN gamma/beta 2*512 = 394,240
  #   MLP layer 1: 512*256 = 131,072 + BN gamma/beta 2*256 = 131,584
  #   544 + 1,048,368 + 394,240 + 131,584 = 1,574,736: the notes' figure is right, and
  #   it counts trainable weights only.
  # Non-trainable: BN moving mean and variance, 2*512 + 2*256 = 1,536; 1,576,272 in all.
  assert 2 * 272 + 3 * (272 * 512 + 512 + 512 * 272 + 272 + 272 * 256 + 2 * 256) \
      + 768 * 512 + 2 * 512 + 512 * 256 + 2 * 256 == 1_574_736
  layer = MaskNet([{"aggregation_size": 512, "output_size": 256}] * 3,
                  mlp={"hidden_units": [512, 256]})
  assert layer(tf.zeros((2, 272))).shape == (2, 256)
  assert _size(layer.trainable_weights) == 1_574_736
  assert _size(layer.non_trainable_weights) == 1_536
  assert layer.count_params() == 1_576_272
  kinds = [type(l).__name__ for l in layer.mlp._layers]
  assert kinds == ["Dense", "BatchNormalization", "Activation"] * 2
  assert not any(l.use_bias for l in layer.mlp._layers[::3])


def test_mask_net_passes_l2_and_the_mlp_arguments_on():
  layer = MaskNet([{"aggregation_size": 4, "projection_dim": 2},
                   {"aggregation_size": 4, "l2_reg": 0.0}],
                  mlp={"hidden_units": [3, 2], "dropout_rate": [0.5, 0.0]}, l2_reg=0.1)
  layer(tf.ones((2, 5)))
  # Block 0: projection and aggregation kernels; block 1 set its own l2 of 0; MLP: 2 kernels.
  assert len(layer.losses) == 4
  assert [type(l).__name__ for l in layer.mlp._layers].count("Dropout") == 1


def test_mask_net_refusals():
  with pytest.raises(ValueError, match="at least one"):
    MaskNet([])
  with pytest.raises(ValueError, match="dict of MLP arguments"):
    MaskNet([{"aggregation_size": 4}], mlp=[4])
  with pytest.raises(ValueError, match="reduction_factor` or `aggregation_size"):
    MaskNet([{"output_size": 4}])


# --- Config round trips --------------------------------------------------------------


@pytest.mark.parametrize("make,inputs", [
    (lambda: SENet(reduction_ratio=3, num_squeeze_group=4, use_skip_connection=False),
     [np.ones((4, 8), "float32"), np.arange(32, dtype="float32").reshape(4, 8)]),
    (lambda: MaskBlock(reduction_factor=1.5, output_size=3, input_layer_norm=True,
                       projection_dim=2, l2_reg=0.01),
     np.arange(24, dtype="float32").reshape(4, 6) / 10),
    (lambda: MaskNet([{"aggregation_size": 4, "output_size": 3},
                      {"reduction_factor": 0.5, "projection_dim": 2}],
                     use_parallel=False, mlp={"hidden_units": [5, 2], "use_bn": False},
                     input_layer_norm=False, l2_reg=0.01),
     np.arange(24, dtype="float32").reshape(4, 6) / 10),
])
def test_config_round_trip_gives_the_same_outputs(make, inputs):
  layer = make()
  out = layer(inputs).numpy()
  config = layer.get_config()
  json.dumps(config)                                    # plain values only
  for copy in (layer.__class__.from_config(config),
               tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))):
    assert type(copy) is type(layer)
    assert copy.get_config() == config
    copy(inputs)
    copy.set_weights(layer.get_weights())
    np.testing.assert_allclose(copy(inputs).numpy(), out, rtol=1e-6)
