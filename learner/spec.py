"""What a learner rank is built from: the algorithm and the ``PolicyLearner`` options, decided by the controller
from the run's config and handed to each rank as they are (the ranks never read the config themselves)."""

from __future__ import annotations

from dataclasses import dataclass, field

from selfplay.learner.algorithms.base import Algorithm


@dataclass
class LearnerSpec:
    algorithm: Algorithm
    backend: str                                 # torch.distributed backend ("auto": NCCL on GPUs, else gloo)
    seed: int                                    # each rank adds its rank
    options: dict = field(default_factory=dict)  # the rest of PolicyLearner's keyword arguments
    collective_timeout_s: float = 600.0          # the ranks' process group: a collective waits no longer
