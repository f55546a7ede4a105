"""A split of Transform's output parsed once and held in memory, served as batches.

Transform writes GZIP TFRecords of tf.Examples. Read through TFXIO, every epoch
decompresses and parses them again: on 2 cores that took as much CPU as a
third of the train step, on the same cores (bench/trainer_profile.py). A split
whose parsed features fit in IN_MEMORY_BYTES is read once instead, and each
epoch only gathers the rows of each batch from those tensors.
"""

from typing import Dict, Iterable, Mapping, Optional

import tensorflow as tf

# A split is held in memory when its parsed features take at most this much
# (the default config's rows take about 250 bytes: 4M rows per GiB).
IN_MEMORY_BYTES = 2 ** 30
# Records parsed per batch while loading.
_LOAD_BATCH = 65_536


def row_bytes(spec: Mapping[str, tf.io.FixedLenFeature]) -> Optional[int]:
  """Bytes one parsed row of `spec` takes, or None when a feature is not fixed-length
  (a ragged or sparse feature can't be gathered row by row as one tensor)."""
  total = 0
  for feature in spec.values():
    if not isinstance(feature, tf.io.FixedLenFeature):
      return None
    values = 1
    for dim in feature.shape:
      values *= int(dim)
    total += values * feature.dtype.size
  return total


def load_split(files: Iterable[str], spec: Mapping[str, tf.io.FixedLenFeature]
               ) -> Dict[str, tf.Tensor]:
  """Every record of the GZIP TFRecord files matching `files` (patterns), in file-name
  order, parsed with `spec`: name -> `[rows, *shape]`."""
  paths = sorted(path for pattern in files for path in tf.io.gfile.glob(pattern))
  records = tf.data.TFRecordDataset(paths, compression_type="GZIP").batch(_LOAD_BATCH)
  parts = {name: [] for name in spec}
  for batch in records.map(lambda r: tf.io.parse_example(r, spec)):
    for name, values in batch.items():
      parts[name].append(values)
  return {name: tf.concat(values, axis=0) for name, values in parts.items()}


def batches(columns: Mapping[str, tf.Tensor], batch_size: int, shuffle: bool,
            shuffle_buffer: int, seed: Optional[int], repeat: bool) -> tf.data.Dataset:
  """Batches of `batch_size` rows of `columns` (name -> `[rows, ...]`), as dicts.

  Shuffled as the records would be: through a buffer of `shuffle_buffer` rows, a new
  order every epoch. With `repeat` the epochs follow each other without end and a
  batch may span two of them, as TFXIO's repeated dataset does; without, one pass
  with a last partial batch."""
  rows = int(next(iter(columns.values())).shape[0])
  order = tf.data.Dataset.range(rows)
  if shuffle:
    order = order.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    order = order.repeat()
  return order.batch(batch_size).map(
      lambda index: {name: tf.gather(values, index) for name, values in columns.items()},
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
