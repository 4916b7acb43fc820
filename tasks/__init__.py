"""Built-in tasks: prompt sources and the tiny model of the embedded default."""
