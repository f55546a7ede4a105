"""MMoE and PLE: shapes, a NumPy reference forward pass, serialization, gradients."""

import numpy as np
import pytest
import tensorflow as tf

from models.layers.mmoe import MMoE
from models.layers.ple import PLE

IN_DIM = 6
BATCH = 32


@pytest.fixture(autouse=True)
def _seed():
  tf.keras.utils.set_random_seed(7)


def _x(batch=BATCH, seed=0):
  return np.random.default_rng(seed).normal(size=(batch, IN_DIM)).astype(np.float32)


# ---------------------------------------------------------------- NumPy reference

def _np_mlp(mlp, x):
  """The MLP's forward pass from its weights; its defaults put ReLU after every Dense."""
  layers = []
  for w in mlp.weights:
    name = w.name.split("/")[-1]
    if name.startswith("kernel"):
      layers.append([w.numpy(), None])
    elif name.startswith("bias"):
      layers[-1][1] = w.numpy()
    else:
      raise AssertionError(f"reference only covers Dense + ReLU, found {w.name}")
  assert len(layers) == len(mlp.hidden_units)
  for kernel, bias in layers:
    x = x @ kernel + (0.0 if bias is None else bias)
    x = np.maximum(x, 0.0)
  return x


def _np_softmax(z):
  z = z - z.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def _np_gate(mlp, dense, x):
  h = _np_mlp(mlp, x) if mlp is not None else x
  return _np_softmax(h @ dense.kernel.numpy() + dense.bias.numpy())


def _np_mix(experts, gate):
  return np.einsum("bn,bnu->bu", gate, np.stack(experts, axis=1))


def _np_mmoe(layer, x):
  experts = [_np_mlp(e, x) for e in layer.experts]
  out = []
  for t in range(layer.num_task):
    mlp = layer.gate_mlps[t] if layer.gate_mlps else None
    out.append(_np_mix(experts, _np_gate(mlp, layer.gate_logits[t], x)))
  return out


def _split_gate(gate):
  return (gate[0], gate[1]) if len(gate) == 2 else (None, gate[0])


def _np_ple(layer, x):
  task_in, shared_in = [x] * layer.num_task, x
  for level in range(layer.num_level):
    task_out = [[_np_mlp(e, task_in[t]) for e in layer.task_experts[level][t]]
                for t in range(layer.num_task)]
    shared_out = [_np_mlp(e, shared_in) for e in layer.shared_experts[level]]
    new_task_in = [
        _np_mix(task_out[t] + shared_out,
                _np_gate(*_split_gate(layer.task_gates[level][t]), task_in[t]))
        for t in range(layer.num_task)]
    if level < layer.num_level - 1:
      everything = [o for outs in task_out for o in outs] + shared_out
      shared_in = _np_mix(everything,
                          _np_gate(*_split_gate(layer.shared_gates[level]), shared_in))
    task_in = new_task_in
  return task_in


def _randomize(layer, scale=1.0):
  """Non-zero biases too, so a reference that dropped them would disagree."""
  rng = np.random.default_rng(1)
  layer.set_weights([scale * rng.normal(size=w.shape).astype(np.float32)
                     for w in layer.get_weights()])


# ---------------------------------------------------------------------- cases

LAYERS = {
    "mmoe": lambda **kw: MMoE(num_expert=3, expert_units=[8, 4], **kw),
    "mmoe_gate_mlp": lambda **kw: MMoE(num_expert=2, expert_units=[5], gate_units=[7], **kw),
    "ple_1": lambda **kw: PLE(expert_units=[8, 4], num_level=1, num_expert_per_task=2,
                              num_expert_share=1, **kw),
    "ple_2": lambda **kw: PLE(expert_units=[8, 4], num_level=2, num_expert_per_task=1,
                              num_expert_share=2, **kw),
    "ple_3_gate_mlp": lambda **kw: PLE(expert_units=[5], num_level=3, num_expert_per_task=2,
                                       num_expert_share=2, gate_units=[6], **kw),
}


@pytest.mark.parametrize("cls", [MMoE, PLE])
def test_batch_norm_and_dropout_run_in_training(cls):
  kwargs = dict(num_expert=2) if cls is MMoE else {}
  layer = cls(num_task=2, expert_units=[8, 4], gate_units=[4], use_bn=True,
              dropout_rate=0.5, l2_reg=1e-3, **kwargs)
  x = _x()
  train = layer(x, training=True)
  infer = layer(x, training=False)
  assert all(o.shape == (BATCH, 4) for o in train + infer)
  # Dropout only in training: the two passes must differ.
  assert not np.allclose(train[0].numpy(), infer[0].numpy())
  assert layer.losses, "l2_reg should add regularization losses"


@pytest.mark.parametrize("num_task", [2, 3])
@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_one_output_per_task_matching_numpy_reference(kind, num_task):
  layer = LAYERS[kind](num_task=num_task)
  x = _x()
  layer(x)
  _randomize(layer, scale=0.5)
  reference = _np_mmoe if isinstance(layer, MMoE) else _np_ple
  out = layer(x)
  assert isinstance(out, list) and len(out) == num_task
  units = layer.expert_units[-1]
  assert all(o.shape == (BATCH, units) for o in out)
  assert [tuple(s) for s in layer.compute_output_shape((None, IN_DIM))] == \
      [(None, units)] * num_task
  got = [o.numpy() for o in out]
  want = reference(layer, x.astype(np.float64))
  for t in range(num_task):
    np.testing.assert_allclose(got[t], want[t], rtol=1e-5, atol=1e-5)
  # The tasks' gates differ, so their outputs should too.
  assert not np.allclose(got[0], got[1])


def _tie_experts(layer):
  """Within each level, give every expert the first one's weights; returns those."""
  if isinstance(layer, MMoE):
    levels = [layer.experts]
  else:
    levels = [[e for task in task_experts for e in task] + shared
              for task_experts, shared in zip(layer.task_experts, layer.shared_experts)]
  for experts in levels:
    for e in experts[1:]:
      e.set_weights(experts[0].get_weights())
  return [experts[0] for experts in levels]


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_gates_are_convex_weights(kind):
  # With identical experts, any gate whose weights sum to one returns that
  # expert's output unchanged, whatever its logits; an unnormalized gate won't.
  layer = LAYERS[kind](num_task=3)
  x = _x()
  layer(x)
  _randomize(layer, scale=2.0)   # large logits: gates far from uniform
  # Every input of level l is then the tied expert of level l-1's output.
  want = x
  for expert in _tie_experts(layer):
    want = expert(want).numpy()
  assert np.abs(want).max() > 0.0
  for out in layer(x):
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_config_round_trip(kind):
  layer = LAYERS[kind](num_task=2, l2_reg=1e-4, name="experts")
  x = _x()
  layer(x)
  _randomize(layer)
  config = layer.get_config()
  clone = type(layer).from_config(config)
  assert clone.get_config() == config
  clone(x)
  clone.set_weights(layer.get_weights())
  for a, b in zip(layer(x), clone(x)):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)
  # Registered under the project's package, so the generic path finds it too.
  revived = tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))
  assert type(revived) is type(layer) and revived.get_config() == config


def _functional(layer):
  inp = tf.keras.Input((IN_DIM,))
  return tf.keras.Model(inp, layer(inp))


@pytest.mark.parametrize("kind", ["mmoe_gate_mlp", "ple_3_gate_mlp", "ple_2"])
def test_gradients_reach_every_variable(kind):
  layer = LAYERS[kind](num_task=2)
  model = _functional(layer)
  x = tf.constant(_x(batch=64))
  with tf.GradientTape() as tape:
    loss = tf.add_n([tf.reduce_sum(o) for o in model(x, training=True)])
  grads = tape.gradient(loss, model.trainable_variables)
  assert len(model.trainable_variables) == len(layer.trainable_variables) > 0
  for var, grad in zip(model.trainable_variables, grads):
    assert grad is not None, f"no gradient for {var.name}"
    grad = tf.convert_to_tensor(grad).numpy()
    assert np.abs(grad).max() > 0.0, f"zero gradient for {var.name}"


def test_saved_model_round_trip(tmp_path):
  # One model holding both layers: each save pays a fixed tracing cost.
  mmoe = MMoE(num_task=2, num_expert=2, expert_units=[4], gate_units=[3])
  ple = PLE(num_task=2, expert_units=[4], num_level=2)
  inp = tf.keras.Input((IN_DIM,))
  model = tf.keras.Model(inp, mmoe(inp) + ple(inp))
  x = _x()
  model(x)
  _randomize(mmoe)
  _randomize(ple)
  before = model.predict(x, verbose=0)
  path = str(tmp_path / "model")
  model.save(path, save_format="tf")
  loaded = tf.keras.models.load_model(path)
  after = loaded.predict(x, verbose=0)
  assert len(before) == len(after) == 4
  for a, b in zip(before, after):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  # Registered classes come back as themselves, not as generic revived layers.
  assert {type(lay) for lay in loaded.layers} >= {MMoE, PLE}


@pytest.mark.parametrize("make, arg", [
    (lambda: MMoE(num_task=0, num_expert=2, expert_units=[4]), "num_task"),
    (lambda: MMoE(num_task=2, num_expert=0, expert_units=[4]), "num_expert"),
    (lambda: MMoE(num_task=2, num_expert=2, expert_units=[]), "expert_units"),
    (lambda: MMoE(num_task=2, num_expert=2, expert_units=[4, 0]), "expert_units"),
    (lambda: MMoE(num_task=2, num_expert=2, expert_units=[4], gate_units=[-1]),
     "gate_units"),
    (lambda: MMoE(num_task=2, num_expert=2, expert_units=[4], dropout_rate=1.0),
     "dropout_rate"),
    (lambda: MMoE(num_task=2, num_expert=2, expert_units=[4], l2_reg=-1.0), "l2_reg"),
    (lambda: PLE(num_task=0, expert_units=[4]), "num_task"),
    (lambda: PLE(num_task=2, expert_units=[]), "expert_units"),
    (lambda: PLE(num_task=2, expert_units=[4], num_level=0), "num_level"),
    (lambda: PLE(num_task=2, expert_units=[4], num_expert_per_task=0),
     "num_expert_per_task"),
    (lambda: PLE(num_task=2, expert_units=[4], num_expert_share=0), "num_expert_share"),
    (lambda: PLE(num_task=2, expert_units=[4], gate_units=[0]), "gate_units"),
])
def test_bad_arguments_name_the_argument(make, arg):
  with pytest.raises(ValueError, match=f"`{arg}`"):
    make()


@pytest.mark.parametrize("cls", [MMoE, PLE])
def test_rejects_a_list_input(cls):
  kwargs = dict(num_expert=2) if cls is MMoE else {}
  layer = cls(num_task=2, expert_units=[4], **kwargs)
  with pytest.raises(ValueError, match="one tensor"):
    layer([_x(), _x()])
