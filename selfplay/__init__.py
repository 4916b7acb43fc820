"""selfplay: online self-play preference optimisation on Ray, vLLM and DeepSpeed.

One import name for the whole system. The sub-packages live at the repository's top level (``actors/``,
``learner/``, ...) and are installed under this name (pyproject.toml's ``package-dir``); their layers, from the
ground up: ``selfplay.errors`` -> ``tasks`` -> ``rollout`` | ``preference`` -> ``learner`` -> ``actors`` ->
``orchestration`` (tests/test_layers.py holds every import to that order).
"""
