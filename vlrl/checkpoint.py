"""Checkpoints: `<run>/checkpoints/step_NNNNNN/` is an HF-format model directory (weights, config, processor)
that `from_pretrained` loads, plus `trainer_state.pt` (optimizer, scheduler, RNG states, step). With LoRA the
directory holds the adapter instead of the weights (peft format: `adapter_config.json` names the base model;
`vlrl export` merges it into a plain HF directory). Under FSDP2 the directory holds `sharded/`, a
torch.distributed.checkpoint of the model and optimizer written by every rank in parallel (no rank ever holds
the whole model), beside the model config and processor; `vlrl export` assembles it into an HF directory.
Data position needs no state of its own: the prompts of step s are a function of (seed, s), see
`vlrl.data.sampler`.

A checkpoint is built in a hidden `.step_NNNNNN.partial` directory and renamed into place once whole, and the
`final` link is swapped in one step (`vlrl.atomic`), so a run killed mid-save keeps its earlier checkpoints and
never shows a half-written one. A resume takes the newest complete checkpoint (`latest_checkpoint`) and skips,
naming them, damaged ones left by older versions or by hand."""

from __future__ import annotations

import json
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vlrl.atomic import atomic_dir, commit_dir, partial_path, remove, replace_symlink, start_dir

STATE_FILE = "trainer_state.pt"
SHARDED_DIR = "sharded"  # torch.distributed.checkpoint directory: {"model": ..., "optimizer": ...}
MODEL_PREFIX = "hf_model."  # where CompletionForward keeps the HF model: its state-dict keys start so


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
                    keep: int, adapter=None, sharded: bool = False, extra: Callable[[Path], None] | None = None
                    ) -> Path:
    """Write the checkpoint of `step` (main process writes; all ranks must call) and prune old ones.

    model: what `accelerator.prepare` returned, holding `hf_model` (the HF model) as its `hf_model` attribute.
    By default its full state dict is assembled on every rank, then written by the main process in HF format,
    or, with `adapter` (the peft wrapper of a LoRA policy), as the adapter alone. `sharded`: every rank writes
    its shards of model and optimizer (FSDP2). `extra(directory)`: the main process writes more into the checkpoint
    (the KL reference after a reset, `vlrl.reference`).

    Everything is written into `partial_path(out)` and renamed to `out` once whole, so a run killed mid-save
    leaves the previous checkpoints intact and no `step_*` directory that looks complete but is not."""
    run_dir = Path(run_dir)
    out = checkpoint_dir(run_dir, step)
    tmp = partial_path(out)  # a fixed name: under FSDP2 every rank writes its shards into it
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        start_dir(out)
    accelerator.wait_for_everyone()
    state = {"step": step, "scheduler": scheduler.state_dict(), "rng": rng_state()}
    if sharded:
        save_sharded(tmp, model, optimizer)
        accelerator.wait_for_everyone()  # every rank's shards are on disk before the directory is renamed
        if accelerator.is_main_process:
            hf_model.config.save_pretrained(tmp)
    else:
        _save_full(tmp, accelerator, model, hf_model, adapter)
        state["optimizer"] = optimizer.state_dict()
    if accelerator.is_main_process:
        processor.save_pretrained(tmp)
        if extra is not None:
            extra(tmp)
        torch.save(state, tmp / STATE_FILE)
        commit_dir(tmp, out)
        replace_symlink(run_dir / "final", out.relative_to(run_dir))
        prune_checkpoints(run_dir, keep)
    accelerator.wait_for_everyone()
    return out


def _save_full(out: Path, accelerator, model, hf_model, adapter) -> None:
    state = accelerator.get_state_dict(model)  # a collective under ZeRO-3
    if not accelerator.is_main_process:
        return
    if adapter is not None:
        from vlrl.models.lora import adapter_state

        adapter.save_pretrained(out, state_dict=adapter_state(state, MODEL_PREFIX))
    else:
        state = {k[len(MODEL_PREFIX):]: v for k, v in state.items() if k.startswith(MODEL_PREFIX)}
        hf_model.save_pretrained(out, state_dict=state)


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Keep the newest `keep` complete checkpoints (all of them if `keep` <= 0); remove incomplete ones and
    the temporary directories of killed saves. Called right after a save, when no save is under way."""
    root = Path(run_dir) / "checkpoints"
    steps = _step_dirs(root)
    complete = [p for p in steps if checkpoint_problem(p) is None]
    kept = set(complete[-keep:] if keep > 0 else complete)
    for path in steps:
        if path not in kept:
            remove(path)
    for path in root.glob(".step_*"):
        remove(path)


def _torch_optimizer(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps it


def save_sharded(out: Path, model, optimizer) -> None:
    """Every rank writes its shards of the model and optimizer state to out/sharded (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, _torch_optimizer(optimizer))
    dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=str(out / SHARDED_DIR))


def load_sharded(ckpt: Path, model, optimizer) -> None:
    """Load out/sharded into the (prepared) model and optimizer, each rank reading its own shards."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    optim = _torch_optimizer(optimizer)
    model_state, optim_state = get_state_dict(model, optim)
    state = {"model": model_state, "optimizer": optim_state}
    dcp.load(state, checkpoint_id=str(Path(ckpt) / SHARDED_DIR))
    set_state_dict(model, optim, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def is_sharded_checkpoint(path: str | Path) -> bool:
    return (Path(path) / SHARDED_DIR).is_dir()


def latest_checkpoint(run_dir: str | Path, report: Callable[[Path, str], None] | None = None) -> Path | None:
    """The newest complete checkpoint of a run (None if it has none). Each newer one that is incomplete or
    damaged (a run killed while writing it, before saves were atomic, or a file removed by hand) is skipped,
    and `report(path, reason)` is told why."""
    for path in reversed(_step_dirs(Path(run_dir) / "checkpoints")):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        if report is not None:
            report(path, problem)
    return None


def checkpoint_problem(path: str | Path) -> str | None:
    """Why `path` is not a complete checkpoint, or None if it is. Cheap: it checks that the weights' files are
    there and that trainer_state.pt is a whole zip archive (torch.save's format ends with the archive's
    directory, which a truncated file lacks); it reads no tensor."""
    path = Path(path)
    state = path / STATE_FILE
    if not state.is_file():
        return f"no {STATE_FILE}"
    if not zipfile.is_zipfile(state):
        return f"{STATE_FILE} is truncated or damaged ({state.stat().st_size} bytes)"
    if is_sharded_checkpoint(path):
        return None if (path / SHARDED_DIR / ".metadata").is_file() else f"{SHARDED_DIR}/.metadata is missing"
    if (path / "adapter_config.json").is_file():
        found = any((path / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin"))
        return None if found else "adapter weights are missing"
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = set(json.loads(index.read_text())["weight_map"].values())
        missing = sorted(s for s in shards if not (path / s).is_file())
        return f"weight shards missing: {', '.join(missing)}" if missing else None
    return None if (path / "model.safetensors").is_file() else "model weights are missing"


def _step_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("step_*") if p.is_dir())


def load_trainer_state(ckpt: Path, optimizer, scheduler) -> int:
    """Restore optimizer (unless the checkpoint is sharded: `load_sharded` did), scheduler and RNG from `ckpt`;
    returns the step it was saved at."""
    state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=False)
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return int(state["step"])


def export_checkpoint(ckpt: str | Path, out: str | Path) -> Path:
    """Turn a training checkpoint into a plain HF model directory (weights, config, processor) that
    `AutoModelForImageTextToText.from_pretrained` loads: a LoRA checkpoint's adapter is merged into its base
    model; a sharded (FSDP2) checkpoint is assembled in this one process, which needs the whole model in memory
    once. A checkpoint that already is one is refused (use it as it is), and so is an `out` that exists and is
    not empty (FileExistsError)."""
    from vlrl.models.lora import export_merged, is_adapter_checkpoint

    ckpt = Path(ckpt)
    if is_adapter_checkpoint(ckpt):
        export = export_merged
    elif is_sharded_checkpoint(ckpt):
        export = export_sharded
    elif (ckpt / "config.json").exists() and any(ckpt.glob("*.safetensors")):
        raise ValueError(f"{ckpt} already is an HF-format model directory: load it as it is")
    else:
        raise FileNotFoundError(f"{ckpt} is not a vlrl checkpoint (no adapter, weights or sharded state)")
    with atomic_dir(out) as tmp:  # a failed or killed export leaves no half-written model at `out`
        export(ckpt, tmp)
    return Path(out)


def export_sharded(ckpt: Path, out: str | Path) -> Path:
    """Assemble a sharded checkpoint's model into an HF directory (one process, no process group needed)."""
    from transformers import AutoProcessor

    assemble_sharded(ckpt).save_pretrained(out)
    AutoProcessor.from_pretrained(ckpt).save_pretrained(out)
    return Path(out)


def assemble_sharded(ckpt: str | Path, dtype: torch.dtype | None = None, **model_kwargs):
    """The whole HF model of a sharded checkpoint, in this process's memory (no process group needed); in the
    checkpoint's own dtype unless `dtype` is given. `model_kwargs` go to `from_config` (attn_implementation)."""
    import torch.distributed.checkpoint as dcp
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(ckpt)
    model = AutoModelForImageTextToText.from_config(config, dtype=getattr(config, "dtype", None), **model_kwargs)
    state = {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}
    dcp.load({"model": state}, checkpoint_id=str(Path(ckpt) / SHARDED_DIR))  # in place, into the model's tensors
    return model.to(dtype) if dtype is not None else model
