"""Pure (stateless-update) KV caches for running a shared prompt once and its completions after it, with
gradients, under transformers' attention code.

The update's prompt-once path (`vlrl.update_shared`) runs each prompt through the language model once,
keeping every layer's rotated keys and values, then runs the completions with those keys and values in front
of their own. transformers' attention layers already do exactly that with a cache: they call
`cache.update(k, v, layer_idx)` and attend over what it returns; the mask builder sizes the mask from
`cache.get_mask_sizes` / `get_query_offset`. Two things make the stock `DynamicCache` unusable for training:

- its `update` appends in place. With activation checkpointing a layer's forward runs a second time in
  backward (recompute), and would append a second time: the recomputed attention would see the prompt twice
  and its saved tensors would not match the first run's.
- a checkpointed decoder layer (`GradientCheckpointingLayer`) drops the cache argument (sets it to None) unless
  the layer says it may keep it (`_can_checkpoint_with_cache`), because of the first point.

Both caches here are pure in that sense: `RecordedPrompt` returns its input unchanged and keeps the first
keys/values it sees per layer (a recompute in backward sees the same values and is ignored), `PromptPrefix`
returns cat(prompt keys of each row's prompt, new keys) and stores nothing. So recomputing a layer gives the
same tensors, and `cache_under_checkpointing` can let the checkpointed layers keep the cache. Gradients reach
the prompt through the concatenation (autograd sums over the rows sharing a prompt); that needs non-reentrant
checkpointing (`use_reentrant=False`, what `load_policy` enables), which follows tensors that enter a
checkpointed region other than as its arguments.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers.cache_utils import Cache, CacheLayerMixin
from transformers.modeling_layers import GradientCheckpointingLayer


class _RecordLayer(CacheLayerMixin):
    """One layer of `RecordedPrompt`: attention over the inputs only (seen length 0); keeps the first k/v."""

    is_sliding = False

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys is None:  # a recompute in backward calls again with the same values: keep the first
            self.keys, self.values = key_states, value_states
        return key_states, value_states

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return query_length, 0

    def get_seq_length(self) -> int:
        return 0

    def get_max_length(self) -> int:
        return -1


class _PrefixLayer(CacheLayerMixin):
    """One layer of `PromptPrefix`: prompt keys/values [p, kv_heads, L, head_dim] in front of each row's own."""

    is_sliding = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, index: torch.Tensor):
        super().__init__()
        self.keys, self.values, self.index = keys, values, index
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        pass

    def update(self, key_states, value_states, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """key/value_states [n, kv_heads, T, head_dim] -> [n, kv_heads, L + T, head_dim]; nothing is stored.
        The rows' prompt copies are made here, inside the (checkpointed) layer, so only the p prompts' keys
        and values stay alive between layers, not n copies."""
        keys = torch.cat([self.keys.index_select(0, self.index), key_states], dim=-2)
        values = torch.cat([self.values.index_select(0, self.index), value_states], dim=-2)
        return keys, values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.keys.shape[-2] + query_length, 0

    def get_seq_length(self) -> int:
        return self.keys.shape[-2]

    def get_max_length(self) -> int:
        return -1


class RecordedPrompt(Cache):
    """Pass as the cache of a prompt forward: attention is that of a forward without cache, and afterwards
    `keys[layer]`, `values[layer]` [p, kv_heads, L, head_dim] hold the rotated keys and values (with their
    autograd history, so gradients flow back into the prompt forward)."""

    def __init__(self, num_layers: int):
        super().__init__(layers=[_RecordLayer() for _ in range(num_layers)])

    def prefix(self, index: torch.Tensor) -> PromptPrefix:
        """A cache putting prompt `index[i]` in front of row i; index [n] long into the p prompts."""
        missing = [i for i, layer in enumerate(self.layers) if layer.keys is None]
        if missing:
            raise RuntimeError(f"the prompt forward did not reach the cache of layers {missing}")
        return PromptPrefix([_PrefixLayer(layer.keys, layer.values, index) for layer in self.layers])


class PromptPrefix(Cache):
    """Pass as the cache of a completion forward: row i's queries attend to its prompt's keys/values (the L
    prompt columns of a 2-D attention mask [n, L + T] say which are padding), then causally to its own."""

    def __init__(self, layers: list[_PrefixLayer]):
        super().__init__(layers=layers)


@contextmanager
def cache_under_checkpointing(module: torch.nn.Module):
    """Let the checkpointed decoder layers under `module` keep their cache argument (transformers drops it
    under activation checkpointing, which is right for appending caches and needless for the pure ones here)."""
    layers = [m for m in module.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not hasattr(GradientCheckpointingLayer, "_can_checkpoint_with_cache") and any(
            m.gradient_checkpointing for m in layers):
        # Older transformers drop the cache of every checkpointed layer: the completions would not see the prompt.
        raise NotImplementedError("algorithm.shared_prompt with gradient checkpointing needs a transformers whose "
                                  "GradientCheckpointingLayer has _can_checkpoint_with_cache (5.24 has)")
    before = [m.__dict__.get("_can_checkpoint_with_cache") for m in layers]
    for layer in layers:
        layer._can_checkpoint_with_cache = True  # an instance attribute shadows the class default
    try:
        yield
    finally:
        for layer, value in zip(layers, before, strict=True):
            if value is None:
                del layer._can_checkpoint_with_cache
            else:
                layer._can_checkpoint_with_cache = value
