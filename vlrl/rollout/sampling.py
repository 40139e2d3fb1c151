"""Choosing the next token from logits: temperature, top-k, top-p, banned tokens, greedy; and the behaviour
log-probability of the chosen token.

The behaviour log-prob is taken under softmax(logits / temperature) over the full vocabulary, before top-k /
top-p truncation and before banning vision tokens: that is the distribution the update recomputes from the
same logits, so on-policy ratios are exactly 1 (TRL and verl make the same choice). Greedy decoding
(temperature 0) reports log-probs at temperature 1.

Training rollouts draw their randomness per prompt (`group_uniforms`): each prompt has its own seed and its G
samples read uniform numbers from that seed only, turned into tokens by inverting the CDF. What a prompt samples
therefore does not depend on which other prompts share its batch — nor on how many data-parallel ranks split
the step, nor on CPU vs GPU (the numbers are drawn on the CPU) — only on the logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0,
                  banned: torch.Tensor | None = None) -> torch.Tensor:
    """logits [B, V] -> logits with excluded tokens set to -inf (banned ids, outside top-k / top-p)."""
    logits = logits.clone()
    if banned is not None and banned.numel():
        logits[:, banned] = float("-inf")
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the mass before it already reaches top_p; the most likely token always stays.
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def banned_at(step: int, banned: torch.Tensor, eos: torch.Tensor, min_new_tokens: int) -> torch.Tensor:
    """Token ids that cannot be chosen as completion token `step` (0-based): `banned` (vision placeholders), and
    before `min_new_tokens` tokens the EOS ids `eos` too (as transformers' `generate(min_new_tokens=...)`)."""
    return torch.cat([banned, eos]) if step < min_new_tokens else banned


def prompt_seed(seed: int, step: int, prompt: int) -> int:
    """The sampling seed of prompt `prompt` (its index among the step's prompts, over all ranks) at `step`."""
    return int(np.random.SeedSequence([seed, step, prompt]).generate_state(1, np.uint64)[0])


def group_uniforms(seeds: Sequence[int], group_size: int, max_new_tokens: int) -> torch.Tensor:
    """Uniform numbers in [0, 1) for sampling: [len(seeds) * group_size, max_new_tokens], group-contiguous;
    rows p*G .. p*G+G-1 come from seeds[p] alone (a CPU generator, so any device gets the same numbers)."""
    out = torch.empty(len(seeds) * group_size, max_new_tokens, dtype=torch.float64)
    for p, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(seed)
        out[p * group_size:(p + 1) * group_size] = torch.rand(group_size, max_new_tokens, generator=g,
                                                                dtype=torch.float64)
    return out


def inverse_cdf(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """probs [B, V] (rows may be unnormalised), uniform [B] in [0, 1) -> token ids [B]: the first token whose
    cumulative probability exceeds uniform * total. A token of probability 0 is never chosen (the cumulative
    sum does not rise at it)."""
    cdf = probs.cumsum(-1)
    target = uniform.to(cdf.device, cdf.dtype) * cdf[:, -1]
    tokens = torch.searchsorted(cdf, target.unsqueeze(-1), right=True).squeeze(-1)
    # uniform * total can round up to the total itself; fall back to the last token that has mass.
    last = probs.shape[-1] - 1 - (probs > 0).flip(-1).int().argmax(-1)
    return torch.minimum(tokens, last)


def sample_next(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0,
                banned: torch.Tensor | None = None, generator: torch.Generator | None = None,
                uniform: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, V] (float) -> (token ids [B], behaviour log-probs [B]).

    Randomness: `uniform` [B] (one number per row, see `group_uniforms`) if given, else `generator`."""
    logits = logits.float()
    greedy = temperature <= 0
    scaled = logits if greedy else logits / temperature
    allowed = filter_logits(scaled, top_k, top_p, banned)
    if greedy:
        tokens = allowed.argmax(-1)
    elif uniform is not None:
        tokens = inverse_cdf(allowed.softmax(-1), uniform)
    else:
        probs = allowed.softmax(-1)
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    logp = scaled.log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return tokens, logp
