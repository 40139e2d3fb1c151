"""Rollout: `generate(policy, PromptBatch, RolloutConfig) -> Rollouts`, with interchangeable backends.

- `cached` (default): images encoded and prompts prefilled once, KV cache shared by the group's G samples.
- `engine`: the same sharing, decoded into a static KV cache with fixed-shape steps (CUDA graphs on GPU) and
  finished rows compacted away.
- `reference`: transformers `generate` on repeated prompts, kept as the correctness baseline; the only backend
  of the generic tier (`vlrl.models.generic`), where it runs prompt by prompt (`generate_generic`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vlrl.config import RolloutConfig
from vlrl.data.prompts import PromptBatch
from vlrl.models.policy import Policy
from vlrl.rollout.cached import generate_cached
from vlrl.rollout.engine import generate_engine
from vlrl.rollout.reference import generate_generic, generate_reference
from vlrl.rollout.types import Rollouts

BACKENDS = {"cached": generate_cached, "engine": generate_engine, "reference": generate_reference}


def generate(policy: Policy, batch: PromptBatch, cfg: RolloutConfig, generator: torch.Generator | None = None,
             greedy: bool = False, seeds: Sequence[int] | None = None) -> Rollouts:
    """Sample `batch.group_size` completions per prompt (greedy=True: argmax, for evaluation).

    Randomness: `seeds` (one per prompt, see `vlrl.rollout.sampling.prompt_seed`) makes each prompt's samples a
    function of its seed and the model alone — the same whatever else is in the batch, so data-parallel runs
    sample what a single process would (`cached` and `engine`; `reference` folds the seeds into one global seed).
    Without seeds, `generator` drives the whole batch."""
    if cfg.backend not in BACKENDS:
        raise ValueError(f"unknown rollout backend {cfg.backend!r}; choose one of {sorted(BACKENDS)}")
    generic = getattr(policy, "generic", False)
    if generic and cfg.backend != "reference":
        raise ValueError(f"rollout.backend={cfg.backend} needs a model of the Qwen-VL families; a model of the generic "
                         "tier rolls out through transformers' generate: set rollout.backend=reference")
    backend = generate_generic if generic else BACKENDS[cfg.backend]
    was_training = policy.model.training
    policy.model.eval()
    try:
        return backend(policy, batch, cfg, generator=generator, greedy=greedy, seeds=seeds)
    finally:
        policy.model.train(was_training)


class RolloutBackend:
    """A rollout backend as the trainer holds it: made once, asked for rollouts each step, and told when the
    policy's weights changed (`sync_weights`, after each update: the optimiser steps taken on one rollout batch). The in-process backends read the
    policy's own parameters, so there is nothing to send; a backend that runs elsewhere (an inference server such
    as vLLM or SGLang) would push the new weights there, and plugs in without touching the trainer."""

    def __init__(self, policy: Policy, cfg: RolloutConfig):
        if cfg.backend not in BACKENDS:
            raise ValueError(f"unknown rollout backend {cfg.backend!r}; choose one of {sorted(BACKENDS)}")
        self.policy, self.cfg = policy, cfg
        self.weight_version = 0  # updates seen: what a remote backend would compare before sampling

    def generate(self, batch: PromptBatch, generator: torch.Generator | None = None, greedy: bool = False,
                 seeds: Sequence[int] | None = None) -> Rollouts:
        """As :func:`generate`, with this backend's policy and config. With `rollout.reuse_vision` and a frozen
        vision tower, the tower's output is kept on the batch first (`Policy.vision_states`), so the rollout and
        the update that follows run only the connector on it."""
        if (self.cfg.reuse_vision and batch.vision_states is None and batch.pixel_values is not None
                and not getattr(self.policy, "generic", False) and self.policy.vision_tower_frozen):
            batch.vision_states = self.policy.vision_states(batch.pixel_values, batch.image_grid_thw)
        return generate(self.policy, batch, self.cfg, generator=generator, greedy=greedy, seeds=seeds)

    def sync_weights(self) -> None:
        """The policy's weights changed (an update)."""
        self.weight_version += 1


def make_backend(policy: Policy, cfg: RolloutConfig) -> RolloutBackend:
    """The backend `cfg.backend` names, for `policy` (all of today's run in process)."""
    return RolloutBackend(policy, cfg)


__all__ = ["generate", "make_backend", "RolloutBackend", "Rollouts", "BACKENDS"]
