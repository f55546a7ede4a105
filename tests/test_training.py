import pytest

import os

from models.config import load_config
from models.training import (DEFAULT_LEARNING_RATE, FINAL_SHARE, MAX_EPOCHS, MAX_GLOBAL_BATCH,
                             MIN_GLOBAL_BATCH, TARGET_STEPS, WARMUP_SHARE, TrainingConfig,
                             learning_rate, make_optimizer)
from pipeline import configs


def test_small_data_gets_small_batches_and_more_epochs():
  small = TrainingConfig().sized_for(16_000)
  large = TrainingConfig().sized_for(2_000_000)
  assert small.batch_size == MIN_GLOBAL_BATCH == 256
  assert large.batch_size == MAX_GLOBAL_BATCH == 1024
  assert TrainingConfig().sized_for(100_000).batch_size == 1024   # 100k / 100, rounded
  assert TrainingConfig().sized_for(50_000).batch_size == 512
  assert small.max_epochs > large.max_epochs
  assert small.max_epochs == MAX_EPOCHS  # the cap: 63 steps an epoch would want 64 epochs
  assert large.max_epochs * -(-2_000_000 // large.batch_size) >= TARGET_STEPS


def test_explicit_settings_win():
  config = TrainingConfig.from_dict({"batch_size": 64, "max_epochs": 2}).sized_for(10_000)
  assert (config.batch_size, config.max_epochs) == (64, 2)


@pytest.mark.parametrize("values, message", [
    ({"learning_rte": 0.1}, "unknown training settings: \\['learning_rte'\\]"),
    ({"learning_rate": 0}, "learning_rate must be positive"),
    ({"num_steps": 0}, "num_steps must be positive"),
    ({"batch_size": -1}, "batch_size must be positive"),
])
def test_bad_settings_are_refused(values, message):
  with pytest.raises(ValueError, match=message):
    TrainingConfig.from_dict(values)


def test_empty_train_split_is_refused():
  with pytest.raises(ValueError, match="train split is empty"):
    TrainingConfig().sized_for(0)


def test_easyrec_settings_are_read_as_named():
  reference = load_config(os.path.join(configs.PROJECT_DIR, "configs",
                                       "easyrec_aitm_on_taobao.config"))
  config = TrainingConfig.from_config(reference.proto).sized_for(100_000)
  assert config.batch_size == 4096 and config.num_steps == 500
  # 25 steps an epoch: 20 epochs cover the 500 steps; an epoch never exceeds num_steps.
  assert config.max_epochs == 20 and config.steps_per_epoch(100_000) == 25
  assert config.steps_per_epoch(10_000_000) == 500
  import tensorflow as tf
  optimizer = make_optimizer(reference.proto.train_config)
  assert isinstance(optimizer, tf.keras.optimizers.Adam)   # models.optimizers.FusedAdam
  assert float(optimizer.learning_rate) == pytest.approx(1e-4)


def test_the_default_config_leaves_sizing_to_the_data_and_overrides_win():
  default = load_config(configs.CONFIG_PATH)
  config = TrainingConfig.from_config(default.proto).sized_for(16_000)
  assert (config.batch_size, config.num_steps) == (256, None)
  # No rate in the config: without a step budget a constant, with one the schedule.
  assert float(make_optimizer(default.proto.train_config).learning_rate) == pytest.approx(
      DEFAULT_LEARNING_RATE)
  overridden = TrainingConfig.from_config(default.proto, {"batch_size": 64, "learning_rate": 0.01})
  assert overridden.batch_size == 64
  assert float(make_optimizer(default.proto.train_config, overridden.learning_rate)
               .learning_rate) == pytest.approx(0.01)


def test_default_schedule_warms_up_then_decays_to_its_floor():
  default = load_config(configs.CONFIG_PATH)
  schedule = learning_rate(default.proto.train_config, total_steps=1000)
  warmup = int(1000 * WARMUP_SHARE)
  assert float(schedule(0)) == pytest.approx(0.0)
  assert float(schedule(warmup // 2)) == pytest.approx(DEFAULT_LEARNING_RATE / 2, rel=0.05)
  assert float(schedule(warmup)) == pytest.approx(DEFAULT_LEARNING_RATE)
  rates = [float(schedule(step)) for step in range(warmup, 1001, 50)]
  assert all(a >= b for a, b in zip(rates, rates[1:]))  # never rises after the warmup
  assert float(schedule(1000)) == pytest.approx(DEFAULT_LEARNING_RATE * FINAL_SHARE, rel=1e-3)
  assert float(schedule(5000)) == pytest.approx(DEFAULT_LEARNING_RATE * FINAL_SHARE, rel=1e-3)
  # A rate in the config, or --learning-rate, is used as given.
  assert learning_rate(default.proto.train_config, override=0.01, total_steps=1000) == 0.01


def test_exponential_decay_keeps_its_floor():
  from models.config import parse_config
  text = open(configs.CONFIG_PATH).read().replace(
      "adam_optimizer {}",
      "adam_optimizer { learning_rate { exponential_decay_learning_rate { "
      "initial_learning_rate: 0.01 decay_steps: 10 decay_factor: 0.5 "
      "min_learning_rate: 0.001 } } }")
  schedule = learning_rate(parse_config(text).proto.train_config)
  assert float(schedule(0)) == pytest.approx(0.01)
  assert float(schedule(10)) == pytest.approx(0.005)
  assert float(schedule(1000)) == pytest.approx(0.001)


def _exact_auc(labels, scores):
  """Mann-Whitney AUC (probability a positive outranks a negative, ties half)."""
  from scipy.stats import rankdata
  ranks = rankdata(scores)
  positives = labels == 1
  n_pos, n_neg = positives.sum(), (~positives).sum()
  return (ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def test_trainer_auc_resolves_rare_event_probabilities():
  """Purchase-like scores (mostly below 0.01): EasyRec's 200 even thresholds put
  them in one bucket; the Trainer's logit-spaced AUC must match the exact AUC."""
  import numpy as np
  import tensorflow as tf
  from models.trainer import auc_metric
  rng = np.random.default_rng(0)
  logits = rng.normal(-6.0, 1.5, 50_000)
  scores = 1 / (1 + np.exp(-logits))
  labels = (rng.random(scores.size) < scores * 3).astype(int)
  exact = _exact_auc(labels, scores)
  coarse = tf.keras.metrics.AUC(num_thresholds=200)
  coarse.update_state(labels, scores)
  fine = auc_metric(200)
  fine.update_state(labels, scores)
  assert abs(float(fine.result()) - exact) < 0.002, (float(fine.result()), exact)
  assert abs(float(coarse.result()) - exact) > 0.02  # what the fix is for
