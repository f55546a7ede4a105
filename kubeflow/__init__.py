"""Deploying the same pipeline on Kubeflow Pipelines (KubeflowV2DagRunner)."""
