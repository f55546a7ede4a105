"""A split parsed once and batched from memory: every row, in file order, once per epoch."""

import os

import numpy as np
import tensorflow as tf

from models import memory_input

SPEC = {"id": tf.io.FixedLenFeature([], tf.int64),
        "tags": tf.io.FixedLenFeature([3], tf.int64),
        "score": tf.io.FixedLenFeature([], tf.float32)}


def _write(directory, rows, files=2):
  """`rows` records over `files` GZIP files (part-0 holds the first rows): id = row."""
  per_file = -(-rows // files)
  for part in range(files):
    path = os.path.join(directory, f"part-{part}.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
      for row in range(part * per_file, min(rows, (part + 1) * per_file)):
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[row])),
            "tags": tf.train.Feature(int64_list=tf.train.Int64List(value=[row, 0, 2 * row])),
            "score": tf.train.Feature(float_list=tf.train.FloatList(value=[row / 2])),
        })).SerializeToString())
  return [os.path.join(directory, "part-*.gz")]


def test_row_bytes_counts_fixed_length_features_only():
  assert memory_input.row_bytes(SPEC) == 8 + 3 * 8 + 4
  assert memory_input.row_bytes(dict(SPEC, extra=tf.io.VarLenFeature(tf.int64))) is None


def test_the_split_is_read_whole_in_file_order(tmp_path):
  columns = memory_input.load_split(_write(str(tmp_path), 101), SPEC)
  np.testing.assert_array_equal(columns["id"].numpy(), np.arange(101))
  np.testing.assert_array_equal(columns["tags"].numpy()[5], [5, 0, 10])
  np.testing.assert_allclose(columns["score"].numpy(), np.arange(101) / 2)


def test_one_pass_keeps_the_order_and_the_last_partial_batch(tmp_path):
  columns = memory_input.load_split(_write(str(tmp_path), 101), SPEC)
  batches = list(memory_input.batches(columns, 32, shuffle=False, shuffle_buffer=0, seed=None,
                                      repeat=False))
  assert [len(b["id"]) for b in batches] == [32, 32, 32, 5]
  ids = np.concatenate([b["id"].numpy() for b in batches])
  np.testing.assert_array_equal(ids, np.arange(101))
  rows = np.concatenate([b["tags"].numpy() for b in batches])
  np.testing.assert_array_equal(rows[:, 2], 2 * ids)   # the columns of a row stay together


def test_repeated_epochs_shuffle_every_row_once_each(tmp_path):
  columns = memory_input.load_split(_write(str(tmp_path), 100), SPEC)

  def first_epochs(seed):
    dataset = memory_input.batches(columns, 25, shuffle=True, shuffle_buffer=100, seed=seed,
                                   repeat=True)
    return np.concatenate([b["id"].numpy() for b in dataset.take(12)])   # 3 epochs

  ids = first_epochs(seed=4)
  epochs = ids.reshape(3, 100)
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(100))
  assert not np.array_equal(epochs[0], np.arange(100))       # shuffled
  assert not np.array_equal(epochs[0], epochs[1])            # anew each epoch
  np.testing.assert_array_equal(first_epochs(seed=4), ids)   # the seed repeats it
