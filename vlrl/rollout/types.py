"""What a rollout returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vlrl.data.prompts import PromptBatch
from vlrl.models.policy import Policy
from vlrl.rollout.stopping import cut_after_stop


@dataclass
class Rollouts:
    completion_ids: torch.Tensor  # [N, T] N = P*G, group-contiguous; padded with pad id after EOS
    completion_mask: torch.Tensor  # [N, T] 1 for generated tokens up to and including EOS / the stopping token
    logprobs: torch.Tensor  # [N, T] behaviour log-probs (0 where masked)
    texts: list[str]  # [N] decoded completions, special tokens removed
    finished: torch.Tensor  # [N] bool: ended with EOS or a stop string (False = cut at max_new_tokens)
    group_size: int

    @property
    def lengths(self) -> torch.Tensor:  # [N]
        return self.completion_mask.sum(-1)


def finish_rollouts(policy: Policy, batch: PromptBatch, tokens: torch.Tensor, logps: torch.Tensor,
                    stop_at: torch.Tensor | None = None, stops: Sequence[str] = ()) -> Rollouts:
    """tokens/logps [N, T] from a backend -> Rollouts with masks and text. The mask ends after the first EOS,
    or after `stop_at` [N] tokens where that is > 0 (a stop string ended the row; see `rollout.stopping`)."""
    eos = torch.tensor(policy.eos_token_ids, dtype=torch.long, device=tokens.device)
    is_eos = torch.isin(tokens, eos)
    # A token is part of the completion if no EOS came strictly before it.
    eos_before = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    mask = ~eos_before
    stopped = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    if stop_at is not None:
        stop_at = stop_at.to(tokens.device)
        stopped = stop_at > 0
        index = torch.arange(tokens.shape[1], device=tokens.device)
        mask &= ~stopped.unsqueeze(1) | (index < stop_at.unsqueeze(1))
    tokens = tokens.masked_fill(~mask, policy.pad_token_id)
    logps = logps.masked_fill(~mask, 0.0)
    texts = policy.tokenizer.batch_decode(tokens.cpu(), skip_special_tokens=True)
    if stops:
        texts = [cut_after_stop(t, stops) if s else t for t, s in zip(texts, stopped.tolist(), strict=True)]
    return Rollouts(completion_ids=tokens, completion_mask=mask.long(), logprobs=logps,
                    texts=[t.strip() for t in texts], finished=(is_eos & mask).any(1) | stopped,
                    group_size=batch.group_size)
