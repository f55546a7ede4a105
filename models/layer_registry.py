"""The backbone's layer kinds: one entry each, read by the config checker and the builder.

A backbone block names its layer as EasyRec does,

    keras_layer { class_name: "MMoE" mmoe { num_task: 2 ... } }

and `LAYER_KINDS[class_name]` says everything about that kind: the KerasLayer
field holding its settings, the Keras layer it builds and the arguments the
settings give it, how many outputs it has, and what the config checker
verifies beyond what the parser does (models/config/pipeline_config.py). To
add a layer kind see docs/adding_a_layer.md.

No TensorFlow here: the config checker refuses a bad config before TensorFlow
loads, so a kind names its Keras layer by import path and `LayerKind.build`
imports it.
"""

import dataclasses
import importlib
from typing import Any, Callable, Dict, Optional, Sequence, Tuple


def mlp_options(mlp, l2_reg: float) -> Dict[str, Any]:
  """EasyRec's MLP message -> `MLP` keyword arguments."""
  return dict(hidden_units=list(mlp.hidden_units),
              dropout_rate=list(mlp.dropout_ratio) or 0.0,
              activation=mlp.activation, use_bn=mlp.use_bn,
              use_final_bn=mlp.use_final_bn, final_activation=mlp.final_activation,
              use_bias=mlp.use_bias, use_final_bias=mlp.use_final_bias,
              initializer=mlp.initializer, l2_reg=l2_reg)


def _nothing(settings) -> Sequence[Any]:
  del settings
  return ()


@dataclasses.dataclass(frozen=True)
class LayerKind:
  """One kind of backbone layer.

  Attributes:
    class_name: `keras_layer.class_name` in a config, EasyRec's name for it.
    params: the KerasLayer oneof field (models/config/messages.py) holding its
      settings message.
    layer: import path of its Keras layer class, "module.Class".
    arguments: (settings message, l2 regularization) -> the layer's keyword
      arguments but `name` (the block's name, as in EasyRec).
    mlps: settings -> the nested MLP messages it builds, each checked for
      hidden_units.
    positive: settings fields that must be >= 1.
    outputs: the settings field that counts its outputs, one tensor per task
      (a consumer picks one with input_slice "[i]"); None: a single output.
    input_list: for a layer that takes a list of two or more inputs
      (merge_inputs_into_list: true), what the list holds, for the error
      message; None: one input (several are concatenated).
    list_input: the layer takes one input that is a list (an input_layer
      block's feature list), as EasyRec's SENet does.
    problems: settings -> (field, message) pairs for what else is wrong with
      them, beyond `mlps` and `positive`.
  """
  class_name: str
  params: str
  layer: str
  arguments: Callable[[Any, float], Dict[str, Any]]
  mlps: Callable[[Any], Sequence[Any]] = _nothing
  positive: Tuple[str, ...] = ()
  outputs: Optional[str] = None
  input_list: Optional[str] = None
  list_input: bool = False
  problems: Callable[[Any], Sequence[Tuple[str, str]]] = _nothing

  def output_count(self, settings) -> int:
    """How many tensors the layer returns for these settings."""
    return int(getattr(settings, self.outputs)) if self.outputs else 1

  def layer_class(self) -> type:
    """The Keras layer class `layer` names, imported."""
    module, _, name = self.layer.rpartition(".")
    return getattr(importlib.import_module(module), name)

  def build(self, settings, l2_reg: float, name: str):
    """The Keras layer for one block: `settings` is its `params` message."""
    return self.layer_class()(**self.arguments(settings, l2_reg), name=name)


def _experts(settings, l2_reg: float) -> Dict[str, Any]:
  """The expert and gate arguments MMoE and PLE share."""
  gate = list(settings.gate_mlp.hidden_units) if settings.HasField("gate_mlp") else []
  expert = settings.expert_mlp
  return dict(expert_units=list(expert.hidden_units), gate_units=gate,
              use_bn=expert.use_bn, dropout_rate=(list(expert.dropout_ratio) or [0.0])[0],
              num_task=settings.num_task, l2_reg=l2_reg)


def _aitm_arguments(aitm, l2_reg: float) -> Dict[str, Any]:
  return dict(transfer_mlp=mlp_options(aitm.transfer_mlp, l2_reg),
              project_dim=aitm.project_dim or None, stop_gradient=aitm.stop_gradient,
              l2_reg=l2_reg)


def _ple_arguments(ple, l2_reg: float) -> Dict[str, Any]:
  if not ple.levels:
    return dict(num_level=ple.num_level, num_expert_per_task=ple.num_expert_per_task,
                num_expert_share=ple.num_expert_share, **_experts(ple, l2_reg))
  gate = list(ple.gate_mlp.hidden_units) if ple.HasField("gate_mlp") else []
  levels = [dict(num_expert_per_task=level.num_expert_per_task,
                 num_expert_share=level.num_expert_share,
                 task_expert=mlp_options(level.task_expert_mlp, l2_reg),
                 share_expert=(mlp_options(level.share_expert_mlp, l2_reg)
                               if level.num_expert_share else None))
            for level in ple.levels]
  return dict(num_task=ple.num_task, levels=levels, gate_units=gate, l2_reg=l2_reg,
              expert_units=levels[-1]["task_expert"]["hidden_units"])


def _ple_mlps(ple) -> Sequence[Any]:
  if not ple.levels:
    return [ple.expert_mlp]
  return [mlp for level in ple.levels for mlp in
          ([level.task_expert_mlp] + ([level.share_expert_mlp] if level.num_expert_share
                                       else []))]


def _masknet_problems(masknet) -> Sequence[Tuple[str, str]]:
  if not masknet.mask_blocks:
    return [("mask_blocks", "MaskNet needs mask_blocks")]
  return [("mask_blocks", f"mask block {i} needs reduction_factor or aggregation_size")
          for i, b in enumerate(masknet.mask_blocks)
          if not (b.HasField("reduction_factor") and b.reduction_factor > 0)
          and not b.aggregation_size]


def _masknet_arguments(masknet, l2_reg: float) -> Dict[str, Any]:
  blocks = [dict(reduction_factor=b.reduction_factor if b.HasField("reduction_factor")
                 else None,
                 aggregation_size=b.aggregation_size or None,
                 output_size=b.output_size or None, input_layer_norm=b.input_layer_norm,
                 projection_dim=b.projection_dim or None, l2_reg=l2_reg)
            for b in masknet.mask_blocks]
  return dict(mask_blocks=blocks, use_parallel=masknet.use_parallel,
              mlp=mlp_options(masknet.mlp, l2_reg) if masknet.HasField("mlp") else None,
              input_layer_norm=masknet.input_layer_norm, l2_reg=l2_reg)


_KINDS = (
    LayerKind("MLP", params="mlp", layer="models.layers.mlp.MLP",
              arguments=mlp_options, mlps=lambda mlp: [mlp]),
    LayerKind("AITMTower", params="aitm", layer="models.layers.aitm_tower.AITMTower",
              arguments=_aitm_arguments, mlps=lambda aitm: [aitm.transfer_mlp],
              input_list="the current tower then the preceding ones"),
    LayerKind("MMoE", params="mmoe", layer="models.layers.mmoe.MMoE",
              arguments=lambda mmoe, l2: dict(num_expert=mmoe.num_expert,
                                              **_experts(mmoe, l2)),
              mlps=lambda mmoe: [mmoe.expert_mlp], positive=("num_task", "num_expert"),
              outputs="num_task"),
    LayerKind("PLE", params="ple", layer="models.layers.ple.PLE",
              arguments=_ple_arguments, mlps=_ple_mlps,
              positive=("num_task",), outputs="num_task"),
    # EasyRec's SENet (FiBiNET) and MaskNet, with EasyRec's parameters; no l2 in SENet,
    # as EasyRec's has none.
    LayerKind("SENet", params="senet", layer="models.layers.senet.SENet",
              arguments=lambda senet, l2: dict(
                  reduction_ratio=senet.reduction_ratio,
                  num_squeeze_group=senet.num_squeeze_group,
                  use_skip_connection=senet.use_skip_connection,
                  use_output_layer_norm=senet.use_output_layer_norm),
              positive=("reduction_ratio", "num_squeeze_group"), list_input=True),
    LayerKind("MaskNet", params="masknet", layer="models.layers.masknet.MaskNet",
              arguments=_masknet_arguments, problems=_masknet_problems,
              mlps=lambda masknet: [masknet.mlp] if masknet.HasField("mlp") else []),
    # No weights, so no l2.
    LayerKind("FM", params="fm", layer="models.layers.fm.FM",
              arguments=lambda fm, l2: dict(use_variant=fm.use_variant)),
)
# keras_layer.class_name -> its kind.
LAYER_KINDS: Dict[str, LayerKind] = {kind.class_name: kind for kind in _KINDS}
