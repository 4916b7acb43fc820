"""Self-play algorithms, one module each: sampling needs, targets and loss in one place."""
