"""The shared-prefix backend: each prompt's images are encoded once and the prompt is prefilled once; the
KV cache is then repeated G times and the group's samples decode from it in one batch.

Positions: each prompt has the family's rotary positions; generated tokens follow `generated_positions`.
Before `rollout.min_new_tokens` tokens EOS cannot be chosen (`sampling.banned_at`) and stop strings do not end
a row. Finished rows (EOS or a stop string, `rollout.stopping`) keep decoding padding (masked out) so the batch stays
rectangular; decoding stops when every row has finished or `max_new_tokens` is reached.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vlrl.config import RolloutConfig
from vlrl.data.prompts import PromptBatch
from vlrl.models.base import generated_positions, next_positions
from vlrl.models.policy import Policy
from vlrl.rollout.sampling import banned_at, group_uniforms, sample_next
from vlrl.rollout.stopping import StopChecker
from vlrl.rollout.types import Rollouts, finish_rollouts


@torch.no_grad()
def generate_cached(policy: Policy, batch: PromptBatch, cfg: RolloutConfig,
                    generator: torch.Generator | None = None, greedy: bool = False,
                    seeds: Sequence[int] | None = None) -> Rollouts:
    device = policy.device
    batch = batch.to(device)
    G = batch.group_size
    P, L = batch.input_ids.shape
    N = P * G
    banned = torch.tensor(policy.banned_token_ids, dtype=torch.long, device=device)
    eos = torch.tensor(policy.eos_token_ids, dtype=torch.long, device=device)
    temperature = 0.0 if greedy else cfg.temperature
    uniforms = None
    if seeds is not None and not greedy:
        if len(seeds) != P:
            raise ValueError(f"{len(seeds)} seeds for {P} prompts")
        uniforms = group_uniforms(seeds, G, cfg.max_new_tokens).to(device)  # [N, max_new_tokens]

    # Prefill each prompt once.
    features = policy.image_features(batch.pixel_values, batch.image_grid_thw, batch.vision_states)
    positions = policy.prompt_positions(batch)  # [3, P, L]
    hidden, cache = policy.forward_tokens(batch.input_ids, features, positions, batch.attention_mask, use_cache=True)
    logits = policy.lm_head(hidden[:, -1]).float()  # [P, V]

    # Share the prefix across the group: samples of prompt p are rows p*G .. p*G+G-1.
    cache.batch_repeat_interleave(G)
    logits = logits.repeat_interleave(G, dim=0)  # [N, V]
    first = next_positions(positions).repeat_interleave(G)  # [N]
    attn = batch.attention_mask.repeat_interleave(G, dim=0)  # [N, L]

    tokens, logps = [], []
    done = torch.zeros(N, dtype=torch.bool, device=device)
    stops = StopChecker(policy.tokenizer, cfg.stop, N, cfg.min_new_tokens)
    for t in range(cfg.max_new_tokens):
        tok, logp = sample_next(logits, temperature, cfg.top_k, cfg.top_p,
                                banned_at(t, banned, eos, cfg.min_new_tokens), generator,
                                None if uniforms is None else uniforms[:, t])
        tok = torch.where(done, torch.full_like(tok, policy.pad_token_id), tok)
        tokens.append(tok)
        logps.append(logp)
        done = done | torch.isin(tok, eos)
        if stops.stops:
            live = (~done).nonzero().squeeze(1).tolist()
            for r in stops.update(live, tok[live].tolist()):
                done[r] = True
        if bool(done.all()) or t == cfg.max_new_tokens - 1:
            break
        attn = torch.cat([attn, torch.ones(N, 1, dtype=attn.dtype, device=device)], dim=1)
        step_pos = generated_positions(first, t)  # [3, N, 1]
        hidden, cache = policy.forward_tokens(tok.unsqueeze(1), None, step_pos, attn, past_key_values=cache,
                                              use_cache=True)
        logits = policy.lm_head(hidden[:, -1]).float()
    return finish_rollouts(policy, batch, torch.stack(tokens, 1), torch.stack(logps, 1), stops.stop_at, cfg.stop)
