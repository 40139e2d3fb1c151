"""Per-token log-probabilities (and entropies) from final hidden states, without the full logits tensor.

A Qwen2.5-VL vocabulary has ~152k entries, so [tokens x vocab] float32 logits for a batch of a few thousand
completion tokens would take gigabytes, and autograd would keep them (and the softmax) for backward. Instead
the flattened tokens are processed ``chunk_size`` at a time: each chunk's logits are formed, reduced to one
log-prob (and one entropy) per token and dropped. With grad enabled each chunk runs under
``torch.utils.checkpoint`` (non-reentrant), so backward recomputes that chunk's logits rather than storing
them; peak extra memory is one chunk's [chunk_size x vocab] logits instead of all of them.

Logits are computed in float32 (hidden and lm-head weight are upcast inside the chunk, so a bf16 model never
holds a float32 copy of the lm head beyond one chunk), then divided by the sampling temperature so that the
log-probs are those of the distribution the rollout sampled from. This is the usual "chunked cross-entropy"
idea (e.g. Liger kernels, Cut Cross-Entropy, arXiv 2411.09009), done here in plain PyTorch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint


def _chunk_logprobs(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    targets: Tensor,
    temperature: float,
    with_entropy: bool,
) -> tuple[Tensor, Tensor | None]:
    """hidden [C, H], weight [V, H], bias [V] | None, targets [C] -> log-probs [C], entropy [C] | None."""
    logits = F.linear(hidden.float(), weight.float(), None if bias is None else bias.float())  # [C, V]
    return _from_logits(logits, targets, temperature, with_entropy)


def _from_logits(logits: Tensor, targets: Tensor, temperature: float, with_entropy: bool | str
                 ) -> tuple[Tensor, Tensor | None]:
    """logits [C, V] float32, targets [C] -> log-probs [C], bonus [C] | None, at `temperature`. The bonus is the
    entropy (`with_entropy` True or "entropy") or the mean log-probability of the vocabulary ("uniform")."""
    if temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, dim=-1)  # [C]
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    if not with_entropy:
        return logp, None
    # mean_v log p_v = mean_v logit_v - lse: minus the cross-entropy from the uniform distribution (up to
    # log V). Its gradient on logit v is 1/V - p_v, which does not vanish as p_v -> 0 (the entropy's,
    # -p_v (log p_v + H), does): a rarely sampled token is held up instead of left to fall.
    uniform = logits.mean(dim=-1) - lse if with_entropy in ("uniform", "entropy+uniform") else None
    if with_entropy == "uniform":
        return logp, uniform
    # H = lse - sum_v p_v * logit_v; avoids 0 * -inf where a probability underflows
    entropy = lse - (torch.softmax(logits, dim=-1) * logits).sum(dim=-1)
    return logp, entropy if uniform is None else entropy + uniform


def token_logprobs(
    hidden: Tensor,
    lm_head_weight: Tensor,
    targets: Tensor,
    *,
    temperature: float = 1.0,
    chunk_size: int = 1024,
    with_entropy: bool = False,
    lm_head_bias: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """log_softmax((hidden @ W.T + b) / temperature) at ``targets``, chunk by chunk.

    hidden: [N, T, H], where hidden[:, t] predicts targets[:, t] (the caller shifts); lm_head_weight: [V, H];
    lm_head_bias: [V] or None; targets: [N, T] long, every entry a valid token id (put any valid id, e.g. the
    pad id, at positions the loss masks). Returns float32 log-probs [N, T] and, if ``with_entropy``, the
    float32 entropy [N, T] of the same tempered distribution (else None). Both carry gradients to hidden,
    weight and bias when grad is enabled.
    """
    if hidden.dim() != 3 or targets.shape != hidden.shape[:2]:
        raise ValueError(
            f"hidden must be [N, T, H] and targets [N, T]; got {tuple(hidden.shape)} and {tuple(targets.shape)}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n, t, h = hidden.shape
    flat_hidden = hidden.reshape(n * t, h)
    flat_targets = targets.reshape(n * t).long()
    tensors = [hidden, lm_head_weight] + ([] if lm_head_bias is None else [lm_head_bias])
    recompute = torch.is_grad_enabled() and any(x.requires_grad for x in tensors)

    logps, entropies = [], []
    for start in range(0, n * t, chunk_size):
        args = (
            flat_hidden[start : start + chunk_size],
            lm_head_weight,
            lm_head_bias,
            flat_targets[start : start + chunk_size],
            temperature,
            with_entropy,
        )
        if recompute:
            logp, entropy = checkpoint(_chunk_logprobs, *args, use_reentrant=False)
        else:
            logp, entropy = _chunk_logprobs(*args)
        logps.append(logp)
        entropies.append(entropy)

    logp = torch.cat(logps).reshape(n, t) if logps else flat_hidden.new_zeros(n, t, dtype=torch.float32)
    if not with_entropy:
        return logp, None
    entropy = torch.cat(entropies).reshape(n, t) if entropies else torch.zeros_like(logp)
    return logp, entropy


def logits_logprobs(logits: Tensor, targets: Tensor, *, temperature: float = 1.0, with_entropy: bool = False
                    ) -> tuple[Tensor, Tensor | None]:
    """`token_logprobs` from logits a model has already formed (the generic tier runs transformers' own forward,
    whose head may do more than a linear map, e.g. Gemma's soft-capping): logits [N, T, V] where logits[:, t]
    predicts targets[:, t] -> float32 log-probs [N, T] and entropy [N, T] (else None) of softmax(logits /
    temperature)."""
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"logits must be [N, T, V] and targets [N, T]; got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n, t, v = logits.shape
    logp, entropy = _from_logits(logits.reshape(n * t, v).float(), targets.reshape(n * t).long(), temperature,
                                 with_entropy)
    return logp.reshape(n, t), None if entropy is None else entropy.reshape(n, t)
