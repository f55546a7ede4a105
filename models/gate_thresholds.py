"""The blessing gate's default thresholds and the names of the models it compares
(models/eval_config.py builds the gate; report/ reads its outcome).

Plain constants, so the command line states them without loading TFMA.
"""

# Every task's overall eval AUC must reach this for the model to be blessed.
DEFAULT_MIN_AUC = 0.55
# ... and may be at most this much below the baseline's (absolute AUC).
DEFAULT_MAX_AUC_DROP = 0.01
# The EvalConfig's model specs: the model just trained and the latest blessed one.
CANDIDATE, BASELINE = "candidate", "baseline"
