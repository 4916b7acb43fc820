"""Algorithm name -> instance, from the typed config."""

from __future__ import annotations

from selfplay.learner.algorithms.base import Algorithm

ALGORITHMS = ("sppo", "nash_md", "online_ipo", "ipo_md", "drift", "osp", "dpo")


def build_algorithm(config) -> Algorithm:
    """``config`` is the run's ``Config``; raises ValueError naming the valid choices."""
    a = config.algorithm
    if a.name == "sppo":
        from selfplay.learner.algorithms.sppo import SPPO
        return SPPO(eta=a.sppo.eta, k=config.rollout.k, form=a.sppo.form, iteration_steps=a.sppo.iteration_steps)
    if a.name == "nash_md":
        from selfplay.learner.algorithms.nash_md import NashMD
        return NashMD(tau=a.nash_md.tau, mixture_beta=a.nash_md.mixture.beta)
    if a.name in ("online_ipo", "ipo_md"):
        from selfplay.learner.algorithms.ipo import OnlineIPO
        beta = a.ipo.mixture.beta if a.name == "ipo_md" else 0.0
        return OnlineIPO(tau=a.ipo.tau, labels=a.ipo.labels, mixture_beta=beta)
    if a.name == "dpo":
        from selfplay.learner.algorithms.dpo import OnlineDPO
        return OnlineDPO(beta=a.dpo.beta, labels=a.dpo.labels)
    if a.name == "osp":
        from selfplay.learner.algorithms.osp import OSP
        return OSP(beta=a.osp.beta, k=config.rollout.k, iteration_steps=a.osp.iteration_steps, labels=a.osp.labels)
    if a.name == "drift":
        from selfplay.learner.algorithms.drift import DRIFT
        return DRIFT(beta=a.drift.beta, alpha=a.drift.alpha, iteration_steps=a.drift.iteration_steps,
                     reduction=a.logprob_reduction)
    raise ValueError(f"unknown algorithm {a.name!r} (valid: {', '.join(ALGORITHMS)})")
