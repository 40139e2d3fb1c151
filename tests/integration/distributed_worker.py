"""Run by tests/integration/test_distributed.py under `accelerate launch` (one copy per rank):
`python distributed_worker.py OUT_DIR key=value ...` trains as `vlrl train key=value ...` would and, after every
step, saves this rank's trainable parameters to OUT_DIR/rank{R}_step{S}.pt."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from vlrl.config import Config
from vlrl.config_loader import load_config
from vlrl.trainer import Trainer


def trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def record_steps(trainer: Trainer, sink) -> None:
    """Call sink(step, parameters) after each of the trainer's steps."""
    train_step = trainer.train_step

    def step_and_record(step: int) -> dict[str, float]:
        metrics = train_step(step)
        sink(step + 1, trainable(trainer.policy.core))
        return metrics

    trainer.train_step = step_and_record


def main(out: str, overrides: list[str]) -> None:
    trainer = Trainer(load_config(Config, None, overrides))
    rank = trainer.accelerator.process_index
    record_steps(trainer, lambda step, params: torch.save(params, Path(out) / f"rank{rank}_step{step}.pt"))
    trainer.fit()
    trainer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
