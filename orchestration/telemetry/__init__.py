"""What a run reports: the metrics log and its sinks (Prometheus, W&B, MLflow), progress, plots."""
