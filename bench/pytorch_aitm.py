"""The default AITM model and a plain training loop in PyTorch: bench/trainer_vs_pytorch.py's
comparison, run in PyTorch's own environment (it imports only torch and numpy).

    TORCH_PYTHON bench/pytorch_aitm.py SPEC.json

SPEC.json (written by trainer_vs_pytorch.py from the config and the Transform
output) names the embedding tables, the feature groups, the block widths, the
regularization, the batch, the steps, Adam's settings and the learning-rate
schedule, and the `train` and `test` .npz files (Transform's train split, the
encoded test rows: model inputs by feature name, `label_<task>`). The model is
the Keras one (models/backbone.py for configs/aitm_taobao.config) layer for
layer, with Keras' initializers:

    embeddings (uniform +-0.05; tag lists: mean of the present tags, 0 pads)
    user_side, ad_side: Linear(64) over the user / ad groups
    affinity = EasyRec's FM with use_variant on [user_side, ad_side]
    share_bottom: Linear 512 -> ReLU -> 256 -> ReLU over [all group, affinity]
    ctr_tower, cvr_tower: Linear 128 -> ReLU
    cvr_aitm: AIT over [cvr_tower, transfer_mlp(stop_gradient(ctr_tower))]
    per task: Linear 64 -> ReLU -> Linear 1 (the logit)

Loss: binary cross-entropy per task (on the logits: Keras takes the logit out
of the sigmoid too) + mean(relu(p_cvr - p_ctr)) + l2 x sum of kernel squares
+ embedding_l2 x sum of the looked-up vectors' squares / batch, as Keras adds
them. Adam (Keras' epsilon 1e-7, dense gradients: every row of a table's
moments decays each step, as Keras' Adam does), the Trainer's warmup + cosine
learning rate over the same steps.

The loop draws batches from a fresh permutation of the train rows each pass
(the remainder of a pass dropped), indexing tensors made once from the
arrays: no DataLoader, no parsing. Writes `out` (SPEC's path): the steady
examples per second and per CPU second of the process (from the end of step
`warmup` on), the parameter count, and the test rows' predictions
(`predictions` .npz).
"""

import json
import math
import sys
import time

import numpy as np
import torch
from torch import nn


def _glorot_(weight: torch.Tensor) -> torch.Tensor:
  """Keras' glorot_uniform on a torch Linear weight `[out, in]`."""
  return nn.init.xavier_uniform_(weight)


def _he_uniform_(weight: torch.Tensor) -> torch.Tensor:
  """Keras' he_uniform (the MLP layer's default): uniform +-sqrt(6 / fan_in)."""
  bound = math.sqrt(6.0 / weight.shape[1])
  return nn.init.uniform_(weight, -bound, bound)


def _linear(n_in: int, n_out: int, init, bias: bool = True) -> nn.Linear:
  layer = nn.Linear(n_in, n_out, bias=bias)
  init(layer.weight)
  if bias:
    nn.init.zeros_(layer.bias)
  return layer


class MLP(nn.Sequential):
  """The project's MLP without batch norm or dropout: Linear -> activation per width,
  the last one's activation `final` (None: linear); Keras' he_uniform init."""

  def __init__(self, n_in: int, widths, final=nn.ReLU):
    layers = []
    for i, width in enumerate(widths):
      layers.append(_linear(n_in, width, _he_uniform_))
      activation = final if i == len(widths) - 1 else nn.ReLU
      if activation is not None:
        layers.append(activation())
      n_in = width
    super().__init__(*layers)


class AITM(nn.Module):
  """The default config's AITM (module docstring); `spec` as in SPEC.json."""

  def __init__(self, spec):
    super().__init__()
    self.features = spec["features"]
    self.groups = spec["groups"]
    self.embedding_l2 = spec["embedding_l2"]
    self.tables = nn.ModuleDict()
    for f in self.features:
      table = nn.Embedding(f["rows"], f["dim"])
      nn.init.uniform_(table.weight, -0.05, 0.05)
      self.tables[f["name"]] = table
    dims = {f["name"]: f["dim"] for f in self.features}
    width = {g: sum(dims[n] for n in names) for g, names in self.groups.items()}
    self.user_side = MLP(width["user"], spec["user_side"], final=None)
    self.ad_side = MLP(width["ad"], spec["ad_side"], final=None)
    self.share_bottom = MLP(width["all"] + spec["user_side"][-1], spec["share_bottom"])
    self.ctr_tower = MLP(spec["share_bottom"][-1], spec["tower"])
    self.cvr_tower = MLP(spec["share_bottom"][-1], spec["tower"])
    self.transfer = MLP(spec["tower"][-1], spec["transfer"])
    k = spec["tower"][-1]
    self.h1, self.h2, self.h3 = (_linear(k, k, _glorot_, bias=False) for _ in range(3))
    self.scale = math.sqrt(k)
    self.ctr_dnn, self.cvr_dnn = MLP(k, spec["dnn"]), MLP(k, spec["dnn"])
    self.ctr_head = _linear(spec["dnn"][-1], 1, _glorot_)
    self.cvr_head = _linear(spec["dnn"][-1], 1, _glorot_)

  def embed(self, batch):
    """Feature ids -> ({feature: [B, dim]}, the embedding regularization loss)."""
    vectors, squares = {}, []
    for f in self.features:
      ids = batch[f["name"]]
      v = self.tables[f["name"]](ids)
      if f["kind"] == "tags":
        mask = (ids != 0).to(v.dtype).unsqueeze(-1)              # [B, T, 1]
        v = v * mask
        squares.append(v.square().sum())
        v = v.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
      else:
        squares.append(v.square().sum())
      vectors[f["name"]] = v
    batch_size = next(iter(vectors.values())).shape[0]
    return vectors, self.embedding_l2 * torch.stack(squares).sum() / batch_size

  def forward(self, batch):
    """-> (ctr logit [B], cvr logit [B], embedding regularization loss)."""
    vectors, embedding_loss = self.embed(batch)
    group = {g: torch.cat([vectors[n] for n in names], dim=1) for g, names in self.groups.items()}
    u, a = self.user_side(group["user"]), self.ad_side(group["ad"])
    # EasyRec's FM, use_variant, on two inputs: 0.5 * ((u + a)^2 - u^2 - a^2) = u * a.
    affinity = 0.5 * ((u + a).square() - u.square() - a.square())
    h = self.share_bottom(torch.cat([group["all"], affinity], dim=1))
    ctr, cvr = self.ctr_tower(h), self.cvr_tower(h)
    items = torch.stack([cvr, self.transfer(ctr.detach())], dim=1)   # [B, 2, k]
    weights = torch.softmax((self.h1(items) * self.h2(items)).sum(-1) / self.scale, dim=1)
    aitm = (weights.unsqueeze(-1) * self.h3(items)).sum(dim=1)
    return (self.ctr_head(self.ctr_dnn(ctr)).squeeze(-1),
            self.cvr_head(self.cvr_dnn(aitm)).squeeze(-1), embedding_loss)

  def kernels(self):
    """The weights Keras' kernel_regularizer covers: every Linear weight."""
    return [m.weight for m in self.modules() if isinstance(m, nn.Linear)]


def loss_fn(model, batch, spec):
  """The Keras model's training loss (module docstring)."""
  ctr, cvr, embedding_loss = model(batch)
  bce = nn.functional.binary_cross_entropy_with_logits
  loss = bce(ctr, batch["label_ctr"]) + bce(cvr, batch["label_cvr"])
  loss = loss + spec["order_weight"] * torch.relu(torch.sigmoid(cvr) - torch.sigmoid(ctr)).mean()
  l2 = spec["l2"] * torch.stack([w.square().sum() for w in model.kernels()]).sum()
  return loss + l2 + embedding_loss


def learning_rate(step: int, schedule) -> float:
  """Keras' CosineDecay with a linear warmup from 0 (models/training.warmup_cosine)."""
  peak, warmup = schedule["peak"], schedule["warmup_steps"]
  if step < warmup:
    return peak * step / warmup
  progress = min(step - warmup, schedule["decay_steps"]) / schedule["decay_steps"]
  cosine = 0.5 * (1 + math.cos(math.pi * progress))
  return peak * ((1 - schedule["alpha"]) * cosine + schedule["alpha"])


def batches(tensors, batch_size: int, generator):
  """Endless batches: a fresh permutation of the rows per pass, its remainder dropped."""
  rows = next(iter(tensors.values())).shape[0]
  while True:
    order = torch.randperm(rows, generator=generator)
    for start in range(0, rows - batch_size + 1, batch_size):
      index = order[start:start + batch_size]
      yield {name: t[index] for name, t in tensors.items()}


def train(model, tensors, spec):
  """`spec["steps"]` Adam steps; returns the steady examples per second and per CPU
  second of this process (from step `warmup` on)."""
  adam = spec["adam"]
  optimizer = torch.optim.Adam(model.parameters(), lr=0.0, betas=(adam["beta1"], adam["beta2"]),
                               eps=adam["epsilon"])
  stream = batches(tensors, spec["batch_size"], torch.Generator().manual_seed(spec["seed"]))
  model.train()
  started = None
  for step in range(spec["steps"]):
    if step == spec["warmup"]:
      started = (time.perf_counter(), time.process_time())
    for group in optimizer.param_groups:
      group["lr"] = learning_rate(step, spec["learning_rate"])
    optimizer.zero_grad(set_to_none=True)
    loss_fn(model, next(stream), spec).backward()
    optimizer.step()
  examples = (spec["steps"] - spec["warmup"]) * spec["batch_size"]
  return (examples / (time.perf_counter() - started[0]),
          examples / (time.process_time() - started[1]))


def predict(model, tensors, batch_size: int = 8192):
  """Probabilities per task on every row of `tensors`."""
  model.eval()
  rows = next(iter(tensors.values())).shape[0]
  out = {"ctr": [], "cvr": []}
  with torch.no_grad():
    for start in range(0, rows, batch_size):
      ctr, cvr, _ = model({k: t[start:start + batch_size] for k, t in tensors.items()})
      out["ctr"].append(torch.sigmoid(ctr).numpy())
      out["cvr"].append(torch.sigmoid(cvr).numpy())
  return {task: np.concatenate(parts) for task, parts in out.items()}


def _tensors(path):
  with np.load(path) as arrays:
    return {name: torch.from_numpy(arrays[name]) for name in arrays.files}


def main(spec_path: str) -> None:
  with open(spec_path) as f:
    spec = json.load(f)
  torch.set_num_threads(spec["threads"])
  torch.set_num_interop_threads(spec["threads"])
  torch.manual_seed(spec["seed"])
  model = AITM(spec)
  train_tensors = _tensors(spec["train"])
  examples_per_second, examples_per_cpu_second = train(model, train_tensors, spec)
  predictions = predict(model, _tensors(spec["test"]))
  np.savez(spec["predictions"], **predictions)
  with open(spec["out"], "w") as f:
    json.dump({"examples_per_second": examples_per_second,
               "examples_per_cpu_second": examples_per_cpu_second,
               "parameters": sum(p.numel() for p in model.parameters()),
               "torch": torch.__version__, "threads": torch.get_num_threads()}, f)


if __name__ == "__main__":
  main(sys.argv[1])
