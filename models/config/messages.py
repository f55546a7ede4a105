"""The config language: the subset of EasyRec's `pipeline.proto` this project reads.

EasyRec users write configs in protobuf text format against EasyRec's
`.proto` files. These message definitions keep EasyRec's message and field
names (numbers differ, text format never sees them), so an EasyRec
`aitm_on_taobao.config` parses unchanged; anything outside the subset is
rejected by the protobuf parser with its line and column.

They are declared here in Python and built into a descriptor pool at import:
the protobuf runtime parses and type-checks text format, and no `protoc`
step or generated `_pb2` module is needed. Fields marked "extension" are
ours, not EasyRec's; docs/config_extensions.md lists them.
"""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "aitm.config"
_T = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _T.TYPE_STRING, "bool": _T.TYPE_BOOL, "float": _T.TYPE_FLOAT,
    "double": _T.TYPE_DOUBLE, "int32": _T.TYPE_INT32, "uint32": _T.TYPE_UINT32,
    "uint64": _T.TYPE_UINT64,
}

# Enums: name -> values (the first is the proto2 default).
ENUMS = {
    "InputType": ["CSVInput"],
    "FieldType": ["INT32", "INT64", "STRING", "FLOAT", "DOUBLE", "BOOL"],
    "FeatureType": ["IdFeature", "RawFeature", "TagFeature"],
    "WideOrDeep": ["DEEP", "WIDE", "WIDE_AND_DEEP"],
    "LossType": ["CLASSIFICATION", "ORDER_CALIBRATE_LOSS"],
    # EasyRec's train.proto enum, every value in its order, so the numbers match
    # EasyRec's (0..5) and any EasyRec config parses; the Trainer refuses the values
    # it can't run (models.training.SUPPORTED_STRATEGIES) with a message naming them.
    "DistributionStrategy": ["NoStrategy", "PSStrategy", "MirroredStrategy",
                             "CollectiveAllReduceStrategy", "ExascaleStrategy",
                             "MultiWorkerMirroredStrategy"],
}

# Messages: name -> fields (label, type, name[, default][, oneof=...]).
# label: "opt", "rep"; type: a scalar above, an enum or a message name.
MESSAGES = {
    "EasyRecConfig": [
        ("opt", "string", "train_input_path"),
        ("opt", "string", "eval_input_path"),
        ("opt", "string", "model_dir"),
        ("opt", "TrainConfig", "train_config"),
        ("opt", "EvalConfig", "eval_config"),
        ("opt", "DatasetConfig", "data_config"),
        ("opt", "FeatureConfigV2", "feature_config"),
        ("rep", "FeatureConfig", "feature_configs"),
        ("opt", "EasyRecModel", "model_config"),
    ],
    # --- training -----------------------------------------------------------
    "TrainConfig": [
        ("rep", "Optimizer", "optimizer_config"),
        ("opt", "uint32", "num_steps"),
        ("opt", "bool", "sync_replicas", "true"),
        ("opt", "uint32", "save_checkpoints_steps"),
        ("opt", "uint32", "save_summary_steps"),
        ("opt", "uint32", "log_step_count_steps"),
        ("opt", "uint32", "keep_checkpoint_max"),
        ("opt", "string", "fine_tune_checkpoint"),
        # EasyRec's fields 20 and 21 (numbers here are positional, as for every field):
        # the tf.distribute strategy (models/distribution.py) and EasyRec's GPUs per
        # worker, which caps the GPUs MirroredStrategy mirrors over.
        ("opt", "DistributionStrategy", "train_distribute", "NoStrategy"),
        ("opt", "int32", "num_gpus_per_worker", "1"),
    ],
    "Optimizer": [
        ("opt", "AdamOptimizer", "adam_optimizer", None, "optimizer"),
        ("opt", "AdagradOptimizer", "adagrad_optimizer", None, "optimizer"),
        ("opt", "MomentumOptimizer", "momentum_optimizer", None, "optimizer"),
        ("opt", "bool", "use_moving_average", "false"),
    ],
    "AdamOptimizer": [
        ("opt", "LearningRate", "learning_rate"),
        ("opt", "float", "beta1", "0.9"),
        ("opt", "float", "beta2", "0.999"),
    ],
    "AdagradOptimizer": [("opt", "LearningRate", "learning_rate")],
    "MomentumOptimizer": [
        ("opt", "LearningRate", "learning_rate"),
        ("opt", "float", "momentum_optimizer_value", "0.9"),
    ],
    "LearningRate": [
        ("opt", "ConstantLearningRate", "constant_learning_rate", None, "learning_rate"),
        ("opt", "ExponentialDecayLearningRate", "exponential_decay_learning_rate", None,
         "learning_rate"),
    ],
    "ConstantLearningRate": [("opt", "float", "learning_rate", "0.002")],
    "ExponentialDecayLearningRate": [
        ("opt", "float", "initial_learning_rate", "0.002"),
        ("opt", "uint32", "decay_steps", "4000000"),
        ("opt", "float", "decay_factor", "0.95"),
        ("opt", "bool", "staircase", "true"),
        ("opt", "float", "min_learning_rate", "0.0"),
    ],
    "EvalConfig": [
        ("rep", "EvalMetrics", "metrics_set"),
        ("opt", "uint32", "num_examples"),
        # extension: input fields the evaluation is sliced by, in this order: metrics
        # for each of their values besides the overall ones (models/eval_config.py).
        ("rep", "string", "slice_fields"),
    ],
    # --- data ---------------------------------------------------------------
    "DatasetConfig": [
        ("opt", "uint32", "batch_size"),
        ("rep", "string", "label_fields"),
        ("rep", "Field", "input_fields"),
        ("opt", "uint32", "prefetch_size", "32"),
        ("opt", "InputType", "input_type"),
        ("opt", "string", "separator", ","),
        ("opt", "uint32", "num_epochs"),
        ("opt", "bool", "shuffle", "true"),
        ("opt", "uint32", "shuffle_buffer_size", "32"),
        # extension: the input field holding the user id. Transform then computes
        # `user_activity`, the user's impressions in the train split bucketed
        # (models/preprocessing.py), and the evaluation is sliced by it too.
        ("opt", "string", "user_id_field"),
    ],
    "Field": [
        ("opt", "string", "input_name"),
        ("opt", "FieldType", "input_type", "STRING"),
        ("opt", "string", "default_val"),
    ],
    # --- features -----------------------------------------------------------
    "FeatureConfigV2": [("rep", "FeatureConfig", "features")],
    "FeatureConfig": [
        ("opt", "string", "feature_name"),
        ("rep", "string", "input_names"),
        ("opt", "FeatureType", "feature_type", "IdFeature"),
        ("opt", "uint32", "embedding_dim"),
        ("opt", "uint64", "hash_bucket_size"),
        ("opt", "uint64", "num_buckets"),
        ("rep", "float", "boundaries"),
        ("opt", "string", "separator", "|"),
        ("opt", "string", "vocab_file"),
        ("rep", "string", "vocab_list"),
        ("opt", "string", "combiner", "mean"),
        # extension: learn the vocabulary from the training data in Transform
        # (tft.compute_and_apply_vocabulary), with `num_oov_buckets` for unseen values.
        ("opt", "bool", "compute_vocabulary", "false"),
        ("opt", "uint32", "num_oov_buckets", "1"),
        # extension: with compute_vocabulary, values seen fewer times than this in
        # the training data get an OOV id (tft.compute_and_apply_vocabulary's
        # frequency_threshold): only ids with enough impressions get a row.
        ("opt", "uint32", "frequency_threshold", "0"),
        # extension: TagFeature values beyond this many are dropped (ids are padded to it).
        ("opt", "uint32", "max_tags", "8"),
    ],
    # --- model --------------------------------------------------------------
    "EasyRecModel": [
        ("opt", "string", "model_name"),
        ("opt", "string", "model_class", "MultiTaskModel"),
        ("rep", "FeatureGroupConfig", "feature_groups"),
        ("opt", "BackboneTower", "backbone"),
        ("opt", "MultiTaskModelParams", "model_params"),
        ("opt", "float", "embedding_regularization", "0.0"),
    ],
    "FeatureGroupConfig": [
        ("opt", "string", "group_name"),
        ("rep", "string", "feature_names"),
        ("opt", "WideOrDeep", "wide_deep", "DEEP"),
    ],
    "BackboneTower": [
        ("rep", "Block", "blocks"),
        ("rep", "string", "output_blocks"),
    ],
    "Block": [
        ("opt", "string", "name"),
        ("rep", "Input", "inputs"),
        ("opt", "int32", "input_concat_axis", "-1"),
        ("opt", "bool", "merge_inputs_into_list", "false"),
        ("opt", "KerasLayer", "keras_layer", None, "layer"),
    ],
    "Input": [
        ("opt", "string", "feature_group_name", None, "name"),
        ("opt", "string", "block_name", None, "name"),
        ("opt", "string", "input_slice"),
    ],
    # One `params` field per layer kind, the settings of its models/layer_registry.py entry.
    "KerasLayer": [
        ("opt", "string", "class_name"),
        ("opt", "MLP", "mlp", None, "params"),
        ("opt", "AITM", "aitm", None, "params"),
        ("opt", "MMoELayer", "mmoe", None, "params"),
        ("opt", "PLELayer", "ple", None, "params"),
        ("opt", "FM", "fm", None, "params"),
    ],
    "FM": [
        ("opt", "bool", "use_variant", "false"),
    ],
    "MLP": [
        ("rep", "uint32", "hidden_units"),
        ("rep", "float", "dropout_ratio"),
        ("opt", "string", "activation", "relu"),
        ("opt", "bool", "use_bn", "true"),
        ("opt", "bool", "use_final_bn", "true"),
        ("opt", "string", "final_activation", "relu"),
        ("opt", "bool", "use_bias", "false"),
        ("opt", "bool", "use_final_bias", "false"),
        ("opt", "string", "initializer", "he_uniform"),
    ],
    "AITM": [
        ("opt", "MLP", "transfer_mlp"),
        ("opt", "uint32", "project_dim"),
        ("opt", "bool", "stop_gradient", "true"),
    ],
    "MMoELayer": [
        ("opt", "uint32", "num_task"),
        ("opt", "uint32", "num_expert"),
        ("opt", "MLP", "expert_mlp"),
        ("opt", "MLP", "gate_mlp"),
    ],
    "PLELayer": [
        ("opt", "uint32", "num_task"),
        ("opt", "uint32", "num_level", "2"),
        ("opt", "uint32", "num_expert_per_task", "1"),
        ("opt", "uint32", "num_expert_share", "1"),
        ("opt", "MLP", "expert_mlp"),
        ("opt", "MLP", "gate_mlp"),
    ],
    "MultiTaskModelParams": [
        ("rep", "TaskTower", "task_towers"),
        ("opt", "float", "l2_regularization", "0.0"),
    ],
    "TaskTower": [
        ("opt", "string", "tower_name"),
        ("opt", "string", "label_name"),
        ("rep", "EvalMetrics", "metrics_set"),
        ("opt", "LossType", "loss_type", "CLASSIFICATION"),
        ("opt", "uint32", "num_class", "1"),
        ("opt", "DNN", "dnn"),
        ("opt", "float", "weight", "1.0"),
        ("rep", "Loss", "losses"),
        # EasyRec's BayesTaskTower field: the towers ORDER_CALIBRATE_LOSS compares with.
        ("rep", "string", "relation_tower_names"),
        # extension (ESMM): this head learns P(label | the named tower's event); the
        # tower's output is their product, P(label | impression), trained on all rows.
        ("opt", "string", "conditional_on"),
    ],
    "DNN": [
        ("rep", "uint32", "hidden_units"),
        ("rep", "float", "dropout_ratio"),
        ("opt", "string", "activation", "relu"),
        ("opt", "bool", "use_bn", "true"),
    ],
    "Loss": [
        ("opt", "LossType", "loss_type"),
        ("opt", "float", "weight", "1.0"),
        ("opt", "string", "loss_name"),
    ],
    "EvalMetrics": [
        ("opt", "AUC", "auc", None, "metric"),
    ],
    "AUC": [("opt", "uint32", "num_thresholds", "200")],
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
  file = descriptor_pb2.FileDescriptorProto(
      name="aitm/config/easyrec_subset.proto", package=_PACKAGE, syntax="proto2")
  for name, values in ENUMS.items():
    enum = file.enum_type.add(name=name)
    for number, value in enumerate(values):
      enum.value.add(name=value, number=number)
  for name, fields in MESSAGES.items():
    message = file.message_type.add(name=name)
    oneofs = {}
    for number, spec in enumerate(fields, start=1):
      label, type_name, field_name = spec[:3]
      default = spec[3] if len(spec) > 3 else None
      oneof = spec[4] if len(spec) > 4 else None
      field = message.field.add(
          name=field_name, number=number,
          label=_T.LABEL_REPEATED if label == "rep" else _T.LABEL_OPTIONAL)
      if type_name in _SCALARS:
        field.type = _SCALARS[type_name]
      elif type_name in ENUMS:
        field.type, field.type_name = _T.TYPE_ENUM, f".{_PACKAGE}.{type_name}"
      elif type_name in MESSAGES:
        field.type, field.type_name = _T.TYPE_MESSAGE, f".{_PACKAGE}.{type_name}"
      else:
        raise TypeError(f"{name}.{field_name}: unknown type {type_name}")
      if default is not None:
        field.default_value = default
      if oneof is not None:
        if oneof not in oneofs:
          oneofs[oneof] = len(message.oneof_decl)
          message.oneof_decl.add(name=oneof)
        field.oneof_index = oneofs[oneof]
  return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def message_class(name: str):
  """The generated message class of one of MESSAGES, e.g. message_class('EasyRecConfig')."""
  descriptor = _POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}")
  return message_factory.MessageFactory(_POOL).GetPrototype(descriptor)


EasyRecConfig = message_class("EasyRecConfig")
