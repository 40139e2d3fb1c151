"""GRPO-family algorithms: advantages from rewards, KL estimators, the clipped policy loss, and chunked
log-probs. Pure tensor functions behind small registries; no model, optimiser or trainer state."""

from vlrl.algorithms.advantages import (
    ADVANTAGE_ESTIMATORS,
    advantage_setting,
    batch_baseline,
    compute_advantages,
    groups_with_signal,
    scale_advantages,
    split_duplicates,
    weight_negatives,
)
from vlrl.algorithms.kl import KL_ESTIMATORS, kl_penalty
from vlrl.algorithms.logprobs import logits_logprobs, token_logprobs
from vlrl.algorithms.loss import AGGREGATIONS, RATIO_LEVELS, LossStats, aggregate, policy_loss

__all__ = [
    "advantage_setting",
    "batch_baseline",
    "ADVANTAGE_ESTIMATORS",
    "AGGREGATIONS",
    "KL_ESTIMATORS",
    "RATIO_LEVELS",
    "LossStats",
    "aggregate",
    "compute_advantages",
    "groups_with_signal",
    "kl_penalty",
    "policy_loss",
    "scale_advantages",
    "split_duplicates",
    "logits_logprobs",
    "token_logprobs",
    "weight_negatives",
]
