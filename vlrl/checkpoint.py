"""Checkpoints: `<run>/checkpoints/step_NNNNNN/` is an HF-format model directory (weights, config, processor)
that `from_pretrained` loads, plus `trainer_state.pt` (optimizer, scheduler, RNG states, step). With LoRA the
directory holds the adapter instead of the weights (peft format: `adapter_config.json` names the base model;
`vlrl export` merges it into a plain HF directory). Data position needs no state of its own: the prompts of
step s are a function of (seed, s), see `vlrl.data.sampler`."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

STATE_FILE = "trainer_state.pt"


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:06d}"


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir, step: int, accelerator, model, hf_model, processor, optimizer, scheduler,
                    keep: int, adapter=None) -> Path:
    """Write the checkpoint of `step` (main process writes; all ranks must call) and prune old ones.

    model: what `accelerator.prepare` returned, holding `hf_model` (the HF model) as its `hf_model` attribute;
    its full state dict is assembled on every rank (a collective under FSDP / ZeRO-3), then written by the main
    process in HF format, or, with `adapter` (the peft wrapper of a LoRA policy), as the adapter alone."""
    out = checkpoint_dir(run_dir, step)
    accelerator.wait_for_everyone()
    state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        prefix = "hf_model."
        out.mkdir(parents=True, exist_ok=True)
        if adapter is not None:
            from vlrl.models.lora import adapter_state

            adapter.save_pretrained(out, state_dict=adapter_state(state, prefix))
        else:
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            hf_model.save_pretrained(out, state_dict=state)
        processor.save_pretrained(out)
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng_state()}, out / STATE_FILE)
        final = Path(run_dir) / "final"
        if final.is_symlink() or final.exists():
            final.unlink()
        final.symlink_to(out.relative_to(run_dir), target_is_directory=True)
        steps = sorted(p for p in (Path(run_dir) / "checkpoints").glob("step_*") if p.is_dir())
        for old in steps[:-keep] if keep > 0 else []:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return out


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    steps = sorted(p for p in (Path(run_dir) / "checkpoints").glob("step_*") if (p / STATE_FILE).exists())
    return steps[-1] if steps else None


def load_trainer_state(ckpt: Path, optimizer, scheduler) -> int:
    """Restore optimizer, scheduler and RNG from `ckpt`; returns the step it was saved at."""
    state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return int(state["step"])


def export_checkpoint(ckpt: str | Path, out: str | Path) -> Path:
    """Turn a training checkpoint into a plain HF model directory (weights, config, processor) that
    `AutoModelForImageTextToText.from_pretrained` loads: a LoRA checkpoint's adapter is merged into its base
    model. A checkpoint that already is one is refused (use it as it is)."""
    from vlrl.models.lora import export_merged, is_adapter_checkpoint

    ckpt = Path(ckpt)
    if is_adapter_checkpoint(ckpt):
        return export_merged(ckpt, out)
    if (ckpt / "config.json").exists() and any(ckpt.glob("*.safetensors")):
        raise ValueError(f"{ckpt} already is an HF-format model directory: load it as it is")
    raise FileNotFoundError(f"{ckpt} is not a vlrl checkpoint (no adapter, weights or sharded state)")
