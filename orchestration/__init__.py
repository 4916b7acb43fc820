"""The controller: config, CLI, the training loop, run directory and metrics."""
