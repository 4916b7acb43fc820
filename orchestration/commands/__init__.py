"""The ``selfplay`` command line: train/resume/export, status, serve-preference."""
