"""The KL reference and its resets (ProRL: Liu et al. 2025, "ProRL: Prolonged Reinforcement Learning Expands
Reasoning Boundaries in Large Language Models", arXiv 2505.24864).

The KL penalty (`algorithm.kl_coef`) pulls the policy towards a reference. By default that is the starting
model, for the whole run. ProRL finds that in a long run the penalty then grows to dominate the loss and stalls
learning, and periodically hard-resets the reference to the current policy, reinitialising the optimiser. Here a
reset happens after a step's update, every `algorithm.reference_reset_every` steps and/or after a step whose
`loss/kl` is over `algorithm.reference_reset_kl`:

- the reference's weights become the policy's;
- the optimiser state (AdamW's moments and step counts) is zeroed, as a fresh optimiser's, so bias correction
  starts over;
- the learning-rate schedule goes on where it was: `optim.schedule` counts the run's steps, not a segment's.
  (Our choice: ProRL reinitialises the optimiser; with `optim.schedule=constant` the question does not arise.)

Departures from ProRL: the paper resets by hand, between runs, when validation scores stall or fall; here the
trigger is a fixed cadence or a KL threshold, so a run needs no supervision. The paper resets to "a more recent
snapshot" of the policy; here it is always the policy of the step that triggers the reset.

Where the reference lives:

- full fine-tuning: a second, frozen copy of the model (`KLReference.model`; under FSDP2 not sharded, each rank
  holds it whole); a reset copies the policy's trainable parameters into it, gathered whole under FSDP2;
- LoRA: before the first reset, the policy with its adapters off (no second copy). A reset keeps a copy of the
  trainable parameters — adapters and peft's trained copy of the connector — as they are (`snapshot`); the
  reference pass copies them into the model, runs, and copies the current values back. Memory: twice the
  trainable parameters (the snapshot and, during the reference pass, the current values), not a copy of the
  model: rank-64 adapters on every projection of a 7B Qwen2.5-VL are about 160M parameters, against 8B. The
  policy itself is untouched by a reset, so its log-probs do not change and its KL to the reference is exactly 0.
  (Merging the adapter into the base weights and starting a fresh one would save the snapshot, but rounds the
  merged weights in bf16 — the policy would change at the reset — and LoRA checkpoints would then have to carry
  the whole merged model.)

Checkpoints: once a reset has happened, a checkpoint holds the reference's trainable parameters in
`kl_reference/parameters.safetensors` (the rest of the reference is the starting model; frozen parameters never
move); resuming loads them, so a resumed run has the reference the uninterrupted run had. For full fine-tuning
the file is as large as the trainable part of the model; with LoRA as large as the adapter. Before any reset
nothing is written: the reference is the starting model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate.utils import DistributedType, broadcast

from vlrl.config import AlgorithmConfig

REFERENCE_DIR = "kl_reference"  # in a checkpoint: the reference's trainable parameters after a reset
REFERENCE_FILE = "parameters.safetensors"
METRIC = "algorithm/reference_reset"  # 1 on a step that reset the reference, else 0 (logged when resets are on)

log = logging.getLogger(__name__)


def trainable_parameters(policy) -> dict[str, torch.nn.Parameter]:
    """The policy's parameters that training moves, by the HF model's names (sharded DTensors under FSDP2)."""
    return {n: p for n, p in policy.core.named_parameters() if p.requires_grad}


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """A parameter whole: an FSDP2 shard is gathered from every rank (a collective), a plain tensor is itself."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


class KLReference:
    """What the KL penalty compares the policy to, and its ProRL resets. The trainer asks for the reference's
    (policy, forward) with `use()` and calls `after_step` once per step, on every rank."""

    def __init__(self, cfg: AlgorithmConfig, policy, forward, accelerator, model=None, model_forward=None):
        """`policy`, `forward`: the trained policy and its prepared `CompletionForward`. `model`, `model_forward`:
        a separate frozen reference (full fine-tuning with kl_coef > 0), else None (LoRA, or no KL penalty)."""
        self.cfg, self.policy, self.forward, self.accelerator = cfg, policy, forward, accelerator
        self.model, self.model_forward = model, model_forward
        self.snapshot: dict[str, torch.Tensor] | None = None  # LoRA, after a reset: the trainable values then
        self.moved = False  # whether a reset has made the reference differ from the starting model
        if self.enabled and accelerator.distributed_type == DistributedType.DEEPSPEED:
            raise ValueError("algorithm.reference_reset_every / reference_reset_kl are not supported under DeepSpeed "
                             "yet (its optimiser state is not a torch optimiser's): use DDP or FSDP2")

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.reference_reset_every or self.cfg.reference_reset_kl)

    # ---- the reference pass ------------------------------------------------------------------------------
    @contextmanager
    def use(self) -> Iterator[tuple[object, torch.nn.Module]]:
        """(policy, forward) whose log-probs are the reference's. With LoRA after a reset, the model holds the
        snapshot inside the block and its own values again after it (exactly: copies, no arithmetic)."""
        if self.model is not None:
            yield self.model, self.model_forward
            return
        if self.snapshot is None:
            with self.policy.without_adapter():
                yield self.policy, self.forward
            return
        params = trainable_parameters(self.policy)
        with torch.no_grad():
            current = {n: p.detach().clone() for n, p in params.items()}
            for n, p in params.items():
                p.copy_(self.snapshot[n])
        try:
            yield self.policy, self.forward
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(current[n])

    # ---- resets ------------------------------------------------------------------------------------------
    def after_step(self, step: int, kl: float | None, optimizer) -> dict[str, float]:
        """Reset if step `step` (1-based, as metrics.jsonl numbers it) calls for it; `kl`: the step's loss/kl (None
        when no update ran). Every rank must call it. Returns {METRIC: 0 or 1} when resets are on, else {}."""
        if not self.enabled:
            return {}
        reason = self.due(step, kl)
        if reason:
            self.reset(optimizer)
            if self.accelerator.is_main_process:
                from tqdm.auto import tqdm

                tqdm.write(f"step {step}: KL reference reset ({reason}): reference <- policy, optimiser state zeroed")
            log.info("step %d: KL reference reset (%s)", step, reason)
        return {METRIC: float(bool(reason))}

    def due(self, step: int, kl: float | None) -> str:
        """Why step `step` resets the reference ('' if it does not). The main process's KL decides, so every rank
        resets at the same steps whatever rounding its own reduction met."""
        every, limit = self.cfg.reference_reset_every, self.cfg.reference_reset_kl
        if every and step % every == 0:
            return f"every {every} steps"
        if not limit:
            return ""
        over = kl is not None and kl > limit
        acc = self.accelerator
        if acc.num_processes > 1:
            over = bool(broadcast(torch.tensor([int(over)], device=acc.device)).item())
        return f"loss/kl {kl if kl is not None else float('nan'):.4g} > {limit:g}" if over else ""

    @torch.no_grad()
    def reset(self, optimizer) -> None:
        """The reference becomes the current policy and the optimiser state is zeroed (every rank)."""
        params = trainable_parameters(self.policy)
        if self.model is not None:
            ref = dict(self.model.core.named_parameters())
            for name, p in params.items():  # the same order on every rank: under FSDP2 each is a collective
                ref[name].copy_(whole(p))
        elif self.policy.adapter is not None:
            self.snapshot = {n: p.detach().clone() for n, p in params.items()}
        self.moved = True
        zero_optimizer_state(optimizer)

    # ---- checkpoints -------------------------------------------------------------------------------------
    def reference_parameters(self) -> dict[str, torch.Tensor]:
        """The reference's values of the policy's trainable parameters (what a reset changes)."""
        if self.snapshot is not None:
            return self.snapshot
        ref = dict(self.model.core.named_parameters())
        return {n: ref[n].detach() for n in trainable_parameters(self.policy)}

    def save(self, out: Path) -> None:
        """Write the reference into checkpoint directory `out` once a reset has moved it (main process)."""
        if not self.moved:
            return
        from safetensors.torch import save_file

        (out / REFERENCE_DIR).mkdir(parents=True, exist_ok=True)
        state = {n: t.detach().to("cpu").contiguous() for n, t in self.reference_parameters().items()}
        save_file(state, str(out / REFERENCE_DIR / REFERENCE_FILE))

    def load(self, ckpt: Path) -> None:
        """Restore the reference a checkpoint holds (none: the starting model, as the reference already is)."""
        path = Path(ckpt) / REFERENCE_DIR / REFERENCE_FILE
        if not path.is_file():
            return
        from safetensors.torch import load_file

        state = load_file(str(path))
        names = set(trainable_parameters(self.policy))
        if set(state) != names:
            raise ValueError(f"{path} holds other parameters than this run trains (model.lora_*, freeze_* settings "
                             f"changed?): e.g. {sorted(set(state) ^ names)[:3]}")
        device = self.policy.device
        if self.model is not None:
            ref = dict(self.model.core.named_parameters())
            with torch.no_grad():
                for n, value in state.items():
                    ref[n].copy_(value)
        else:
            self.snapshot = {n: v.to(device) for n, v in state.items()}
        self.moved = True


@torch.no_grad()
def zero_optimizer_state(optimizer) -> None:
    """Set every tensor of the optimiser's state to 0: for AdamW (moments, step count) exactly a fresh
    optimiser's state, which `torch.optim.AdamW` creates as zeros on its first step. Not `state.clear()`: an empty
    state is not kept empty — torch.distributed.checkpoint's `get_state_dict` (sharded saves) fills it by running
    a zero-gradient step, which leaves the step count at 1 and the next step's bias correction wrong."""
    torch_optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds the torch optimiser
    for state in torch_optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value):
                value.zero_()
            elif isinstance(value, (int, float)):
                state[key] = type(value)(0)


def make_reference(cfg: AlgorithmConfig, model_cfg, policy, forward, accelerator, base_path, ckpt=None
                   ) -> KLReference:
    """The run's KL reference: a frozen copy of the starting model when kl_coef > 0 without LoRA, else the policy
    itself (adapters off); with `ckpt`, the reference a reset left there."""
    from vlrl.models.policy import load_policy
    from vlrl.update import CompletionForward

    model = model_forward = None
    if cfg.kl_coef and policy.adapter is None:
        model = load_policy(model_cfg, base_path, accelerator.device)
        model.model.requires_grad_(False).eval()
        model_forward = CompletionForward(model.model)
    reference = KLReference(cfg, policy, forward, accelerator, model, model_forward)
    if ckpt is not None:
        reference.load(ckpt)
    return reference
