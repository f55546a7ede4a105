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
    # EasyRec's loss.proto enum, every value at its number (listed in number order), so
    # every EasyRec config parses; the checker refuses the ones a binary task can't
    # train (models/loss_types.py) by name.
    "LossType": ["CLASSIFICATION", "L2_LOSS", "SIGMOID_L2_LOSS", "CROSS_ENTROPY_LOSS",
                 "SOFTMAX_CROSS_ENTROPY", "CIRCLE_LOSS", "MULTI_SIMILARITY_LOSS",
                 "SOFTMAX_CROSS_ENTROPY_WITH_NEGATIVE_MINING", "PAIR_WISE_LOSS",
                 "F1_REWEIGHTED_LOSS", "BINARY_FOCAL_LOSS", "PAIRWISE_FOCAL_LOSS",
                 "PAIRWISE_LOGISTIC_LOSS", "JRC_LOSS", "ORDER_CALIBRATE_LOSS",
                 "BINARY_CROSS_ENTROPY_LOSS", "KL_DIVERGENCE_LOSS", "PAIRWISE_HINGE_LOSS",
                 "LISTWISE_RANK_LOSS", "LISTWISE_DISTILL_LOSS", "ZILN_LOSS"],
    "LossWeightStrategy": ["Fixed", "Uncertainty", "Random"],
    # EasyRec's train.proto enum, every value in its order, so the numbers match
    # EasyRec's (0..5) and any EasyRec config parses; the Trainer refuses the values
    # it can't run (models.training.SUPPORTED_STRATEGIES) with a message naming them.
    "DistributionStrategy": ["NoStrategy", "PSStrategy", "MirroredStrategy",
                             "CollectiveAllReduceStrategy", "ExascaleStrategy",
                             "MultiWorkerMirroredStrategy"],
}

# The fields EasyRec's TaskTower and BayesTaskTower share, in TaskTower's order.
_TOWER_FIELDS = [
    ("opt", "string", "tower_name"),
    ("opt", "string", "label_name"),
    ("rep", "EvalMetrics", "metrics_set"),
    ("opt", "LossType", "loss_type", "CLASSIFICATION"),
    ("opt", "uint32", "num_class", "1"),
    ("opt", "DNN", "dnn"),
    ("opt", "float", "weight", "1.0"),
    ("opt", "string", "task_space_indicator_label"),
    ("opt", "float", "in_task_space_weight", "1.0"),
    ("opt", "float", "out_task_space_weight", "1.0"),
    ("rep", "Loss", "losses"),
    ("opt", "bool", "use_sample_weight", "true"),
    ("opt", "string", "task_space_indicator_name"),
    ("opt", "string", "task_space_indicator_value"),
]

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
    # EasyRec's easy_rec_model.proto: the backbone style (`model_params` with a
    # `backbone`) and the model-class messages, one per multi-task model; the
    # `model` oneof holds one. models/config/model_classes.py turns a model-class
    # message into a backbone, so one builder makes every model.
    "EasyRecModel": [
        ("opt", "string", "model_name"),
        ("opt", "string", "model_class", "MultiTaskModel"),
        ("rep", "FeatureGroupConfig", "feature_groups"),
        ("opt", "BackboneTower", "backbone"),
        ("opt", "MultiTaskModelParams", "model_params", None, "model"),
        ("opt", "MMoE", "mmoe", None, "model"),
        ("opt", "ESMM", "esmm", None, "model"),
        ("opt", "DBMTL", "dbmtl", None, "model"),
        ("opt", "SimpleMultiTask", "simple_multi_task", None, "model"),
        ("opt", "PLE", "ple", None, "model"),
        ("opt", "float", "embedding_regularization", "0.0"),
        ("opt", "LossWeightStrategy", "loss_weight_strategy", "Fixed"),
    ],
    "FeatureGroupConfig": [
        ("opt", "string", "group_name"),
        ("rep", "string", "feature_names"),
        ("opt", "WideOrDeep", "wide_deep", "DEEP"),
        ("opt", "bool", "negative_sampler", "false"),
    ],
    "BackboneTower": [
        ("rep", "Block", "blocks"),
        ("rep", "string", "concat_blocks"),
        ("rep", "string", "output_blocks"),
        ("opt", "MLP", "top_mlp"),
    ],
    "Block": [
        ("opt", "string", "name"),
        ("rep", "Input", "inputs"),
        ("opt", "int32", "input_concat_axis", "-1"),
        ("opt", "bool", "merge_inputs_into_list", "false"),
        # No layer set: EasyRec passes the block's inputs on, concatenated.
        ("opt", "InputLayer", "input_layer", None, "layer"),
        ("opt", "KerasLayer", "keras_layer", None, "layer"),
    ],
    "Input": [
        ("opt", "string", "feature_group_name", None, "name"),
        ("opt", "string", "block_name", None, "name"),
        ("opt", "string", "input_slice"),
        ("opt", "bool", "ignore_input", "false"),
    ],
    # EasyRec's backbone.proto InputLayer: a feature group's embeddings, as a concat, a
    # list or a [batch, fields, dim] stack.
    "InputLayer": [
        ("opt", "bool", "do_batch_norm", "false"),
        ("opt", "bool", "do_layer_norm", "false"),
        ("opt", "float", "dropout_rate", "0.0"),
        ("opt", "float", "feature_dropout_rate", "0.0"),
        ("opt", "bool", "only_output_feature_list", "false"),
        ("opt", "bool", "only_output_3d_tensor", "false"),
        ("opt", "bool", "output_2d_tensor_and_feature_list", "false"),
        ("opt", "bool", "output_seq_and_normal_feature", "false"),
        ("opt", "uint32", "wide_output_dim", "0"),
        ("opt", "bool", "concat_seq_feature", "true"),
    ],
    # One `params` field per layer kind, the settings of its models/layer_registry.py entry.
    "KerasLayer": [
        ("opt", "string", "class_name"),
        ("opt", "MLP", "mlp", None, "params"),
        ("opt", "AITM", "aitm", None, "params"),
        ("opt", "MMoELayer", "mmoe", None, "params"),
        ("opt", "PLELayer", "ple", None, "params"),
        ("opt", "FM", "fm", None, "params"),
        ("opt", "SENet", "senet", None, "params"),
        ("opt", "MaskNet", "masknet", None, "params"),
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
        ("opt", "bool", "use_bn_after_activation", "false"),
        ("opt", "bool", "add_to_outputs", "false"),
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
        # extension: each level's own experts (EasyRec's ple {} extraction_networks);
        # given, they replace num_level, the expert counts and expert_mlp.
        ("rep", "PLELevel", "levels"),
    ],
    "PLELevel": [
        ("opt", "uint32", "num_expert_per_task"),
        ("opt", "uint32", "num_expert_share"),
        ("opt", "MLP", "task_expert_mlp"),
        ("opt", "MLP", "share_expert_mlp"),
    ],
    # EasyRec's layer.proto SENet, MaskBlock and MaskNet, with its defaults.
    "SENet": [
        ("opt", "uint32", "reduction_ratio", "4"),
        ("opt", "uint32", "num_squeeze_group", "2"),
        ("opt", "bool", "use_skip_connection", "true"),
        ("opt", "bool", "use_output_layer_norm", "true"),
    ],
    "MaskBlock": [
        ("opt", "float", "reduction_factor"),
        ("opt", "uint32", "output_size"),
        ("opt", "uint32", "aggregation_size"),
        ("opt", "bool", "input_layer_norm", "false"),
        ("opt", "uint32", "projection_dim"),
    ],
    "MaskNet": [
        ("rep", "MaskBlock", "mask_blocks"),
        ("opt", "bool", "use_parallel", "true"),
        ("opt", "MLP", "mlp"),
        ("opt", "bool", "input_layer_norm", "true"),
    ],
    # EasyRec's ModelParams (the backbone style's towers).
    "MultiTaskModelParams": [
        ("rep", "BayesTaskTower", "task_towers"),
        ("opt", "float", "l2_regularization", "0.0"),
    ],
    # EasyRec's tower.proto TaskTower (the model-class messages' towers) and
    # BayesTaskTower (DBMTL's and the backbone style's): a TaskTower that also sees its
    # related towers' features through `relation_dnn`.
    "TaskTower": _TOWER_FIELDS,
    "BayesTaskTower": _TOWER_FIELDS[:6] + [
        ("rep", "string", "relation_tower_names"),
        ("opt", "DNN", "relation_dnn"),
    ] + _TOWER_FIELDS[6:] + [
        # extension (ESMM): this head learns P(label | the named tower's event); the
        # tower's output is their product, P(label | impression), trained on all rows.
        ("opt", "string", "conditional_on"),
    ],
    "Tower": [
        ("opt", "string", "input"),
        ("opt", "DNN", "dnn"),
    ],
    # The model-class messages (esmm.proto, mmoe.proto, ple.proto, dbmtl.proto,
    # simple_multi_task.proto). Their l2_regularization defaults to 1e-4, EasyRec's.
    "ESMM": [
        ("rep", "Tower", "groups"),
        ("opt", "TaskTower", "ctr_tower"),
        ("opt", "TaskTower", "cvr_tower"),
        ("opt", "float", "l2_regularization", "1e-4"),
    ],
    "ExpertTower": [
        ("opt", "string", "expert_name"),
        ("opt", "DNN", "dnn"),
    ],
    "MMoE": [
        ("rep", "ExpertTower", "experts"),
        ("opt", "DNN", "expert_dnn"),
        ("opt", "uint32", "num_expert", "0"),
        ("rep", "TaskTower", "task_towers"),
        ("opt", "float", "l2_regularization", "1e-4"),
    ],
    "ExtractionNetwork": [
        ("opt", "string", "network_name"),
        ("opt", "uint32", "expert_num_per_task"),
        ("opt", "uint32", "share_num"),
        ("opt", "DNN", "task_expert_net"),
        ("opt", "DNN", "share_expert_net"),
    ],
    "PLE": [
        ("rep", "ExtractionNetwork", "extraction_networks"),
        ("rep", "TaskTower", "task_towers"),
        ("opt", "float", "l2_regularization", "1e-4"),
    ],
    "DBMTL": [
        ("opt", "DNN", "bottom_dnn"),
        ("opt", "DNN", "expert_dnn"),
        ("opt", "uint32", "num_expert", "0"),
        ("rep", "BayesTaskTower", "task_towers"),
        ("opt", "float", "l2_regularization", "1e-4"),
    ],
    "SimpleMultiTask": [
        ("rep", "TaskTower", "task_towers"),
        ("opt", "float", "l2_regularization", "1e-4"),
    ],
    "DNN": [
        ("rep", "uint32", "hidden_units"),
        ("rep", "float", "dropout_ratio"),
        ("opt", "string", "activation", "relu"),
        ("opt", "bool", "use_bn", "true"),
    ],
    # EasyRec's loss.proto Loss, with the parameter messages of the binary losses.
    "Loss": [
        ("opt", "LossType", "loss_type"),
        ("opt", "float", "weight", "1.0"),
        ("opt", "string", "loss_name"),
        ("opt", "bool", "learn_loss_weight", "false"),
        ("opt", "F1ReweighedLoss", "f1_reweighted_loss", None, "loss_param"),
        ("opt", "BinaryFocalLoss", "binary_focal_loss", None, "loss_param"),
        ("opt", "PairwiseLoss", "pairwise_loss", None, "loss_param"),
        ("opt", "PairwiseFocalLoss", "pairwise_focal_loss", None, "loss_param"),
        ("opt", "PairwiseLogisticLoss", "pairwise_logistic_loss", None, "loss_param"),
        ("opt", "PairwiseHingeLoss", "pairwise_hinge_loss", None, "loss_param"),
    ],
    "F1ReweighedLoss": [
        ("opt", "float", "f1_beta_square", "1.0"),
        ("opt", "float", "label_smoothing", "0"),
    ],
    "BinaryFocalLoss": [
        ("opt", "float", "gamma", "2.0"),
        ("opt", "float", "alpha"),
        ("opt", "float", "ohem_ratio", "1.0"),
        ("opt", "float", "label_smoothing", "0"),
    ],
    "PairwiseLoss": [
        ("opt", "float", "margin", "0"),
        ("opt", "string", "session_name"),
        ("opt", "float", "temperature", "1.0"),
    ],
    "PairwiseFocalLoss": [
        ("opt", "float", "gamma", "2.0"),
        ("opt", "float", "alpha"),
        ("opt", "float", "hinge_margin"),
        ("opt", "string", "session_name"),
        ("opt", "float", "ohem_ratio", "1.0"),
        ("opt", "float", "temperature", "1.0"),
    ],
    "PairwiseLogisticLoss": [
        ("opt", "float", "temperature", "1.0"),
        ("opt", "string", "session_name"),
        ("opt", "float", "hinge_margin"),
        ("opt", "float", "ohem_ratio", "1.0"),
        ("opt", "bool", "use_label_margin", "false"),
    ],
    "PairwiseHingeLoss": [
        ("opt", "float", "temperature", "1.0"),
        ("opt", "string", "session_name"),
        ("opt", "float", "margin", "1.0"),
        ("opt", "float", "ohem_ratio", "1.0"),
        ("opt", "bool", "label_is_logits", "true"),
        ("opt", "bool", "use_label_margin", "true"),
        ("opt", "bool", "use_exponent", "false"),
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


# One factory, so a message has one class (a new factory makes new classes).
_FACTORY = message_factory.MessageFactory(_POOL)


def message_class(name: str):
  """The generated message class of one of MESSAGES, e.g. message_class('EasyRecConfig')."""
  return _FACTORY.GetPrototype(_POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


# Every message class is an attribute of this module, named as its message, so pickle
# (Beam, TF Transform) finds it by reference: a checked config holds several.
for _name in MESSAGES:
  globals()[_name] = message_class(_name)
EasyRecConfig = message_class("EasyRecConfig")


_OTHER_MODEL = ("EasyRec's {} model is not a multi-task model; this project builds ESMM, "
                "MMoE, PLE, DBMTL, SimpleMultiTask and backbone (MultiTaskModel) configs")
_PYTHON_CODE = "runs Python code from the config, which this project doesn't"
# EasyRec fields left out of MESSAGES, by message: why, for the parser's "no field named"
# error to say (pipeline_config.parse_config): a user should read "not supported",
# not "misspelt".
NOT_SUPPORTED = {
    "EasyRecModel": {
        **{name: _OTHER_MODEL.format(name) for name in (
            "dummy", "wide_and_deep", "deepfm", "multi_tower", "fm", "dcn", "autoint", "dlrm",
            "cmbf", "uniter", "multi_tower_recall", "dssm", "mind", "dropoutnet",
            "metric_learning", "pdn", "dssm_senet", "dat", "rocket_launching")},
        "seq_att_groups": "sequence attention groups (DIN-style) are not supported",
        "ev_params": "embedding variables (PAI-TF's EV) are not supported",
        "kd": "knowledge distillation is not supported",
        "restore_filters": "is not supported: warm starting is by structure "
                           "(docs/running_every_day.md)",
        "variational_dropout": "variational feature dropout is not supported",
        "losses": "single-task model losses are not read by multi-task models (EasyRec "
                  "ignores them too): give losses in the task towers",
        "loss_type": "single-task model setting: give loss_type in the task towers",
        "num_class": "single-task model setting: task towers here are binary",
        "label_name": "single-task model setting: give label_name in the task towers",
    },
    "DBMTL": {"bottom_cmbf": "multi-modal (image and text) bottoms are not supported",
              "bottom_uniter": "multi-modal (image and text) bottoms are not supported"},
    "FeatureGroupConfig": {"sequence_features": "sequence features are not supported"},
    "MultiTaskModelParams": {
        name: "is a matching-model setting (DSSM-style towers), not a multi-task one"
        for name in ("outputs", "user_tower_idx_in_output", "item_tower_idx_in_output",
                     "simi_func", "temperature", "scale_simi")},
    "BackboneTower": {"packages": "block packages are not supported: list the blocks"},
    "Block": {"layers": "sequential layers in one block are not supported: chain blocks",
              "lambda": "a Lambda block " + _PYTHON_CODE,
              "recurrent": "recurrent blocks are not supported",
              "repeat": "repeat blocks are not supported",
              "raw_input": "raw_input blocks are not supported: use input_layer",
              "embedding_layer": "embedding_layer blocks are not supported: use input_layer"},
    "Input": {"package_name": "block packages are not supported",
              "use_package_input": "block packages are not supported",
              "package_input": "block packages are not supported",
              "package_input_fn": "block packages are not supported",
              "input_fn": "input_fn " + _PYTHON_CODE,
              "reset_input": "reset_input is not supported: add an input_layer block"},
    "KerasLayer": {name: f"EasyRec's {name} layer is not supported (layers here: MLP, "
                   "AITMTower, MMoE, PLE, FM, SENet, MaskNet)" for name in (
                       "st_params", "periodic_embedding", "auto_dis_embedding",
                       "nary_dis_embedding", "mask_block", "bilinear", "fibinet", "din",
                       "bst", "seq_aug", "ppnet", "text_cnn", "highway", "overlap",
                       "dot_product", "attention", "multi_head_attention", "transformer",
                       "text_encoder", "gate", "cin")},
    "Loss": {name: f"{name} holds the settings of a loss type a binary task tower can't "
             "train with" for name in (
        "softmax_loss", "circle_loss", "multi_simi_loss", "jrc_loss", "listwise_rank_loss",
        "listwise_distill_loss", "ziln_loss")},
}
