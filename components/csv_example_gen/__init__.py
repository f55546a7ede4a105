"""A CSV ExampleGen that types columns by the declared raw columns, not by guessing.

  csv_example_gen(input_base, config)   the pipeline node (component.py)
  executor                              the Beam job: files -> typed, split tf.Examples
  csv_ranges                            files cut into byte ranges, one worker each
  csv_parser                            a range's lines -> tf.Examples, bad rows named
"""

from components.csv_example_gen.component import csv_example_gen

__all__ = ["csv_example_gen"]
