"""An ExampleGen for Ali-CCP's raw files: skeleton samples joined with their common
features in Beam, kept to the AITM paper's fields (raw_format.PAPER_FIELDS).

  aliccp_example_gen(input_base)        the pipeline node (component.py)
  check_config(config)                  the config declares what it writes
  raw_format                            the raw line format and the tf.Examples
  executor                              the Beam job, its file convention and counters
"""

from components.aliccp_example_gen.component import (aliccp_example_gen, check_config,
                                                     emitted_columns)
from components.aliccp_example_gen.raw_format import (BUY_LABEL, CLICK_LABEL,
                                                      ITEM_INTENTION, PAPER_FIELDS,
                                                      SEPARATOR)

__all__ = ["aliccp_example_gen", "check_config", "emitted_columns", "BUY_LABEL",
           "CLICK_LABEL", "ITEM_INTENTION", "PAPER_FIELDS", "SEPARATOR"]
