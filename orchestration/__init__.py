"""The driver's side of a run, one room per job: ``config`` (schema, presets, checks), ``loop`` (the controller and
its experience), ``cluster`` (Ray start-up, placement, threads), ``run`` (inputs, launch, run directory,
checkpoints), ``health`` (heartbeats, watchdog, signals), ``telemetry`` (metrics and their sinks) and
``commands`` (the ``selfplay`` CLI)."""
