"""The GRPO-family clipped policy-gradient loss, one function whose options cover the variants.

Follows PPO's clipped surrogate (arXiv 1707.06347) with GRPO's group advantages (arXiv 2402.03300): every
token of completion i carries the advantage A_i and

    pg_t = -min(r_t * A_i, clip(r_t, 1 - clip_low, 1 + clip_high) * A_i)
    loss = agg(pg) + kl_coef * agg(kl_penalty(logp, ref_logp)) - entropy_coef * agg(entropy)

Options and the paper each follows:

- ``clip_low != clip_high``: DAPO's clip-higher (arXiv 2503.14476).
- ``aggregation`` (how per-token terms become a scalar, see ``AGGREGATIONS``): ``seq_mean_token_mean`` is the
  GRPO paper's 1/G sum_i 1/|o_i| sum_t; ``token_mean`` is DAPO's token-level loss; ``seq_mean_token_sum_norm``
  is Dr.GRPO's (arXiv 2503.20783) constant normaliser, token sums divided by a fixed ``max_len``.
- ``ratio_level="sequence"``: GSPO (arXiv 2507.18071). The ratio of completion i is
  s_i = exp(mean over its tokens of (logp - old_logp)), and it is clipped per sequence. We implement the
  paper's GSPO-token form, s_i,t = sg[s_i] * exp(logp_t - sg[logp_t]): its value is s_i at every token and
  its gradient is s_i * grad(logp_t). With ``seq_mean_token_mean`` aggregation the gradient equals GSPO's
  exactly; with the other aggregations only the per-token weights differ. GSPO's clip ranges are about
  1e-3 of PPO's (the paper uses 3e-4 / 4e-4); set ``clip_low`` / ``clip_high`` accordingly.

Departures: the KL penalty is added to the loss as in GRPO (not folded into the reward), and is off by
default; the entropy bonus is not in any of these papers. There is no dual clip.

Masked positions (padding, prompt) may hold any value, even nan or inf: inputs are replaced by 0 there with
``torch.where`` *before* any arithmetic, so neither the loss nor the gradients see them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from vlrl.algorithms.kl import kl_penalty


@dataclass
class LossStats:
    """Detached floats for logging. ``loss`` and ``pg_loss`` are the aggregated terms of this call (with the
    caller's global totals they sum over micro-batches); the others are plain means over this call's
    masked tokens (``TOKEN_MEANS``)."""

    loss: float
    pg_loss: float
    kl: float  # mean per-token KL estimate to the reference; 0.0 without a reference
    entropy: float  # mean per-token entropy; 0.0 when none is given
    clip_frac: float  # fraction of tokens where the clipped term was the active one (its gradient is 0)
    clip_low_frac: float  # of those, ratio < 1 - clip_low with a negative advantage
    clip_high_frac: float  # ratio > 1 + clip_high with a positive advantage (clip_frac = low + high)
    ratio_mean: float  # mean importance ratio (the sequence ratio at each token for ratio_level="sequence")
    approx_kl: float  # 0.5 * mean((logp - old_logp) ** 2): drift from the behaviour policy

    def metrics(self, prefix: str = "loss/") -> dict[str, float]:
        """Flat ``{prefix + name: value}`` for the metrics logger."""
        return {prefix + k: v for k, v in asdict(self).items()}


def _where_mask(values: Tensor, keep: Tensor) -> Tensor:
    """values where keep, else 0 — selects, so nan/inf at dropped positions never reach values or grads."""
    return torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device))


def _keep_and_weights(mask: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    keep = mask if mask.dtype == torch.bool else mask != 0
    return keep, mask.to(dtype)


def _token_mean(total: Tensor, weights: Tensor, num_tokens, num_seqs, max_len) -> Tensor:
    denom = weights.sum().clamp_min(1.0) if num_tokens is None else num_tokens
    return total.sum() / denom


def _seq_mean_token_mean(total: Tensor, weights: Tensor, num_tokens, num_seqs, max_len) -> Tensor:
    # a row with no tokens contributes 0 but still counts in num_seqs
    per_seq = total.sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)  # [N]
    denom = total.shape[0] if num_seqs is None else num_seqs
    return per_seq.sum() / denom


def _seq_mean_token_sum_norm(total: Tensor, weights: Tensor, num_tokens, num_seqs, max_len) -> Tensor:
    if max_len is None:
        raise ValueError("aggregation 'seq_mean_token_sum_norm' needs max_len (e.g. rollout.max_new_tokens)")
    denom = total.shape[0] if num_seqs is None else num_seqs
    return total.sum() / (denom * max_len)


# Each maps (masked values [N, T], mask weights [N, T], num_tokens, num_seqs, max_len) to a scalar.
AGGREGATIONS: dict[str, Callable[..., Tensor]] = {
    "token_mean": _token_mean,
    "seq_mean_token_mean": _seq_mean_token_mean,
    "seq_mean_token_sum_norm": _seq_mean_token_sum_norm,
}

RATIO_LEVELS = ("token", "sequence")
# LossStats fields that are means over tokens (the rest are the aggregated loss terms).
TOKEN_MEANS = ("kl", "entropy", "clip_frac", "clip_low_frac", "clip_high_frac", "ratio_mean", "approx_kl")


def aggregate(
    values: Tensor,
    mask: Tensor,
    mode: str,
    *,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
    max_len: int | None = None,
) -> Tensor:
    """Reduce per-token values [N, T] under mask [N, T] (bool or 0/1 float) to a scalar [].

    - ``token_mean``: sum(values * mask) / num_tokens (default: mask.sum());
    - ``seq_mean_token_mean``: sum_i (sum_t values * mask / sum_t mask) / num_seqs (default: N);
    - ``seq_mean_token_sum_norm``: sum(values * mask) / (num_seqs * max_len), num_seqs defaulting to N.

    For micro-batches pass the *whole batch's* num_tokens / num_seqs: the micro-batch results then sum to the
    full-batch value. Masked positions may hold nan or inf.
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"unknown loss aggregation {mode!r}; valid: {sorted(AGGREGATIONS)}")
    if values.shape != mask.shape or values.dim() != 2:
        raise ValueError(
            f"values and mask must both be [N, T]; got {tuple(values.shape)} and {tuple(mask.shape)}"
        )
    keep, weights = _keep_and_weights(mask, values.dtype)
    total = _where_mask(values, keep) * weights
    return AGGREGATIONS[mode](total, weights, num_tokens, num_seqs, max_len)


def _masked_mean(values: Tensor, weights: Tensor) -> float:
    return ((values * weights).sum() / weights.sum().clamp_min(1.0)).item()


def _ratio(logp: Tensor, old_logp: Tensor, weights: Tensor, level: str) -> Tensor:
    """Importance ratio [N, T] (inputs already zeroed at masked positions)."""
    log_ratio = logp - old_logp
    if level == "token":
        return torch.exp(log_ratio)
    seq_log_ratio = (log_ratio * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)  # [N]
    # GSPO-token: value s_i everywhere, gradient s_i * grad(logp_t)
    return torch.exp(seq_log_ratio.detach()).unsqueeze(1) * torch.exp(logp - logp.detach())


def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float,
    clip_high: float,
    aggregation: str = "token_mean",
    ratio_level: str = "token",
    ref_logp: Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
    max_len: int | None = None,
) -> tuple[Tensor, LossStats]:
    """Clipped policy-gradient loss with optional KL penalty and entropy bonus; see the module docstring.

    logp (current policy, carries grad), old_logp (behaviour), ref_logp, entropy, mask: [N, T];
    advantages: [N]. Returns the scalar loss [] and its ``LossStats``. ``num_tokens`` / ``num_seqs`` /
    ``max_len`` are passed to ``aggregate`` for every term.
    """
    if ratio_level not in RATIO_LEVELS:
        raise ValueError(f"unknown ratio_level {ratio_level!r}; valid: {list(RATIO_LEVELS)}")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown loss aggregation {aggregation!r}; valid: {sorted(AGGREGATIONS)}")
    if advantages.dim() != 1 or advantages.shape[0] != logp.shape[0]:
        raise ValueError(f"advantages must be [N]={logp.shape[0]}, got shape {tuple(advantages.shape)}")
    if kl_coef != 0.0 and ref_logp is None:
        raise ValueError(f"kl_coef={kl_coef} needs ref_logp")
    if entropy_coef != 0.0 and entropy is None:
        raise ValueError(f"entropy_coef={entropy_coef} needs entropy")

    keep, weights = _keep_and_weights(mask, logp.dtype)
    logp = _where_mask(logp, keep)
    old_logp = _where_mask(old_logp.detach().to(logp.dtype), keep)
    agg = dict(mode=aggregation, num_tokens=num_tokens, num_seqs=num_seqs, max_len=max_len)

    ratio = _ratio(logp, old_logp, weights, ratio_level)  # [N, T]
    adv = advantages.detach().to(logp.dtype).unsqueeze(1)  # [N, 1]
    pg_unclipped = -ratio * adv
    pg_clipped = -torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    pg = torch.maximum(pg_unclipped, pg_clipped)  # = -min(r*A, clip(r)*A)
    pg_loss = aggregate(pg, mask, **agg)
    loss = pg_loss

    kl_mean = 0.0
    if ref_logp is not None:
        ref_logp = _where_mask(ref_logp.detach().to(logp.dtype), keep)
        kl = kl_penalty(logp, ref_logp, kl_estimator)  # [N, T]
        kl_mean = _masked_mean(kl.detach(), weights)
        if kl_coef != 0.0:
            loss = loss + kl_coef * aggregate(kl, mask, **agg)

    entropy_mean = 0.0
    if entropy is not None:
        entropy = _where_mask(entropy, keep)
        entropy_mean = _masked_mean(entropy.detach(), weights)
        if entropy_coef != 0.0:
            loss = loss - entropy_coef * aggregate(entropy, mask, **agg)

    with torch.no_grad():
        positive, negative = adv > 0, adv < 0  # [N, 1]
        stats = LossStats(
            loss=loss.item(),
            pg_loss=pg_loss.item(),
            kl=kl_mean,
            entropy=entropy_mean,
            clip_frac=_masked_mean((pg_clipped > pg_unclipped).to(weights.dtype), weights),
            clip_low_frac=_masked_mean(((ratio < 1.0 - clip_low) & negative).to(weights.dtype), weights),
            clip_high_frac=_masked_mean(((ratio > 1.0 + clip_high) & positive).to(weights.dtype), weights),
            ratio_mean=_masked_mean(ratio, weights),
            approx_kl=_masked_mean(0.5 * (logp - old_logp) ** 2, weights),
        )
    return loss, stats
