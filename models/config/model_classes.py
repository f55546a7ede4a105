"""EasyRec's model-class messages as backbones: one mechanism builds every model.

EasyRec configures a multi-task model either as a backbone DAG (`model_params` +
`backbone`, model_class "MultiTaskModel") or with a message of its own class:
`esmm {}`, `mmoe {}`, `ple {}`, `dbmtl {}`, `simple_multi_task {}`. `as_backbone`
rewrites the second kind into the first, with the blocks and towers EasyRec's
model code builds (easy_rec/python/model/{esmm,mmoe,ple,dbmtl,simple_multi_task}.py),
so the config checker, the Keras builder (models/backbone.py) and `aitm check` see
one DAG whatever the style:

    simple_multi_task  group `all` -> towers (shared bottom)
    mmoe               group `all` -> MMoE (expert_dnn x num_expert, a softmax gate
                       per task) -> one expert mix per tower
    ple                group `all` -> PLE, one level per extraction_network
    dbmtl              group `all` -> bottom_dnn [-> MMoE] -> towers, each tower's
                       relation_dnn over its own features and its related towers'
    esmm               one DNN per `groups` entry, concatenated (else group `all`)
                       -> towers ctr, then cvr with output p(ctr) x p(cvr | click)

EasyRec's DNN (hidden_units, dropout_ratio, activation, use_bn) becomes the
project's MLP with every layer alike and glorot initialization, as
`tf.layers.dense` has. No TensorFlow here: the checker runs before it loads.
"""

from typing import Callable, Dict

from models.config import messages

# model_class -> the `model` oneof field holding its settings, as EasyRec pairs them.
MODEL_CLASSES: Dict[str, str] = {
    "MultiTaskModel": "model_params", "ESMM": "esmm", "MMoE": "mmoe", "PLE": "ple",
    "DBMTL": "dbmtl", "SimpleMultiTask": "simple_multi_task",
}
# The feature group the model classes read when nothing else is said, as EasyRec's.
ALL_GROUP = "all"


def dnn_as_mlp(dnn, mlp) -> None:
  """Fills the MLP message `mlp` from EasyRec's DNN message `dnn`: every layer with the
  DNN's batch norm and activation (EasyRec's DNN has no separate last layer), a bias
  where there is no batch norm, glorot initialization."""
  mlp.hidden_units.extend(dnn.hidden_units)
  mlp.dropout_ratio.extend(dnn.dropout_ratio)
  mlp.activation = mlp.final_activation = dnn.activation
  mlp.use_bn = mlp.use_final_bn = dnn.use_bn
  mlp.use_bias = mlp.use_final_bias = not dnn.use_bn
  mlp.initializer = "glorot_uniform"


def _copy_tower(tower, towers) -> object:
  """A TaskTower appended to the BayesTaskTower list `towers`, field by field (the
  messages share their field names)."""
  copy = towers.add()
  for field, value in tower.ListFields():
    target = getattr(copy, field.name)
    if field.label == field.LABEL_REPEATED:
      target.extend(value)
    elif field.message_type is not None:
      target.CopyFrom(value)
    else:
      setattr(copy, field.name, value)
  return copy


def _block(model, name: str, group: str = "", block: str = ""):
  item = model.backbone.blocks.add(name=name)
  source = item.inputs.add()
  if group:
    source.feature_group_name = group
  else:
    source.block_name = block
  return item


def _dnn_block(model, name, dnn, group="", block="") -> str:
  """A block applying EasyRec's DNN `dnn`, or passing its input on when it has no
  hidden_units (EasyRec's empty DNN is the identity). Returns the block's name."""
  item = _block(model, name, group, block)
  if dnn.hidden_units:
    item.keras_layer.class_name = "MLP"
    dnn_as_mlp(dnn, item.keras_layer.mlp)
  return name


def _mmoe_block(model, name, expert_dnn, num_expert, num_task, block="", group=""):
  item = _block(model, name, group, block)
  item.keras_layer.class_name = "MMoE"
  settings = item.keras_layer.mmoe
  settings.num_task, settings.num_expert = num_task, num_expert
  dnn_as_mlp(expert_dnn, settings.expert_mlp)
  return name


def _simple_multi_task(settings, model, where, labels) -> None:
  _block(model, "bottom", group=ALL_GROUP)
  for tower in settings.task_towers:
    _copy_tower(tower, model.model_params.task_towers)


def _mmoe(settings, model, where, labels) -> None:
  if settings.experts:
    raise where.error("experts", "MMoE's list of experts is deprecated in EasyRec and not "
                      "supported: give expert_dnn and num_expert")
  if not settings.HasField("expert_dnn") or settings.num_expert < 1:
    raise where.error("mmoe", "MMoE needs expert_dnn and num_expert >= 1 (EasyRec asserts "
                      "num_expert > 0)")
  _mmoe_block(model, "mmoe", settings.expert_dnn, settings.num_expert,
              len(settings.task_towers), group=ALL_GROUP)
  for tower in settings.task_towers:
    _copy_tower(tower, model.model_params.task_towers)


def _ple(settings, model, where, labels) -> None:
  if not settings.extraction_networks:
    raise where.error("ple", "PLE needs extraction_networks")
  item = _block(model, "ple", group=ALL_GROUP)
  item.keras_layer.class_name = "PLE"
  ple = item.keras_layer.ple
  ple.num_task = len(settings.task_towers)
  ple.num_level = len(settings.extraction_networks)
  last = len(settings.extraction_networks) - 1
  for index, network in enumerate(settings.extraction_networks):
    name = network.network_name or f"extraction_networks[{index}]"
    if network.expert_num_per_task < 1:
      raise where.error("expert_num_per_task", f"extraction network '{name}' needs "
                        "expert_num_per_task >= 1")
    if not network.task_expert_net.hidden_units:
      raise where.error("task_expert_net", f"extraction network '{name}' needs "
                        "task_expert_net with hidden_units")
    share = network.share_num
    if share and not network.share_expert_net.hidden_units:
      raise where.error("share_num", f"extraction network '{name}' has share_num {share} "
                        "but no share_expert_net hidden_units")
    if share and (network.share_expert_net.hidden_units[-1]
                  != network.task_expert_net.hidden_units[-1]):
      raise where.error("share_expert_net", f"extraction network '{name}': the shared and "
                        "task experts must end in the same width (their outputs are mixed)")
    if share == 0 and index < last:
      raise where.error("share_num", f"extraction network '{name}' needs share_num >= 1: "
                        "the next level's shared gate mixes its shared experts")
    level = ple.levels.add(num_expert_per_task=network.expert_num_per_task,
                           num_expert_share=share)
    dnn_as_mlp(network.task_expert_net, level.task_expert_mlp)
    if share:
      dnn_as_mlp(network.share_expert_net, level.share_expert_mlp)
  for tower in settings.task_towers:
    _copy_tower(tower, model.model_params.task_towers)


def _dbmtl(settings, model, where, labels) -> None:
  bottom = _dnn_block(model, "bottom_dnn", settings.bottom_dnn, group=ALL_GROUP)
  if settings.HasField("expert_dnn"):
    if settings.num_expert < 1:
      raise where.error("num_expert", "DBMTL's expert_dnn needs num_expert >= 1")
    _mmoe_block(model, "mmoe", settings.expert_dnn, settings.num_expert,
                len(settings.task_towers), block=bottom)
  for tower in settings.task_towers:
    copy = model.model_params.task_towers.add()
    copy.CopyFrom(tower)
    # dbmtl.py builds every tower's relation DNN, an empty one being the identity; the
    # backbone style builds it only where it is given.
    copy.relation_dnn.SetInParent()


def _esmm(settings, model, where, labels) -> None:
  for name in ("ctr_tower", "cvr_tower"):
    if not settings.HasField(name):
      raise where.error("esmm", f"ESMM needs {name}")
    tower = getattr(settings, name)
    if tower.num_class != 1:
      raise where.error("num_class", f"ESMM's {name} must have num_class 1 (EasyRec asserts "
                        "it)")
  if settings.groups:
    parts = []
    for group in settings.groups:
      parts.append(_dnn_block(model, f"{group.input}_dnn", group.dnn, group=group.input))
    bottom = model.backbone.blocks.add(name="bottom")
    for part in parts:
      bottom.inputs.add(block_name=part)
  else:
    _block(model, "bottom", group=ALL_GROUP)
  ctr = _copy_tower(settings.ctr_tower, model.model_params.task_towers)
  cvr = _copy_tower(settings.cvr_tower, model.model_params.task_towers)
  # esmm.py lists its towers cvr, ctr: a tower without label_name takes label_fields[0]
  # (cvr) or [1] (ctr) by that order, not by the funnel order the towers have here.
  for tower, index in ((cvr, 0), (ctr, 1)):
    if not tower.label_name and index < len(labels):
      tower.label_name = labels[index]
  # esmm.py trains p_ctcvr = p_ctr x p_cvr against the impressions' labels and exports it
  # as probs_ctcvr; here that product is the cvr output, P(buy | impression), as in every
  # other model, so `aitm compare` lines them up.
  cvr.conditional_on = ctr.tower_name


_TRANSLATIONS: Dict[str, Callable] = {
    "simple_multi_task": _simple_multi_task, "mmoe": _mmoe, "ple": _ple, "dbmtl": _dbmtl,
    "esmm": _esmm,
}


def as_backbone(model, where, labels=()):
  """The EasyRecModel `model` in the backbone style: itself when it is already, else a
  copy whose model-class message became backbone blocks and `model_params` towers
  (model_class "MultiTaskModel"; model_name kept, else the class's name).
  `where`: the config's locator, for errors naming a field and its line; `labels`:
  data_config.label_fields, which towers without label_name take by position."""
  style = model.WhichOneof("model")
  expected = MODEL_CLASSES.get(model.model_class)
  if expected is None:
    raise where.error("model_class", f"'{model.model_class}' is not a multi-task model this "
                      f"project builds; known: {sorted(MODEL_CLASSES)}", model.model_class)
  if style is None and expected != "model_params":
    raise where.error("model_class", f"model_class '{model.model_class}' needs its settings "
                      f"in '{expected} {{ }}'", model.model_class)
  if style is not None and style != expected:
    raise where.error("model_class", f"model_class '{model.model_class}' takes "
                      f"'{expected} {{ }}', got '{style} {{ }}'", model.model_class)
  if style in (None, "model_params"):
    return model
  if model.HasField("backbone"):
    raise where.error("backbone", f"'{style} {{ }}' builds its own network: a backbone "
                      "goes with model_class \"MultiTaskModel\" and model_params")
  settings = getattr(model, style)
  if style != "esmm" and not settings.task_towers:
    raise where.error(style, f"'{style} {{ }}' needs task_towers")
  translated = messages.message_class("EasyRecModel")()
  translated.CopyFrom(model)
  translated.ClearField(style)
  translated.model_class = "MultiTaskModel"
  translated.model_name = model.model_name or model.model_class
  translated.model_params.l2_regularization = settings.l2_regularization
  groups = {g.group_name for g in model.feature_groups}
  needs_all = style != "esmm" or not settings.groups
  if needs_all and ALL_GROUP not in groups:
    raise where.error("feature_groups", f"'{style} {{ }}' reads the feature group "
                      f"'{ALL_GROUP}' (as EasyRec's {model.model_class} does); the config "
                      f"has {sorted(groups)}")
  _TRANSLATIONS[style](settings, translated, where, labels)
  return translated
