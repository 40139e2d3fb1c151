"""Choosing the next token from logits: temperature, top-k, top-p, banned tokens, greedy; and the behaviour
log-probability of the chosen token.

The behaviour log-prob is taken under softmax(logits / temperature) over the full vocabulary, before top-k /
top-p truncation and before banning vision tokens: that is the distribution the update recomputes from the
same logits, so on-policy ratios are exactly 1 (TRL and verl make the same choice). Greedy decoding
(temperature 0) reports log-probs at temperature 1.
"""

from __future__ import annotations

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


def sample_next(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0,
                banned: torch.Tensor | None = None, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, V] (float) -> (token ids [B], behaviour log-probs [B])."""
    logits = logits.float()
    greedy = temperature <= 0
    scaled = logits if greedy else logits / temperature
    allowed = filter_logits(scaled, top_k, top_p, banned)
    if greedy:
        tokens = allowed.argmax(-1)
    else:
        probs = allowed.softmax(-1)
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    logp = scaled.log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return tokens, logp
