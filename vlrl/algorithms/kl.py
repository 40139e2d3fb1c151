"""Per-token estimators of KL(policy || reference) from sampled tokens.

Follows J. Schulman, "Approximating KL Divergence" (2020): with tokens sampled from the policy and
``log_r = ref_logp - logp``,

- ``k1`` = -log_r = logp - ref_logp: unbiased, high variance, can be negative per token;
- ``k2`` = 0.5 * log_r ** 2: biased, low variance, always >= 0;
- ``k3`` = exp(log_r) - log_r - 1: unbiased, low variance, always >= 0 (GRPO's choice, arXiv 2402.03300).

Departure: the estimators are evaluated on tokens sampled from the *behaviour* policy while ``logp`` is the
current policy, as GRPO does; no importance correction is applied. Nothing is clamped; the loss masks
padded positions before these are evaluated.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

KLFn = Callable[[Tensor, Tensor], Tensor]


def _k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return logp - ref_logp


def _k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return 0.5 * (logp - ref_logp) ** 2


def _k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    log_r = ref_logp - logp
    return torch.exp(log_r) - log_r - 1.0


KL_ESTIMATORS: dict[str, KLFn] = {"k1": _k1, "k2": _k2, "k3": _k3}


def kl_penalty(logp: Tensor, ref_logp: Tensor, estimator: str) -> Tensor:
    """Per-token KL estimate. logp, ref_logp: [N, T] -> [N, T]; ``estimator`` is a key of ``KL_ESTIMATORS``."""
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; valid: {sorted(KL_ESTIMATORS)}")
    return KL_ESTIMATORS[estimator](logp, ref_logp)
