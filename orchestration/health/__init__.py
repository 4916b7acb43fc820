"""A run that fails loudly: heartbeats, the step watchdog, stop signals, and injected faults for tests."""
