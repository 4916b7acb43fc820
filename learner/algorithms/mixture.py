"""The geometric-mixture options that Nash-MD and IPO-MD share: pi^beta ∝ pi^(1-beta) mu^beta and how it is drawn
(rollout/geometric_mixture.py)."""

from __future__ import annotations

from typing import Literal

from selfplay.config_fields import Section, _f

# The torch engine holds the policy and the reference and draws the token-level mixture in one decoding pass,
# where vLLM (the policy only) needs the sequence sampler's `candidates` policy samples per response. So unless
# the config names an engine, the mixture algorithms get torch.
MIXTURE_PRESET = {"rollout": {"engine": "torch"}}


class MixtureConfig(Section):
    beta: float = _f(0.5, "geometric-mixture coefficient beta: pi^beta ∝ pi^(1-beta) mu^beta (TRL mixture_coef)", ge=0, le=1)
    sampler: Literal["auto", "token", "sequence"] = _f(
        "auto", "token: exact token-level mixing (torch engine); sequence: importance resampling of policy "
                "samples (any engine); auto: token with the torch engine, sequence with vLLM")
    candidates: int = _f(8, "sequence sampler: policy samples per prompt to resample the opponent from", ge=2)
