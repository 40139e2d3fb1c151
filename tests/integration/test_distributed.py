"""Data-parallel training on CPU: two processes (gloo, launched by `accelerate launch`) against one.

One two-process run of 3 steps on the tiny model, where at step 1 one rank's prompts are text-only and the
other's have images, shows: both ranks hold identical parameters after every update; they equal a
single-process run's with the same global batch and seed; the ranks' completions, metrics and evaluation,
gathered, are the single-process run's; a text-only rank does not hang the step. The launch runs under a
time limit, so a hang fails the test instead of blocking CI.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from vlrl.config import Config
from vlrl.config_loader import load_config
from vlrl.data import StepSampler
from vlrl.metrics import read_metrics
from vlrl.samples import read_samples
from vlrl.trainer import COMPLETIONS_FILE, Trainer

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("distributed_worker.py")
STEPS, PROMPTS = 3, 4

sys.path.insert(0, str(WORKER.parent))
from distributed_worker import record_steps  # noqa: E402
from launching import comparable as _comparable  # noqa: E402
from launching import free_port, run_launch  # noqa: E402


@pytest.fixture(scope="module")
def mixed_dir(shapes_dir, tmp_path_factory):
    """16 shapes rows where the first two prompts of step 1 (rank 0's share of 2 ranks) have no image; every
    other row keeps its image, so rank 1's prompts at step 1 have images."""
    import datasets

    dd = datasets.load_from_disk(str(shapes_dir))
    train = dd["train"].select(range(16))
    text_only = set(StepSampler(len(train), PROMPTS, seed=0).indices(0)[: PROMPTS // 2])
    train = train.map(lambda row, i: {"images": [] if i in text_only else row["images"]}, with_indices=True)
    out = tmp_path_factory.mktemp("mixed")
    datasets.DatasetDict({"train": train, "test": dd["test"].select(range(6))}).save_to_disk(str(out))
    return out


def _overrides(model_dir, data_dir, out_dir) -> list[str]:
    return [
        f"model.path={model_dir}", f"data.path={data_dir}", f"trainer.output_dir={out_dir}",
        f"data.prompts_per_step={PROMPTS}", "rollout.group_size=4", "rollout.max_new_tokens=4",
        "data.source_weights={}", "data.max_eval_rows=6", f"trainer.total_steps={STEPS}",
        f"trainer.eval_every={STEPS}", "trainer.save_every=0", "trainer.save_completions=1",
        "trainer.progress_bar=false", "trainer.device=cpu", "reward.workers=0", "trainer.log_samples_every=1",
        # 4 micro-batches in one process, 2 per rank in two: gradients accumulate across no_sync backwards.
        "algorithm.micro_batch_size=4", "algorithm.updates_per_batch=2",
        # The step's reward std (both ranks' rewards) and the probe of the step's first 2 prompts (rank 0's; rank 1
        # probes its own too, uncounted): each the same for one process and two.
        "algorithm.scale_rewards=batch", "algorithm.greedy_probe_prompts=2",
        # Adam with eps=1 steps ~ lr * gradient (its first steps are otherwise ~ lr * sign(gradient), which
        # hides a wrong gradient scale, and moves a weight whose gradient is rounding noise by a full lr).
        "optim.eps=1.0", "optim.lr=0.2", "optim.warmup_steps=0",
    ]


def _launch_two(out_dir: Path, overrides: list[str]) -> None:
    run_launch(["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no", "--main_process_port", str(free_port()), str(WORKER), str(out_dir),
                *overrides])


def test_two_processes_match_one(tiny_model_dir, mixed_dir, tmp_path):
    if shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists():
        pytest.skip("accelerate launcher not installed")
    two = tmp_path / "two"
    two.mkdir()
    _launch_two(two, _overrides(tiny_model_dir, mixed_dir, two / "run"))

    one = tmp_path / "one"
    single: dict[int, dict[str, torch.Tensor]] = {}
    trainer = Trainer(load_config(Config, None, _overrides(tiny_model_dir, mixed_dir, one / "run")))
    start = {n: p.detach().clone() for n, p in trainer.policy.core.named_parameters() if p.requires_grad}
    record_steps(trainer, lambda step, params: single.__setitem__(step, params))
    trainer.fit()

    # The step-1 split really is mixed: rank 0's prompts are text-only, rank 1's have images.
    rows = trainer.train_rows
    step1 = StepSampler(len(rows), PROMPTS, seed=0).indices(0)
    assert [len(rows[i]["images"]) > 0 for i in step1] == [False, False, True, True]

    for step in range(1, STEPS + 1):
        rank0 = torch.load(two / f"rank0_step{step}.pt")
        rank1 = torch.load(two / f"rank1_step{step}.pt")
        assert rank0.keys() == rank1.keys() == single[step].keys()
        for name in rank0:
            assert torch.equal(rank0[name], rank1[name]), f"step {step}: ranks differ on {name}"
            torch.testing.assert_close(rank0[name], single[step][name], rtol=0, atol=1e-5,
                                       msg=lambda m, n=name, s=step: f"step {s}, {n}: {m}")
    # The runs moved the weights far beyond the tolerance (at least 100x), the vision tower included (its
    # gradient at step 1 comes from rank 1 only).
    moved = {n: (single[STEPS][n] - start[n]).abs().max().item() for n in start}
    assert max(moved.values()) > 1e-3
    assert max(v for n, v in moved.items() if ".visual." in n) > 1e-3

    # Completions, metrics and evaluation are gathered from both ranks: the same lines as one process wrote.
    lines = [(two / "run" / COMPLETIONS_FILE).read_text().splitlines(),
             (one / "run" / COMPLETIONS_FILE).read_text().splitlines()]
    assert len(lines[0]) == STEPS * PROMPTS * 4
    assert [json.loads(x)["completion"] for x in lines[0]] == [json.loads(x)["completion"] for x in lines[1]]
    # Rollout samples: every rank's candidates gathered, the first per source kept, as one process keeps them
    # (step 1: rank 0 holds the text-only prompts, rank 1 those with images).
    samples = [[{k: v for k, v in s.items() if k != "images"} | {"images": len(s["images"])}
                for s in read_samples(run / "run")] for run in (two, one)]
    assert samples[0] == samples[1] and {s["step"] for s in samples[0]} == set(range(1, STEPS + 1))
    assert any(s["images"] for s in samples[0] if s["step"] == 1)
    a, b = _comparable(two / "run"), _comparable(one / "run")
    assert [x["step"] for x in a] == [x["step"] for x in b] == [0, 1, 2, 3, 3]
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-6), key

    # The main process saved the final checkpoint: the parameters both ranks hold.
    from transformers import AutoModelForImageTextToText

    saved = dict(AutoModelForImageTextToText.from_pretrained(two / "run" / "final").named_parameters())
    last = torch.load(two / f"rank0_step{STEPS}.pt")
    for name, value in last.items():
        torch.testing.assert_close(saved[name], value, rtol=0, atol=0)


def test_two_processes_match_one_with_lora_and_a_frozen_tower(tiny_model_dir, mixed_dir, tmp_path):
    """LoRA adapters and the frozen-tower path (the rollout's vision states reused by the update) under DDP,
    with a KL penalty and a reference reset after step 2 (step 3's reference: the adapters' copy, swapped in on
    each rank): both ranks equal, and equal to one process."""
    if shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists():
        pytest.skip("accelerate launcher not installed")
    extra = ["model.lora_rank=4", "model.lora_alpha=8", "model.freeze_vision=true", "trainer.save_completions=0",
             "algorithm.kl_coef=0.5", "algorithm.reference_reset_every=2"]
    two = tmp_path / "two"
    two.mkdir()
    _launch_two(two, _overrides(tiny_model_dir, mixed_dir, two / "run") + extra)

    single: dict[int, dict[str, torch.Tensor]] = {}
    trainer = Trainer(load_config(Config, None, _overrides(tiny_model_dir, mixed_dir, tmp_path / "one") + extra))
    assert trainer.policy.vision_tower_frozen and trainer.policy.adapter is not None
    record_steps(trainer, lambda step, params: single.__setitem__(step, params))
    trainer.fit()
    assert [ln["algorithm/reference_reset"] for ln in read_metrics(two / "run") if "loss/loss" in ln] == [0, 1, 0]
    for step in range(1, STEPS + 1):
        rank0 = torch.load(two / f"rank0_step{step}.pt")
        rank1 = torch.load(two / f"rank1_step{step}.pt")
        assert rank0.keys() == rank1.keys() == single[step].keys()
        assert any("lora" in n for n in rank0)
        for name in rank0:
            assert torch.equal(rank0[name], rank1[name]), f"step {step}: ranks differ on {name}"
            torch.testing.assert_close(rank0[name], single[step][name], rtol=0, atol=1e-5,
                                       msg=lambda m, n=name, s=step: f"step {s}, {n}: {m}")
