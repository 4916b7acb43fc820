"""The run's configuration: the typed schema, its presets and the checks across keys."""
