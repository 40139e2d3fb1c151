"""Which checkpoint directories count as complete, which one a resume takes, and what pruning removes
(file layout only: the end-to-end kill-and-resume is tests/integration/test_run_safety.py)."""

from __future__ import annotations

import json

import torch

from vlrl.checkpoint import (
    STATE_FILE,
    checkpoint_dir,
    checkpoint_problem,
    latest_checkpoint,
    prune_checkpoints,
)


def fake_checkpoint(run, step, weights=("model.safetensors",)):
    out = checkpoint_dir(run, step)
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    for name in weights:
        (out / name).write_bytes(b"w")
    torch.save({"step": step}, out / STATE_FILE)
    return out


def test_truncated_or_missing_files_make_a_checkpoint_incomplete(tmp_path):
    ok = fake_checkpoint(tmp_path, 1)
    assert checkpoint_problem(ok) is None
    empty = fake_checkpoint(tmp_path, 2)
    (empty / STATE_FILE).write_bytes(b"")  # the kill: a 0-byte trainer_state.pt
    assert "truncated" in checkpoint_problem(empty)
    cut = fake_checkpoint(tmp_path, 3)
    data = (cut / STATE_FILE).read_bytes()
    (cut / STATE_FILE).write_bytes(data[: len(data) // 2])
    assert "truncated" in checkpoint_problem(cut)
    no_weights = fake_checkpoint(tmp_path, 4, weights=())
    assert checkpoint_problem(no_weights) == "model weights are missing"
    sharded = fake_checkpoint(tmp_path, 5, weights=("model.safetensors.index.json",))
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "part-1.safetensors"}}))
    assert checkpoint_problem(sharded) == "weight shards missing: part-1.safetensors"
    adapter = fake_checkpoint(tmp_path, 6, weights=("adapter_config.json",))
    assert checkpoint_problem(adapter) == "adapter weights are missing"


def test_latest_checkpoint_skips_newer_damaged_ones_and_says_why(tmp_path):
    fake_checkpoint(tmp_path, 1)
    good = fake_checkpoint(tmp_path, 2)
    (fake_checkpoint(tmp_path, 3) / STATE_FILE).write_bytes(b"")
    (fake_checkpoint(tmp_path, 4) / "model.safetensors").unlink()
    skipped = []
    assert latest_checkpoint(tmp_path, report=lambda p, why: skipped.append((p.name, why))) == good
    assert [name for name, _ in skipped] == ["step_000004", "step_000003"]
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_prune_keeps_the_newest_complete_and_removes_damaged_and_partial(tmp_path):
    for step in (1, 2, 4):
        fake_checkpoint(tmp_path, step)
    (fake_checkpoint(tmp_path, 3) / STATE_FILE).write_bytes(b"")
    (tmp_path / "checkpoints" / ".step_000005.partial").mkdir()  # a save killed before its rename
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000002", "step_000004"]
