"""A run's life on disk: its inputs checked before start, launch, the run directory and checkpoints."""
