"""What the local server (`aitm serve`) and the client (`aitm predict`) do unless told
otherwise.

Plain constants, so the command line shows its defaults without loading TensorFlow.
"""

# TF Serving's gRPC port.
PORT = 8500
# The address the local server listens on: this machine only.
HOST = "127.0.0.1"
# Where the client finds the gRPC API.
SERVER = f"localhost:{PORT}"
# How often the server looks for new versions under a model's base path.
POLL_WAIT_SECONDS = 1.0
# Versions the server keeps loaded, newest first (TF Serving's latest policy).
LATEST_VERSIONS = 1
# The two predict signatures: serialized tf.Examples, or one tensor per raw column.
EXAMPLES_SIGNATURE, RAW_SIGNATURE = "serving_default", "serving_raw"
# Rows the client sends in one Predict call.
PREDICT_BATCH_SIZE = 256
# The client's deadline per call, seconds.
TIMEOUT_SECONDS = 10.0
# Rows a Predict request may carry. TF Serving itself has no such limit (its
# batching config caps the batches it forms); this one stops a request from
# asking for more memory than the machine has. Generous: `aitm predict` sends 256.
DEFAULT_MAX_BATCH_SIZE = 100_000
# Requests served at once; more get RESOURCE_EXHAUSTED (gRPC's maximum_concurrent_rpcs).
DEFAULT_MAX_CONCURRENT_RPCS = 64
