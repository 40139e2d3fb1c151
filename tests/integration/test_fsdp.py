"""FSDP2 on CPU: two processes (gloo) under `accelerate launch` with configs/accelerate/fsdp2.yaml.

One uninterrupted 2-step run writes a sharded checkpoint after each step; a second launch resumes a copy of
its run directory from the step-1 checkpoint. Shown: the resumed run's step 2 (parameters and metrics) is the
uninterrupted run's; both equal a single-process run without FSDP; `vlrl export` turns the sharded checkpoint
into an HF directory that `from_pretrained` loads, holding the trained parameters. Launches run under a time
limit, so a hang (a collective one rank never joins) fails the test instead of blocking CI.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

from vlrl.config import Config
from vlrl.config_loader import load_config
from vlrl.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("fsdp_worker.py")
STEPS = 2

sys.path.insert(0, str(WORKER.parent))
sys.path.insert(0, str(WORKER.parents[1]))
from distributed_worker import record_steps  # noqa: E402
from launching import comparable as _comparable  # noqa: E402
from launching import free_port, run_launch  # noqa: E402


def _overrides(model_dir, data_dir, out_dir) -> list[str]:
    return [
        f"model.path={model_dir}", f"data.path={data_dir}", f"trainer.output_dir={out_dir}",
        "data.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=4",
        "data.source_weights={}", "data.max_eval_rows=6", f"trainer.total_steps={STEPS}",
        f"trainer.eval_every={STEPS}", "trainer.save_every=1", "trainer.progress_bar=false",
        "trainer.device=cpu", "reward.workers=0", "algorithm.micro_batch_size=4", "algorithm.updates_per_batch=2",
        "optim.eps=1.0", "optim.lr=0.2", "optim.warmup_steps=0",  # see test_distributed: steps ~ lr * gradient
    ]


def _launch_fsdp(work: Path, mode: str, overrides: list[str]) -> None:
    config = yaml.safe_load((REPO / "configs" / "accelerate" / "fsdp2.yaml").read_text())
    config.update(num_processes=2, main_process_port=free_port())
    (work / "accelerate.yaml").write_text(yaml.safe_dump(config))
    run_launch(["--config_file", str(work / "accelerate.yaml"), str(WORKER), str(work), mode, *overrides])


def test_fsdp2_shards_a_qwen3_vl_checkpoint_like_one_process(shapes_dir, tmp_path):
    """configs/accelerate/fsdp2.yaml names Qwen2.5-VL's layer classes; on a Qwen3-VL checkpoint (deepstack
    mergers, 16-pixel patches) the trainer shards that model's own layers, and two FSDP2 processes give the
    parameters of one process without FSDP after each step."""
    from family_models import build

    model = build("qwen3_vl", tmp_path / "model")
    overrides = [*_overrides(model, shapes_dir, tmp_path / "fsdp" / "run"), "data.unknown_tokens=ignore",
                 "model.min_pixels=1024", "model.max_pixels=9216"]
    (tmp_path / "fsdp").mkdir()
    _launch_fsdp(tmp_path / "fsdp", "fresh", overrides)
    single: dict[int, dict[str, torch.Tensor]] = {}
    one = [o.replace(str(tmp_path / "fsdp" / "run"), str(tmp_path / "one")) for o in overrides]
    trainer = Trainer(load_config(Config, None, one))
    record_steps(trainer, lambda step, params: single.__setitem__(step, params))
    trainer.fit()
    for step in range(1, STEPS + 1):
        sharded = torch.load(tmp_path / "fsdp" / f"step{step}.pt")
        assert sharded.keys() == single[step].keys()
        assert any("deepstack_merger_list" in n for n in sharded)
        for name, value in sharded.items():
            torch.testing.assert_close(value, single[step][name], rtol=0, atol=1e-5,
                                       msg=lambda m, n=name, s=step: f"step {s}, {n}: {m}")


def test_fsdp2_resume_reset_export_and_single_process_match(tiny_model_dir, shapes_dir, tmp_path):
    """ProRL resets (`vlrl.reference`) under FSDP2, triggered by the KL threshold (the main process decides for
    both): every step's loss/kl is above 1e-9 (its second update runs after an optimiser step), so each step resets.
    The reference, a whole copy on each rank, gets the sharded policy's weights gathered whole, and the sharded
    optimiser state is zeroed. The reference a checkpoint holds is the policy of its step; resuming from step 1
    gives the uninterrupted step 2 without redoing step 1; both equal one process without FSDP (parameters after
    each step, every metric and evaluation), whose step 2 already differs from a run without resets; and the
    sharded final checkpoint exports to exactly those weights. (One test for resume, resets and export: each
    two-process launch costs ~15 s of start-up.)"""
    extra = ["algorithm.kl_coef=0.5", "algorithm.reference_reset_kl=1e-9"]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    full.mkdir()
    _launch_fsdp(full, "fresh", [*_overrides(tiny_model_dir, shapes_dir, full / "run"), *extra])
    ckpts = sorted(p.name for p in (full / "run" / "checkpoints").iterdir())
    assert ckpts == ["step_000001", "step_000002"]
    assert (full / "run" / "checkpoints" / "step_000001" / "sharded").is_dir()
    # An interruption after step 1: the run directory as it was then, resumed by a new launch.
    resumed.mkdir()
    shutil.copytree(full / "run", resumed / "run", symlinks=True)
    shutil.rmtree(resumed / "run" / "checkpoints" / "step_000002")
    _launch_fsdp(resumed, "resume", [*_overrides(tiny_model_dir, shapes_dir, resumed / "run"), *extra])
    assert not (resumed / "step1.pt").exists()  # it did not redo step 1
    a, b = torch.load(full / f"step{STEPS}.pt"), torch.load(resumed / f"step{STEPS}.pt")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    assert _comparable(full / "run") == _comparable(resumed / "run")

    from safetensors.torch import load_file

    from vlrl.reference import METRIC, REFERENCE_DIR, REFERENCE_FILE

    single: dict[int, dict[str, torch.Tensor]] = {}
    trainer = Trainer(load_config(Config, None, [*_overrides(tiny_model_dir, shapes_dir, tmp_path / "one"), *extra]))
    start = {n: p.detach().clone() for n, p in trainer.policy.core.named_parameters() if p.requires_grad}
    record_steps(trainer, lambda step, params: single.__setitem__(step, params))
    trainer.fit()
    assert max((single[STEPS][n] - start[n]).abs().max().item() for n in start) > 1e-3  # moved far beyond 1e-5
    saved = load_file(str(full / "run" / "checkpoints" / "step_000001" / REFERENCE_DIR / REFERENCE_FILE))
    assert saved.keys() == single[1].keys()
    for name, value in saved.items():  # the reference after step 1 is the policy of step 1
        torch.testing.assert_close(value, single[1][name], rtol=0, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    for step in range(1, STEPS + 1):
        sharded = torch.load(full / f"step{step}.pt")
        for name, value in sharded.items():
            torch.testing.assert_close(value, single[step][name], rtol=0, atol=1e-5,
                                       msg=lambda m, n=name, s=step: f"step {s}, {n}: {m}")
    x, y = _comparable(full / "run"), _comparable(tmp_path / "one")
    assert [ln["step"] for ln in x] == [ln["step"] for ln in y] == [0, 1, 2, 2]  # evaluations at 0 and 2
    assert [ln.get(METRIC) for ln in x] == [None, 1, 1, None]
    for u, v in zip(x, y, strict=True):
        assert u.keys() == v.keys()
        for key in u:
            assert u[key] == pytest.approx(v[key], rel=1e-4, abs=1e-6), key

    # The sharded checkpoint, assembled into an HF directory.
    from transformers import AutoModelForImageTextToText

    from vlrl.cli import main

    assert main(["export", str(full / "run" / "final"), str(tmp_path / "hf")]) == 0
    exported = dict(AutoModelForImageTextToText.from_pretrained(tmp_path / "hf").named_parameters())
    for name, value in a.items():
        torch.testing.assert_close(exported[name], value, rtol=0, atol=0)

    # Without resets step 2 goes elsewhere: the reset is what both runs share, not a no-op.
    plain: dict[int, dict[str, torch.Tensor]] = {}
    no_reset = [*_overrides(tiny_model_dir, shapes_dir, tmp_path / "plain"), *extra[:1], "trainer.eval_every=0"]
    trainer = Trainer(load_config(Config, None, no_reset))
    record_steps(trainer, lambda step, params: plain.__setitem__(step, params))
    trainer.fit()
    assert max((plain[STEPS][n] - single[STEPS][n]).abs().max().item() for n in plain[STEPS]) > 1e-4
