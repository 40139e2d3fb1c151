"""The batch the family and generic-tier tests compare against transformers: five rows mixing one-image prompts of
two sizes, a two-image prompt and text-only prompts of different lengths (so every prompt is left-padded by a
different amount), and random completions of lengths 1..T for them."""

from __future__ import annotations

import torch
from PIL import Image

from vlrl.data import validate_row
from vlrl.rollout.types import Rollouts


def noise_image(w: int, h: int, seed: int) -> Image.Image:
    gen = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=gen, dtype=torch.uint8).numpy())


def mixed_rows():
    raw = [
        dict(id="one", images=[noise_image(64, 48, 1)], problem="what colour is the shape ?", answer="red"),
        dict(id="text", images=[], problem="how many ?", answer="two"),
        dict(id="tall", images=[noise_image(40, 90, 2)], problem="describe it", answer="blue"),
        dict(id="two", images=[noise_image(60, 60, 3), noise_image(96, 64, 4)], problem="compare these images",
             answer="left"),
        dict(id="long", images=[], problem="what colour is the shape and how many are there ?", answer="one"),
    ]
    return [validate_row(dict(r, task="t"), i) for i, r in enumerate(raw)]


def random_rollouts(policy, num_prompts: int, group_size: int, length: int) -> Rollouts:
    """Random completions (no vision tokens) of lengths 1..`length`, `group_size` per prompt."""
    gen = torch.Generator().manual_seed(0)
    n = num_prompts * group_size
    allowed = torch.tensor([i for i in range(len(policy.tokenizer)) if i not in policy.banned_token_ids])
    ids = allowed[torch.randint(len(allowed), (n, length), generator=gen)]
    lengths = torch.arange(n) % length + 1
    mask = (torch.arange(length) < lengths.unsqueeze(1)).long()
    ids = ids.masked_fill(mask == 0, policy.pad_token_id)
    return Rollouts(ids, mask, torch.zeros(n, length), [""] * n, lengths < length, group_size)
