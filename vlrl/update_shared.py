"""The update's forward with each prompt computed once per micro-batch (`algorithm.shared_prompt`).

The per-sequence forward (`vlrl.update.CompletionForward` on a `SequenceBatch`) runs every one of the n rows
[prompt + completion] through the language model, although a group's G rows share their prompt — often more
than half of the tokens (image placeholders + question). Here each distinct prompt of a micro-batch runs
once, with gradients, and its G completions attend to its keys and values:

1. prompt forward: the p distinct prompts [p, L] (left-padded, image features scattered in, their 3-D
   rotary positions) under a `RecordedPrompt` cache, which keeps each layer's rotated keys/values
   [p, kv_heads, L, head_dim] as autograd tensors. The prompt's last hidden state (position L-1) predicts the
   first completion token.
2. completion forward: the first T-1 completion tokens of the n rows (the last one predicts nothing) under a
   `PromptPrefix` cache, which puts row i's prompt keys/values (index_select by prompt, inside each layer) in
   front of its own. The 2-D attention mask [n, L + T-1] is the prompt's padding mask then the completion mask;
   with a cache, transformers sizes the mask from `get_mask_sizes` (kv length L + T-1) and offsets the queries
   by `get_query_offset` (L), so completion tokens see their prompt's valid tokens and earlier completion
   tokens, as in the concatenated sequence. Completion positions continue from the prompt's largest position
   in all three rotary components (as `gather_sequences` and the cached rollout engine do).
3. hidden [n, T, H] = cat(prompt last hidden of each row's prompt, completion hidden): the same tensor the
   per-sequence forward returns, so log-probs, loss and gradients are unchanged up to float rounding;
   gradients of the G rows flow back into their prompt through the index_select (autograd sums them).

Activation checkpointing: both caches are pure (nothing is appended; a layer recomputed in backward gets the
same keys/values back), so `cache_under_checkpointing` lets transformers' checkpointed layers keep them —
see `vlrl.models.prefix_cache`.

Micro-batches: a micro-batch is any set of rows, as for the per-sequence path. Its distinct prompts are
computed once within it, and forward and backward of each micro-batch are independent, so gradient
accumulation over micro-batches stays exact; a group split across two micro-batches has its prompt computed in
each (a micro_batch_size that is a multiple of group_size avoids that). Nothing is kept between micro-batches.

Saving: the prompt's L tokens run once instead of G times: (G-1)/G of the prompt work (projections, MLP,
prompt-prompt attention) and, under checkpointing, of the saved layer inputs. Completion queries still attend
over L + T keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlrl.data.prompts import PromptBatch
from vlrl.models.base import generated_positions, next_positions
from vlrl.models.policy import Policy
from vlrl.models.prefix_cache import RecordedPrompt, cache_under_checkpointing
from vlrl.rollout.types import Rollouts


@dataclass
class SharedPromptBatch:
    """A micro-batch of n rows whose p distinct prompts are computed once (built by `gather_shared_prompt`)."""

    prompt_ids: torch.Tensor  # [p, L] left-padded
    prompt_mask: torch.Tensor  # [p, L]
    prompt_positions: torch.Tensor  # [3, p, L] rotary positions
    pixel_values: torch.Tensor | None  # patches of the p prompts' images, in prompt order
    image_grid_thw: torch.Tensor | None  # [images of the p prompts, 3]
    prompt_index: torch.Tensor  # [n] row -> its prompt among the p
    completion_positions: torch.Tensor  # [3, n, T-1] positions of the completion inputs (tokens 0..T-2)
    targets: torch.Tensor  # [n, T] completion ids
    mask: torch.Tensor  # [n, T]
    vision_states: torch.Tensor | None = None  # rows of batch.vision_states for pixel_values' patches


def gather_shared_prompt(batch: PromptBatch, rollouts: Rollouts, rows: torch.Tensor) -> SharedPromptBatch:
    """Rows `rows` (indices into the N = P*G rollout rows) as a prompt-once micro-batch (needs batch.positions)."""
    prompts, index = (rows // batch.group_size).unique(sorted=True, return_inverse=True)
    targets, mask = rollouts.completion_ids[rows], rollouts.completion_mask[rows]
    positions = batch.positions[:, prompts]  # [3, p, L]
    # The completion inputs are tokens 0..T-2 (the last token is only a target).
    completion_pos = generated_positions(next_positions(positions)[index], torch.arange(targets.shape[1] - 1))
    images = batch.select_images([i for p in prompts.tolist() for i in batch.prompt_images(p)])
    return SharedPromptBatch(batch.input_ids[prompts], batch.attention_mask[prompts], positions, images.pixel_values,
                             images.image_grid_thw, index, completion_pos, targets, mask, images.vision_states)


def shared_prompt_hidden(policy: Policy, b: SharedPromptBatch) -> torch.Tensor:
    """Hidden states [n, T, H] where hidden[:, t] predicts b.targets[:, t] (as `CompletionForward` returns for
    the same rows), each prompt computed once."""
    # As CompletionForward: every data-parallel rank runs the vision tower (value and gradient unchanged).
    features, unused = policy.image_features_or_blank(b.pixel_values, b.image_grid_thw, b.vision_states,
                                                      b.prompt_ids.device)
    language_model = policy.language_model
    recorded = RecordedPrompt(len(language_model.layers))
    with cache_under_checkpointing(language_model):
        prompt_hidden, _ = policy.forward_tokens(b.prompt_ids, features, b.prompt_positions, b.prompt_mask,
                                                 past_key_values=recorded)
        hidden = prompt_hidden[b.prompt_index, -1:]  # [n, 1, H]: predicts the first completion token
        if b.targets.shape[1] > 1:
            inputs = b.targets[:, :-1]
            attn = torch.cat([b.prompt_mask[b.prompt_index], b.mask[:, :-1].to(b.prompt_mask.dtype)], 1)
            completion_hidden, _ = policy.forward_tokens(inputs, None, b.completion_positions, attn,
                                                         past_key_values=recorded.prefix(b.prompt_index))
            hidden = torch.cat([hidden, completion_hidden], 1)
    return hidden if unused is None else hidden + unused.to(hidden.dtype)
