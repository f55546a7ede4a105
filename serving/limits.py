"""The local server's request limits (`aitm serve --max-batch-size / --max-concurrent-rpcs`).

Plain constants, so the command line shows its defaults without loading TensorFlow.
"""

# Rows a Predict request may carry. TF Serving itself has no such limit (its
# batching config caps the batches it forms); this one stops a request from
# asking for more memory than the machine has. Generous: `aitm predict` sends 256.
DEFAULT_MAX_BATCH_SIZE = 100_000
# Requests served at once; more get RESOURCE_EXHAUSTED (gRPC's maximum_concurrent_rpcs).
DEFAULT_MAX_CONCURRENT_RPCS = 64
