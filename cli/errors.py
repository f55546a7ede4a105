"""How a pipeline command ends when the pipeline failed on bad input."""

import re
import sys

# The first line of a failure that names the bad input, however deep Beam or
# TFX wrapped it.
_DATA_ERROR = re.compile(r"(Bad input[^\n]*|(?:ExampleValidator found anomalies|"
                         r"DistributionValidator found drift)[^\n]*(?:\n  [^\n]+)*)")


def explain_failure(e: Exception):
  """Ends the command with the line naming the bad input; re-raises any other failure."""
  match = _DATA_ERROR.search(str(e))
  if not match:
    raise e
  # The cause a user can act on, not Beam's and TFX's stack.
  sys.exit(f"error: {match.group(1)}\nthe run failed; nothing was pushed")
