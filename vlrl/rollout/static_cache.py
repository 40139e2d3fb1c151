"""The engine's decode state: a KV cache preallocated for the whole rollout and written in place.

Each layer owns one key and one value buffer [N, kv_heads, S, head_dim], S = L (padded prompt length) +
max_new_tokens. Slots 0..L-1 hold the prompt (copied from the prefill), slot L+t the token fed at decode step t.
Nothing in a decode step depends on t through a shape or a Python value: the step reads t from a 0-d device
tensor (`slot`), writes keys/values with `index_copy_` at that slot, and masks the unused slots — so one
captured CUDA graph serves every step.

Why our own `Cache` subclass and not transformers' `StaticCache`: the model's attention calls
`cache.update(k, v, layer_idx)` and attends over whatever it returns, which is all we need, and owning the
layer lets it write at a slot shared by all layers and the mask (StaticCache advances a counter per layer) and
lets compaction swap the buffers for views of their first B rows (StaticCache allocates its own tensors for a
fixed batch size). The mask is prepared by `Policy.decode_mask`, so transformers' mask builder — which
inspects mask values on the host — never runs during decode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from vlrl.models.base import generated_positions


class SlotLayer(CacheLayerMixin):
    """One layer's keys/values [B, kv_heads, S, head_dim] (views into the state's buffers), written at `slot`."""

    is_sliding = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, slot: torch.Tensor):
        super().__init__()
        self.keys, self.values, self.slot = keys, values, slot
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        raise RuntimeError("SlotLayer is built initialised")

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """key/value states [B, kv_heads, 1, head_dim] -> the whole buffers, with them written at `slot`."""
        index = self.slot.view(1)
        self.keys.index_copy_(2, index, key_states)
        self.values.index_copy_(2, index, value_states)
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.keys.shape[-2], 0

    def get_seq_length(self) -> int:
        """The capacity S: positions and masks come from the engine, never from this."""
        return self.keys.shape[-2]

    def get_max_length(self) -> int:
        return self.keys.shape[-2]


class SlotCache(Cache):
    """The per-step cache object handed to the language model: one `SlotLayer` per decoder layer."""

    def __init__(self, layers: list[SlotLayer]):
        super().__init__(layers=layers)


@dataclass
class DecodeState:
    """Everything a decode step reads or writes, allocated once per rollout for N rows (the first B rows are
    the active batch; compaction moves the rows still running to the front)."""

    keys: list[torch.Tensor]  # per layer [N, kv_heads, S, head_dim]
    values: list[torch.Tensor]  # per layer [N, kv_heads, S, head_dim]
    prompt_valid: torch.Tensor  # [N, S] bool: prompt slots holding real tokens (False for left padding and s >= L)
    next_pos: torch.Tensor  # [N] long: rotary position of the first generated token (all three mRoPE axes)
    tokens: torch.Tensor  # [N] long: the token fed at this step
    prompt_len: torch.Tensor  # [] long: L, the first generated slot
    slot: torch.Tensor  # [] long: L + t, the slot written at step t
    slot_ids: torch.Tensor  # [S] long: 0..S-1

    @classmethod
    def from_prefill(cls, prefill_cache: Cache, attention_mask: torch.Tensor, next_pos: torch.Tensor,
                     group_size: int, max_new_tokens: int) -> DecodeState:
        """Copy a prefill cache of P prompts ([P, kv_heads, L, head_dim] per layer) into buffers of
        N = P * group_size rows, prompt p in rows p*G .. p*G+G-1; attention_mask [P, L]; next_pos [P]."""
        P, L = attention_mask.shape
        G, S = group_size, attention_mask.shape[1] + max_new_tokens
        device = attention_mask.device
        keys, values = [], []
        for layer in prefill_cache.layers:
            for src, out in ((layer.keys, keys), (layer.values, values)):
                buf = src.new_zeros(P * G, src.shape[1], S, src.shape[3])
                # Broadcast copy: the group's G rows read one prefill row, no repeated temporary.
                buf.view(P, G, *buf.shape[1:])[:, :, :, :L].copy_(src.unsqueeze(1))
                out.append(buf)
        prompt_valid = torch.zeros(P * G, S, dtype=torch.bool, device=device)
        prompt_valid[:, :L] = attention_mask.bool().repeat_interleave(G, 0)
        return cls(keys=keys, values=values, prompt_valid=prompt_valid, next_pos=next_pos.repeat_interleave(G),
                   tokens=torch.zeros(P * G, dtype=torch.long, device=device),
                   prompt_len=torch.tensor(L, device=device), slot=torch.tensor(L, device=device),
                   slot_ids=torch.arange(S, device=device))

    def cache(self, batch: int) -> SlotCache:
        """The cache over the first `batch` rows (views: writes land in the shared buffers)."""
        return SlotCache([SlotLayer(k[:batch], v[:batch], self.slot) for k, v in zip(self.keys, self.values, strict=True)])

    def valid(self, batch: int) -> torch.Tensor:
        """[batch, S] bool: real prompt tokens and the generated slots up to and including this step's."""
        generated = (self.slot_ids >= self.prompt_len) & (self.slot_ids <= self.slot)
        return self.prompt_valid[:batch] | generated

    def positions(self, batch: int) -> torch.Tensor:
        """[3, batch, 1] rotary positions of this step's token: the row's first generated position + t."""
        return generated_positions(self.next_pos[:batch], (self.slot - self.prompt_len).view(1))

    def compact(self, select: torch.Tensor) -> None:
        """Move rows `select` [B'] (indices into the current batch) to rows 0..B'-1 of every buffer."""
        n = select.shape[0]
        for buf in (*self.keys, *self.values, self.prompt_valid, self.next_pos):
            buf[:n] = buf.index_select(0, select)  # index_select copies first, so sources are never overwritten
