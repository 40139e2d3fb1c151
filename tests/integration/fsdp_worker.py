"""Run by tests/integration/test_fsdp.py under `accelerate launch` with an FSDP2 config (one copy per rank):
`python fsdp_worker.py OUT_DIR fresh|resume key=value ...` trains as `vlrl train [--resume] key=value ...` would
and, after every step, has rank 0 save the full trainable parameters to OUT_DIR/step{S}.pt.

accelerate takes FSDP for a GPU-only mode: on CPU it sets up gloo but reports MULTI_CPU and ignores the FSDP
plugin it built from the launch config. `fsdp_on_cpu` turns that state into FSDP before anything is prepared,
so `accelerator.prepare` runs the same FSDP2 path (`fully_shard` per layer and at the root) as on GPUs, with
gloo collectives; torch's fully_shard itself supports CPU tensors and gloo.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def fsdp_on_cpu() -> None:
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    init = AcceleratorState.__init__

    def init_with_fsdp(self, *args, **kwargs):
        init(self, *args, **kwargs)
        plugin = kwargs.get("fsdp_plugin")
        if self.distributed_type == DistributedType.MULTI_CPU and plugin is not None:
            # As accelerate does for GPUs: the process-wide state too, which later AcceleratorState() calls copy.
            self.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.fsdp_plugin = plugin

    AcceleratorState.__init__ = init_with_fsdp


def full_trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable parameter, whole (a collective under FSDP: every rank must call)."""
    from torch.distributed.tensor import DTensor

    return {n: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone()
            for n, p in model.named_parameters() if p.requires_grad}


def main(out: str, mode: str, overrides: list[str]) -> None:
    fsdp_on_cpu()
    from vlrl.config import Config
    from vlrl.config_loader import load_config
    from vlrl.trainer import Trainer

    trainer = Trainer(load_config(Config, None, overrides), resume=mode == "resume")
    assert trainer.accelerator.is_fsdp2, trainer.accelerator.distributed_type
    from torch.distributed.tensor import DTensor

    params = list(trainer.policy.core.parameters())
    assert all(isinstance(p, DTensor) for p in params)  # every weight sharded: the root holds the leftovers
    assert sum(p.to_local().numel() for p in params) < sum(p.numel() for p in params)
    train_step = trainer.train_step

    def step_and_record(step: int) -> dict[str, float]:
        metrics = train_step(step)
        params = full_trainable(trainer.policy.core)
        if trainer.accelerator.is_main_process:
            torch.save(params, Path(out) / f"step{step + 1}.pt")
        return metrics

    trainer.train_step = step_and_record
    trainer.fit()
    trainer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
