"""The policy update: log-probs of the sampled completions under the current policy, and the micro-batched
GRPO-family loss.

A micro-batch is a set of sequences (prompt + completion). Each distinct image among them is encoded once and
its features are shared by that prompt's samples (an index, so gradients still reach a trainable vision
tower). Only the completion positions go through the LM head, chunk by chunk (`vlrl.algorithms.logprobs`).

A model of the generic tier (`vlrl.models.generic`) runs transformers' own forward instead, on each prompt's
processor outputs with its rows' completions appended (`GenericSequenceBatch`), one distinct prompt at a time.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from accelerate.utils import DistributedType

from vlrl.algorithms import LossStats, policy_loss, token_logprobs
from vlrl.algorithms.loss import TOKEN_MEANS
from vlrl.config import AlgorithmConfig, OptimConfig
from vlrl.data.prompts import PromptBatch
from vlrl.models.base import generated_positions, next_positions
from vlrl.models.policy import Policy
from vlrl.rollout.types import Rollouts
from vlrl.update_shared import SharedPromptBatch, gather_shared_prompt, shared_prompt_hidden


@dataclass
class SequenceBatch:
    """Everything the forward needs for a set of sequences (rows of the rollout), built from the batch."""

    input_ids: torch.Tensor  # [n, L+T]
    attention_mask: torch.Tensor  # [n, L+T]
    positions: torch.Tensor  # [3, n, L+T] rotary positions
    pixel_values: torch.Tensor | None  # patches of the distinct images used by these sequences
    distinct_grid_thw: torch.Tensor | None  # [distinct images, 3]
    feature_index: torch.Tensor | None  # [image tokens over sequences] rows into distinct image features
    targets: torch.Tensor  # [n, T] completion ids
    mask: torch.Tensor  # [n, T]
    vision_states: torch.Tensor | None = None  # rows of batch.vision_states for pixel_values' patches


@dataclass
class GenericSequenceBatch:
    """A micro-batch of n rows for the generic tier: per distinct prompt, the rows it holds and its processor
    outputs (batch 1); each prompt's rows run as one batch of prompt + completion through the model's forward."""

    groups: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]  # (positions among the n rows [k], prompt inputs)
    targets: torch.Tensor  # [n, T] completion ids
    mask: torch.Tensor  # [n, T]


def generic_logprobs(policy: Policy, seqs: GenericSequenceBatch, temperature: float, with_entropy: bool
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [n, T] (and entropy [n, T]) of a generic-tier micro-batch, prompt by prompt."""
    logps, entropies = [], []
    for rows, prompt in seqs.groups:
        logp, entropy = policy.completion_logprobs(prompt, seqs.targets[rows], seqs.mask[rows], temperature,
                                                   with_entropy)
        logps.append(logp)
        entropies.append(entropy)
    order = torch.argsort(torch.cat([rows for rows, _ in seqs.groups]))  # back to row order
    logp = torch.cat(logps)[order]
    return logp, torch.cat(entropies)[order] if with_entropy else None


class CompletionForward(torch.nn.Module):
    """The training forward as a module, so data-parallel wrappers (accelerate) see a regular `forward`:
    (prompt + completion tokens, image patches) -> log-probs of the completion tokens.

    Every use of a parameter happens inside this forward, the LM head included: under full sharding (FSDP2) a
    parameter is whole only between the pre- and post-forward hooks of the module that owns it, and this
    module owns what no layer does (embeddings, final norm, LM head, patch embedding, merger). Whatever else
    needs the whole model (rollout, evaluation) runs as `forward(policy, run=fn)`: see `_with_full_parameters`.
    """

    def __init__(self, hf_model: torch.nn.Module):
        super().__init__()
        self.hf_model = hf_model
        # What FSDP's inner units do after their forward during training (accelerate's
        # fsdp_reshard_after_forward); restored after a `run`. The trainer sets it after preparing.
        self.reshard_after_forward = True

    def forward(self, policy: Policy, seqs: SequenceBatch | SharedPromptBatch | None = None, temperature: float = 1.0,
                chunk_size: int = 1024, with_entropy: bool = False, run=None):
        """Log-probs [n, T] (and entropy [n, T], else None) of seqs.targets; or, with `run`, run()'s result."""
        if run is not None:
            return self._with_full_parameters(run)
        if isinstance(seqs, GenericSequenceBatch):  # the generic tier: the model's own forward and logits
            return generic_logprobs(policy, seqs, temperature, with_entropy)
        if isinstance(seqs, SharedPromptBatch):  # each prompt once (algorithm.shared_prompt)
            hidden = shared_prompt_hidden(policy, seqs)
        else:
            hidden = self._hidden(policy, seqs)
        head = policy.lm_head
        return token_logprobs(hidden, head.weight, seqs.targets, temperature=temperature, chunk_size=chunk_size,
                              with_entropy=with_entropy, lm_head_bias=head.bias)

    def _hidden(self, policy: Policy, seqs: SequenceBatch) -> torch.Tensor:
        """Hidden states [n, T, H]; hidden[:, t] predicts seqs.targets[:, t]."""
        # A text-only micro-batch still runs the vision tower, on a blank image (`image_features_or_blank`).
        features, unused = policy.image_features_or_blank(seqs.pixel_values, seqs.distinct_grid_thw,
                                                          seqs.vision_states, seqs.input_ids.device)
        if features is not None:
            features = features.select(seqs.feature_index)
        hidden, _ = policy.forward_tokens(seqs.input_ids, features, seqs.positions, seqs.attention_mask)
        T = seqs.targets.shape[1]
        L = seqs.input_ids.shape[1] - T
        hidden = hidden[:, L - 1 : L - 1 + T]
        return hidden if unused is None else hidden + unused.to(hidden.dtype)

    def _with_full_parameters(self, run):
        """run() with every parameter whole. Called inside this module's forward, so FSDP2 has gathered this
        module's own parameters; the inner units (layers, vision blocks) are gathered here once and kept whole
        until run() returns. Left to their hooks, they would gather on every call and reshard after it — one
        collective per layer per decoded token, and ranks that stop decoding at different steps would then wait
        on each other forever. Without FSDP this is just run()."""
        from torch.distributed.fsdp import FSDPModule

        inner = [m for m in self.modules() if isinstance(m, FSDPModule) and m is not self]
        for m in inner:
            m.unshard()
            m.set_reshard_after_forward(False, recurse=False)
        try:
            return run()
        finally:
            for m in inner:
                m.set_reshard_after_forward(self.reshard_after_forward, recurse=False)
                m.reshard()


def gather_sequences(batch: PromptBatch, rollouts: Rollouts, rows: torch.Tensor
                     ) -> SequenceBatch | GenericSequenceBatch:
    """Sequences `rows` (indices into the N = P*G rollout rows) as model inputs (needs batch.positions, except
    for the generic tier's batches)."""
    G = batch.group_size
    prompts = rows // G
    targets, mask = rollouts.completion_ids[rows], rollouts.completion_mask[rows]
    if batch.prompt_inputs is not None:
        groups = [((prompts == p).nonzero().squeeze(-1), batch.prompt_inputs[p])
                  for p in prompts.unique(sorted=True).tolist()]
        return GenericSequenceBatch(groups, targets, mask)
    ids = torch.cat([batch.input_ids[prompts], targets], 1)
    attn = torch.cat([batch.attention_mask[prompts], mask.to(batch.attention_mask.dtype)], 1)
    prompt_pos = batch.positions[:, prompts]  # [3, n, L]
    completion_pos = generated_positions(next_positions(prompt_pos), torch.arange(targets.shape[1]))  # [3, n, T]
    pos = torch.cat([prompt_pos, completion_pos], 2)
    # Cut the left padding every one of these prompts has (masked out anyway): the forward's cost follows the
    # longest prompt here, not the longest of the step.
    first = int(attn[:, : batch.input_ids.shape[1]].any(0).long().argmax())
    ids, attn, pos = ids[:, first:], attn[:, first:], pos[:, :, first:]
    if batch.pixel_values is None:
        return SequenceBatch(ids, attn, pos, None, None, None, targets, mask)

    # Distinct images used by these sequences, in prompt order; each sequence takes its prompt's features.
    distinct = [i for p in prompts.unique(sorted=True).tolist() for i in batch.prompt_images(p)]
    if not distinct:  # only text-only prompts here, though others in the batch have images
        return SequenceBatch(ids, attn, pos, None, None, None, targets, mask)
    images = batch.select_images(distinct)
    token_start = [0, *images.image_tokens.cumsum(0).tolist()]
    where = {img: k for k, img in enumerate(distinct)}
    index = [torch.arange(token_start[where[i]], token_start[where[i] + 1])
             for p in prompts.tolist() for i in batch.prompt_images(p)]
    return SequenceBatch(ids, attn, pos, images.pixel_values, images.image_grid_thw,
                         torch.cat(index).to(ids.device), targets, mask, images.vision_states)


def completion_logprobs(policy: Policy, forward: torch.nn.Module, seqs: SequenceBatch, temperature: float,
                        chunk_size: int, with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [n, T] (and entropy [n, T]) of the completions under the current policy; `forward` is the
    (prepared) `CompletionForward`."""
    return forward(policy, seqs, temperature=temperature, chunk_size=chunk_size, with_entropy=with_entropy)


@torch.no_grad()
def with_full_parameters(policy: Policy, forward: torch.nn.Module, run):
    """run() (a rollout, an evaluation) with every parameter of the policy whole, also under FSDP2: through
    the prepared module's forward. Every rank must call it, once per rollout (not per decoded token)."""
    return forward(policy, run=run)


@dataclass
class LossTotals:
    """Denominators of the loss aggregation on this rank (`vlrl.algorithms.aggregate`).

    Data-parallel wrappers (DDP, FSDP, DeepSpeed) average gradients over the W ranks, so each rank divides by
    the *global* totals over W: the average of the W rank gradients is then the gradient of the loss over the
    whole global batch, as one process would compute it, for each aggregation —
    token_mean sum/num_tokens, seq_mean_token_mean sum_i(mean_t)/num_seqs and seq_mean_token_sum_norm
    sum/(num_seqs * max_len) are all sums over sequences divided by a global count."""

    num_tokens: float  # loss tokens over all ranks / W (at least 1 / W)
    num_seqs: float  # sequences over all ranks / W
    max_len: int  # Dr.GRPO's constant: rollout.max_new_tokens


def loss_totals(accelerator, mask: torch.Tensor, max_len: int) -> LossTotals:
    """Global totals of the kept completions; mask [rows kept on this rank, T]. Every rank must call it."""
    local = torch.tensor([float(mask.sum()), float(mask.shape[0])], dtype=torch.float64, device=mask.device)
    tokens, seqs = accelerator.reduce(local, reduction="sum").tolist()
    world = accelerator.num_processes
    return LossTotals(num_tokens=max(tokens, 1.0) / world, num_seqs=seqs / world, max_len=max_len)


def split_rows(batch: PromptBatch, rows: torch.Tensor, completion_len: int, size: int, max_tokens: int = 0
               ) -> list[torch.Tensor]:
    """Consecutive runs of positions into `rows` [n], one per micro-batch: at most `size` sequences each and,
    with `max_tokens` > 0, at most that many tokens counted as the micro-batch's tensor holds them — sequences x
    (its longest prompt + completion_len), since `gather_sequences` cuts the left padding the micro-batch's
    prompts share. A sequence over the budget alone makes a micro-batch. Runs keep the rollout order, so a
    group's samples, which share their images, stay together."""
    prompt_len = batch.attention_mask.sum(-1)[rows // batch.group_size].tolist()  # [n] real prompt tokens
    out, start, longest = [], 0, 0
    for i, length in enumerate(prompt_len):
        n, longer = i - start + 1, max(longest, int(length))
        if i > start and (n > size or (max_tokens > 0 and n * (longer + completion_len) > max_tokens)):
            out.append(torch.arange(start, i, device=rows.device))
            start, longer = i, int(length)
        longest = longer
    if len(prompt_len) > start:
        out.append(torch.arange(start, len(prompt_len), device=rows.device))
    return out


def micro_batches(batch: PromptBatch, rollouts: Rollouts, rows: torch.Tensor, size: int, count: int | None = None,
                  max_tokens: int = 0, shared_prompt: bool = False
                  ) -> list[tuple[torch.Tensor, SequenceBatch | SharedPromptBatch]]:
    """Split `rows` into micro-batches (`split_rows`): (positions within `rows`, that chunk's model inputs).
    Built once per step and shared by the old/reference log-prob passes and every update epoch.
    `shared_prompt`: each chunk runs its distinct prompts once (`vlrl.update_shared`), else every row as
    prompt + completion.

    `count` pads the list with filler chunks (no positions; rollout row 0 as input, weighted 0 in the loss):
    data-parallel ranks must run the same number of forwards and backwards, each being a collective, even when
    dynamic sampling kept more rows on one rank than on another, or their token budgets split differently."""
    plan = split_rows(batch, rows, rollouts.completion_ids.shape[1], size, max_tokens)
    if shared_prompt and batch.prompt_inputs is not None:
        raise ValueError("algorithm.shared_prompt=true needs a model of the Qwen-VL families; a model of the generic "
                         "tier runs every row whole: set algorithm.shared_prompt=false")
    gather = gather_shared_prompt if shared_prompt else gather_sequences
    out = [(mb, gather(batch, rollouts, rows[mb])) for mb in plan]
    if count is not None and count > len(out):
        out += [filler_chunk(batch, rollouts, rows)] * (count - len(out))
    return out


def padded_micro_batches(accelerator, batch: PromptBatch, rollouts: Rollouts, rows: torch.Tensor, cfg: AlgorithmConfig
                         ) -> list:
    """This rank's `micro_batches` of `rows` (algorithm.micro_batch_size / micro_batch_tokens / shared_prompt),
    padded with fillers to the largest count of any rank. Every rank must call it (one gather)."""
    chunks = micro_batches(batch, rollouts, rows, cfg.micro_batch_size, max_tokens=cfg.micro_batch_tokens,
                           shared_prompt=cfg.shared_prompt)
    count = int(accelerator.gather(torch.tensor([len(chunks)], device=accelerator.device)).max())
    return chunks + [filler_chunk(batch, rollouts, rows)] * (count - len(chunks))


def filler_chunk(batch: PromptBatch, rollouts: Rollouts, rows: torch.Tensor) -> tuple[torch.Tensor, SequenceBatch]:
    """A micro-batch with no positions (rollout row 0 as input, weighted 0 in the loss), to even out counts."""
    return rows.new_zeros(0), gather_sequences(batch, rollouts, rows.new_zeros(1))


@torch.no_grad()
def batch_logprobs(policy, forward, chunks, temperature: float, cfg: AlgorithmConfig) -> torch.Tensor:
    """Log-probs [rows, T] of the micro-batches `chunks` without gradient (old / reference log-probs); filler
    chunks run (for the collectives) but return nothing."""
    out = []
    for mb, seqs in chunks:
        logp = completion_logprobs(policy, forward, seqs, temperature, cfg.logprob_chunk_size, False)[0]
        out.append(logp[:len(mb)])
    return torch.cat(out)


@contextmanager
def gradient_sync(accelerator, model, sync: bool):
    """Forward and backward of one micro-batch; gradients are reduced across ranks only when `sync` (the last
    micro-batch of an optimiser step), the others accumulate locally."""
    if sync:
        yield
        return
    deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
    if deepspeed:  # DeepSpeed steps inside backward unless told this is not an accumulation boundary
        accelerator.gradient_state._set_sync_gradients(False)
    try:
        with accelerator.no_sync(model):
            yield
    finally:
        if deepspeed:
            accelerator.gradient_state._set_sync_gradients(True)


@dataclass
class UpdateBatch:
    """What an update trains on: the kept rows' micro-batches and, per kept row (index k = position in the kept
    rows, as the chunks' positions count), its advantage and log-probs."""

    chunks: list  # [(positions among the kept rows, model inputs)] from `micro_batches` (fillers included)
    advantages: torch.Tensor  # [kept]
    totals: LossTotals  # loss denominators over all ranks (`loss_totals`)
    temperature: float  # the rollout's: log-probs are taken under the distribution it sampled from
    # [kept, T] log-probs of the policy that sampled (None: the current policy's, detached, which is exact when
    # there is one update per batch)
    old_logp: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None  # [kept, T] the KL reference's, when algorithm.kl_coef


def lr_factor(optim: OptimConfig, total_steps: int, step: int) -> float:
    """The learning rate of optimiser step `step` over optim.lr: linear warm-up over optim.warmup_steps, then
    constant or a cosine to 0 at `total_steps` (a `LambdaLR` factor)."""
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.schedule == "cosine":
        progress = (step - optim.warmup_steps) / max(1, total_steps - optim.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if optim.schedule != "constant":
        raise ValueError(f"optim.schedule must be constant or cosine, got {optim.schedule!r}")
    return 1.0


@dataclass
class Optimisation:
    """The optimiser, its schedule and the gradient clip an update steps with."""

    optimizer: torch.optim.Optimizer
    scheduler: object  # a torch LR scheduler, stepped once per update
    max_grad_norm: float = 0.0  # 0: no clipping


def update_policy(policy, forward, accelerator, optim: Optimisation, batch: UpdateBatch,
                  cfg: AlgorithmConfig) -> dict[str, float]:
    """`cfg.updates_per_batch` optimiser steps over `batch`; returns loss metrics of all ranks and updates: the loss
    terms as one update's value, the rest (`TOKEN_MEANS`: clip fractions, ratio mean, ...) as means over every
    completion token the updates saw. Every rank must call it with the same number of chunks."""
    chunks, advantages, totals, temperature = batch.chunks, batch.advantages, batch.totals, batch.temperature
    old_logp, ref_logp = batch.old_logp, batch.ref_logp
    optimizer, scheduler, max_grad_norm = optim.optimizer, optim.scheduler, optim.max_grad_norm
    names = list(LossStats.__dataclass_fields__)
    # Over real micro-batches and ranks: the loss terms summed, the token means summed weighted by the
    # micro-batch's tokens (so they are means over every completion token of the step), then the token count.
    sums = torch.zeros(len(names) + 1, dtype=torch.float64)
    grad_norm = None
    for _ in range(cfg.updates_per_batch):
        for k, (mb, seqs) in enumerate(chunks):
            with gradient_sync(accelerator, forward, sync=k == len(chunks) - 1):
                logp, entropy = completion_logprobs(policy, forward, seqs, temperature, cfg.logprob_chunk_size,
                                                    with_entropy=cfg.entropy_bonus)
                if len(mb) == 0:  # filler: the same collectives, no contribution
                    accelerator.backward(logp.sum() * 0.0 + entropy.sum() * 0.0)
                    continue
                old = logp.detach() if old_logp is None else old_logp[mb]
                loss, stats = policy_loss(
                    logp, old, advantages[mb], seqs.mask, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
                    aggregation=cfg.loss_aggregation, ratio_level=cfg.ratio_level,
                    ref_logp=None if ref_logp is None else ref_logp[mb], kl_coef=cfg.kl_coef,
                    kl_estimator=cfg.kl_estimator, entropy=entropy, entropy_coef=cfg.entropy_coef,
                    num_tokens=totals.num_tokens, num_seqs=totals.num_seqs, max_len=totals.max_len,
                )
                accelerator.backward(loss)
            values, tokens = stats.metrics(""), float(seqs.mask.sum())
            sums += torch.tensor([values[n] * (tokens if n in TOKEN_MEANS else 1.0) for n in names] + [tokens],
                                 dtype=torch.float64)
        if max_grad_norm > 0:
            grad_norm = accelerator.clip_grad_norm_(forward.parameters(), max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    sums = accelerator.reduce(sums.to(accelerator.device), reduction="sum").cpu()
    tokens = max(float(sums[-1]), 1.0)
    out = {f"loss/{n}": float(v) / tokens for n, v in zip(names, sums.tolist(), strict=False) if n in TOKEN_MEANS}
    # Loss terms are aggregated with global totals: per rank, one update's value is the sum over its
    # micro-batches; over ranks, the mean (see LossTotals).
    updates = cfg.updates_per_batch * accelerator.num_processes
    for n in ("loss", "pg_loss"):
        out[f"loss/{n}"] = float(sums[names.index(n)]) / updates
    if grad_norm is not None:
        out["loss/grad_norm"] = float(grad_norm)
    return out
