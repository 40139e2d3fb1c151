"""A small micro-batch sampled from a trainer's own policy, for tests that compare log-probs before and after
something happens to the model (LoRA export, a KL-reference reset)."""

from __future__ import annotations

import torch

from vlrl.data import validate_row
from vlrl.rollout import generate
from vlrl.update import micro_batches


def sample_chunks(trainer):
    """Two prompts x 2 samples from the trainer's policy, as one micro-batch."""
    rows = [validate_row(trainer.train_rows[i], i) for i in range(2)]
    batch = trainer.encode(rows, 2)
    trainer.policy.prompt_positions(batch)
    rollouts = generate(trainer.policy, batch, trainer.cfg.rollout, seeds=[11, 12])
    return micro_batches(batch, rollouts, torch.arange(4), 4)
