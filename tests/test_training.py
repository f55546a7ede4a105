import pytest

from models.training import TARGET_STEPS, TrainingConfig


def test_small_data_gets_small_batches_and_more_epochs():
  small = TrainingConfig().sized_for(16_000)
  large = TrainingConfig().sized_for(2_000_000)
  assert small.batch_size == 256 and large.batch_size == 4096
  assert small.max_epochs > large.max_epochs
  assert small.max_epochs == 30  # the cap: 63 steps an epoch would want 64 epochs
  assert large.max_epochs * -(-2_000_000 // large.batch_size) >= TARGET_STEPS


def test_explicit_settings_win():
  config = TrainingConfig.from_dict({"batch_size": 64, "max_epochs": 2}).sized_for(10_000)
  assert (config.batch_size, config.max_epochs) == (64, 2)


@pytest.mark.parametrize("values, message", [
    ({"learning_rte": 0.1}, "unknown training settings: \\['learning_rte'\\]"),
    ({"learning_rate": 0}, "learning_rate must be positive"),
    ({"batch_size": -1}, "batch_size must be positive"),
])
def test_bad_settings_are_refused(values, message):
  with pytest.raises(ValueError, match=message):
    TrainingConfig.from_dict(values)


def test_empty_train_split_is_refused():
  with pytest.raises(ValueError, match="train split is empty"):
    TrainingConfig().sized_for(0)
