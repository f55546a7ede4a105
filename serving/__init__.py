"""Serving: a gRPC client for TF Serving and a local stand-in server (`aitm predict`,
`aitm serve`). The Kubernetes deployment of real TF Serving is in kubeflow/serving/."""
