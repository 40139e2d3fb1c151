"""The reference backend: transformers `generate` on the prompts repeated G times. Slow (every image is encoded
G times, every prompt prefilled G times) but independent of our engine, so tests compare against it. Stop
strings cannot end `generate` on our text test, so they are applied afterwards (`scan_stops`): same cut. `rollout.min_new_tokens` is transformers' own `min_new_tokens`.

The generic tier (`vlrl.models.generic`) rolls out here too, one prompt at a time (`generate_generic`): G copies
of the prompt's own processor outputs, nothing padded, each prompt's samples drawn from its own seed."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vlrl.config import RolloutConfig
from vlrl.data.prompts import PromptBatch
from vlrl.models.generic import repeat_inputs
from vlrl.models.policy import Policy
from vlrl.rollout.stopping import scan_stops
from vlrl.rollout.types import Rollouts, finish_rollouts


def _repeat_images(batch: PromptBatch, G: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """pixel_values / image_grid_thw of the batch with each prompt's images repeated G times in place."""
    images = batch.select_images([i for p in range(batch.num_prompts) for _ in range(G) for i in batch.prompt_images(p)])
    return images.pixel_values, images.image_grid_thw


@torch.no_grad()
def generate_reference(policy: Policy, batch: PromptBatch, cfg: RolloutConfig,
                       generator: torch.Generator | None = None, greedy: bool = False,
                       seeds: Sequence[int] | None = None) -> Rollouts:
    batch = batch.to(policy.device)
    G = batch.group_size
    pixel_values, grid = _repeat_images(batch, G)
    temperature = 0.0 if greedy else cfg.temperature
    do_sample = temperature > 0
    kwargs = dict(temperature=temperature, top_p=cfg.top_p, top_k=cfg.top_k or None) if do_sample else {}
    if seeds is not None and do_sample:  # transformers samples the batch from one global generator
        generator = torch.Generator().manual_seed(int(sum(seeds)) % 2**63)
    if generator is not None and do_sample:
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device)))
    out = policy.core.generate(
        input_ids=batch.input_ids.repeat_interleave(G, 0),
        attention_mask=batch.attention_mask.repeat_interleave(G, 0),
        mm_token_type_ids=batch.mm_token_type_ids.repeat_interleave(G, 0),
        pixel_values=pixel_values, image_grid_thw=grid,
        max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.min_new_tokens or None, do_sample=do_sample, suppress_tokens=list(policy.banned_token_ids),
        eos_token_id=list(policy.eos_token_ids), pad_token_id=policy.pad_token_id,
        output_logits=True, return_dict_in_generate=True, **kwargs,
    )
    tokens = out.sequences[:, batch.input_ids.shape[1]:]
    raw = torch.stack(out.logits, 1).float()  # [N, T, V] unprocessed logits
    scaled = raw / temperature if do_sample else raw
    logps = scaled.log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    stop_at = scan_stops(policy.tokenizer, tokens.cpu(), policy.eos_token_ids, cfg.stop, cfg.min_new_tokens)
    return finish_rollouts(policy, batch, tokens, logps, stop_at, cfg.stop)


@torch.no_grad()
def generate_generic(policy: Policy, batch: PromptBatch, cfg: RolloutConfig,
                     generator: torch.Generator | None = None, greedy: bool = False,
                     seeds: Sequence[int] | None = None) -> Rollouts:
    """The generic tier's rollout: transformers `generate` on each prompt's processor outputs (G copies), prompt
    by prompt; randomness per prompt from `seeds[p]` (else a seed drawn from `generator`, else the global RNG)."""
    batch = batch.to(policy.device)
    G = batch.group_size
    temperature = 0.0 if greedy else cfg.temperature
    do_sample = temperature > 0
    kwargs = dict(temperature=temperature, top_p=cfg.top_p, top_k=cfg.top_k or None) if do_sample else {}
    tokens, logps = [], []
    for p, inputs in enumerate(batch.prompt_inputs):
        if do_sample and seeds is not None:
            torch.manual_seed(int(seeds[p]) % 2**63)
        elif do_sample and generator is not None:
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device)))
        out = policy.core.generate(
            **repeat_inputs(inputs, G), max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.min_new_tokens or None, do_sample=do_sample,
            suppress_tokens=list(policy.banned_token_ids), eos_token_id=list(policy.eos_token_ids),
            pad_token_id=policy.pad_token_id, output_logits=True, return_dict_in_generate=True, **kwargs,
        )
        new = out.sequences[:, inputs["input_ids"].shape[1]:]  # [G, t]: t <= max_new_tokens
        raw = torch.stack(out.logits, 1).float()  # [G, t, V] unprocessed logits
        scaled = raw / temperature if do_sample else raw
        tokens.append(new)
        logps.append(scaled.log_softmax(-1).gather(-1, new.unsqueeze(-1)).squeeze(-1))
    T = max(t.shape[1] for t in tokens)
    # A prompt whose samples all ended early is padded after their EOS (masked by finish_rollouts).
    tokens = torch.cat([torch.nn.functional.pad(t, (0, T - t.shape[1]), value=policy.pad_token_id) for t in tokens])
    logps = torch.cat([torch.nn.functional.pad(lp, (0, T - lp.shape[1])) for lp in logps])
    stop_at = scan_stops(policy.tokenizer, tokens.cpu(), policy.eos_token_ids, cfg.stop, cfg.min_new_tokens)
    return finish_rollouts(policy, batch, tokens, logps, stop_at, cfg.stop)
