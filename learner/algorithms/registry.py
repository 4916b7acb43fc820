"""Algorithm name -> instance, from the typed config."""

from __future__ import annotations

from learner.algorithms.base import Algorithm

ALGORITHMS = ("sppo",)


def build_algorithm(config) -> Algorithm:
    """``config`` is the run's ``Config``; raises ValueError naming the valid choices."""
    name = config.algorithm.name
    if name == "sppo":
        from learner.algorithms.sppo import SPPO
        o = config.algorithm.sppo
        return SPPO(eta=o.eta, k=config.rollout.k, form=o.form, iteration_steps=o.iteration_steps)
    raise ValueError(f"unknown algorithm {name!r} (valid: {', '.join(ALGORITHMS)})")
