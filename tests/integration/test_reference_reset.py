"""ProRL's KL reference resets (`vlrl.reference`) in the trainer: after a reset the reference holds the policy's
weights, the optimiser state is a fresh one's (zeros) and the next update's KL starts from exactly 0; with LoRA
the policy is not touched; an interrupted and resumed run resets to the same reference as an uninterrupted one."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from vlrl.config import AlgorithmConfig
from vlrl.metrics import read_metrics
from vlrl.reference import METRIC, REFERENCE_DIR, REFERENCE_FILE, trainable_parameters
from vlrl.trainer import Trainer
from vlrl.update import batch_logprobs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trainer_chunks import sample_chunks  # noqa: E402

# One optimiser step per batch on one micro-batch: the step's loss/kl is measured entirely before that step, on
# the policy the step started with.
ONE_UPDATE = ("algorithm.kl_coef=0.05", "algorithm.updates_per_batch=1", "optim.lr=0.05")
LORA = ("model.lora_rank=4", "model.lora_alpha=8")


def _train_steps(tiny_config, *overrides):
    """A trainer whose steps also record, after each step: whether the reference's weights equal the policy's,
    and the optimiser's state: the set of the parameters' AdamW step counts, whether every moment is 0."""
    trainer = Trainer(tiny_config(*overrides))
    seen = []
    train_step = trainer.train_step

    def step_and_look(step):
        metrics = train_step(step)
        policy = trainable_parameters(trainer.policy)
        ref = dict(trainer.reference.model.core.named_parameters())
        state = trainer.optimizer.optimizer.state
        moments = [state[p][k] for p in policy.values() for k in ("exp_avg", "exp_avg_sq")]
        seen.append({"equal": all(torch.equal(ref[n], p) for n, p in policy.items()),
                     "steps": {int(state[p]["step"]) for p in policy.values()},
                     "moments_zero": all(not m.any() for m in moments)})
        return metrics

    trainer.train_step = step_and_look
    return trainer, seen


def test_reset_makes_the_reference_the_policy_and_clears_the_optimiser(tiny_config, tmp_path):
    """Resets after steps 2 and 4 (reference_reset_every=2) of 4. By hand, with one optimiser step per batch:
    - step 1: reference = starting model = policy, so loss/kl (k3 of equal log-probs: e^0 - 0 - 1) is exactly 0;
    - step 2: the policy moved at step 1, loss/kl > 0; then the reset: reference == policy, AdamW's step counts
      (and moments) 0, as a fresh optimiser's;
    - step 3: loss/kl is 0 again, and the AdamW step count is 1 (its first step since the reset), not 3;
    - the learning rate follows the cosine schedule of the whole run: lr * (1 + cos(pi * s / 4)) / 2 after step s.
    """
    trainer, seen = _train_steps(tiny_config, *ONE_UPDATE, "algorithm.reference_reset_every=2",
                                 "trainer.total_steps=4")
    assert not seen and trainer.reference.model is not None
    trainer.fit()
    steps = [ln for ln in read_metrics(tmp_path / "run") if "loss/loss" in ln]
    assert [s[METRIC] for s in steps] == [0, 1, 0, 1]
    kl = [s["loss/kl"] for s in steps]
    assert kl[0] == 0.0 and kl[1] > 1e-6 and kl[2] == 0.0 and kl[3] > 1e-6
    assert [s["equal"] for s in seen] == [False, True, False, True]
    assert [s["steps"] for s in seen] == [{1}, {0}, {1}, {0}]
    assert [s["moments_zero"] for s in seen] == [False, True, False, True]
    for s, line in enumerate(steps, 1):
        assert line["optim/lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi * s / 4)) / 2, abs=1e-12)


def test_kl_threshold_resets_when_the_steps_kl_is_over_it(tiny_config, tmp_path):
    """reference_reset_kl=1e-9: step 1's KL is exactly 0 (not over), every later step's is positive (over) -
    unless the step before reset, which makes it 0 again: resets after steps 2 and 4, none after 1 and 3."""
    trainer, seen = _train_steps(tiny_config, *ONE_UPDATE, "algorithm.reference_reset_kl=1e-9",
                                 "trainer.total_steps=4")
    trainer.fit()
    steps = [ln for ln in read_metrics(tmp_path / "run") if "loss/loss" in ln]
    assert [s["loss/kl"] > 1e-9 for s in steps] == [False, True, False, True]
    assert [s[METRIC] for s in steps] == [0, 1, 0, 1]
    assert [s["equal"] for s in seen] == [False, True, False, True]


def test_lora_reset_keeps_the_policy_and_makes_its_kl_zero(tiny_config, tmp_path):
    """With LoRA the reset snapshots the adapters and trained merger: the policy's log-probs are the same before
    and after it, the reference's equal them exactly (KL 0), and outside the reference pass the model holds the
    policy's own weights. Before the reset the reference (adapters off) was another model."""
    trainer = Trainer(tiny_config(*LORA, *ONE_UPDATE, "algorithm.reference_reset_every=2", "trainer.total_steps=3"))
    chunks = sample_chunks(trainer)

    def logprobs(policy, forward):
        return batch_logprobs(policy, forward, chunks, 1.0, AlgorithmConfig())

    seen = {}
    reset = trainer.reference.reset

    def reset_and_look(optimizer):
        seen["params"] = {n: p.detach().clone() for n, p in trainer.policy.core.named_parameters()}
        seen["policy"] = logprobs(trainer.policy, trainer.forward)
        with trainer.reference.use() as (policy, forward):
            seen["reference"] = logprobs(policy, forward)
        reset(optimizer)
        seen["state"] = [v for state in trainer.optimizer.optimizer.state.values() for v in state.values()]
        seen["policy_after"] = logprobs(trainer.policy, trainer.forward)
        with trainer.reference.use() as (policy, forward):
            seen["reference_after"] = logprobs(policy, forward)
        seen["params_after"] = {n: p.detach().clone() for n, p in trainer.policy.core.named_parameters()}

    trainer.reference.reset = reset_and_look
    trainer.fit(stop_after=2)
    assert (seen["reference"] - seen["policy"]).abs().max() > 1e-3  # adapters off: the starting model
    assert seen["state"] and all(not v.any() for v in seen["state"])  # moments and step counts: all 0
    assert torch.equal(seen["policy_after"], seen["policy"])
    assert torch.equal(seen["reference_after"], seen["policy"])
    assert all(torch.equal(seen["params_after"][n], p) for n, p in seen["params"].items())
    snapshot = trainer.reference.snapshot
    assert snapshot.keys() == trainable_parameters(trainer.policy).keys()
    assert all(torch.equal(snapshot[n], seen["params"][n]) for n in snapshot)

    # The checkpoint holds the snapshot; nothing else of the reference.
    trainer.save(2)
    saved = tmp_path / "run" / "checkpoints" / "step_000002" / REFERENCE_DIR / REFERENCE_FILE
    from safetensors.torch import load_file

    state = load_file(str(saved))
    assert state.keys() == snapshot.keys() and all(torch.equal(state[n], snapshot[n]) for n in state)


def test_lora_step_after_a_reset_starts_from_zero_kl(tiny_config, tmp_path):
    """The LoRA trainer end to end, as the full-weight test: loss/kl 0, > 0, then 0 after the reset at step 2."""
    Trainer(tiny_config(*LORA, *ONE_UPDATE, "algorithm.reference_reset_every=2", "trainer.total_steps=3")).fit()
    steps = [ln for ln in read_metrics(tmp_path / "run") if "loss/loss" in ln]
    assert [s[METRIC] for s in steps] == [0, 1, 0]
    kl = [s["loss/kl"] for s in steps]
    assert kl[0] == 0.0 and kl[1] > 1e-6 and kl[2] == 0.0


@pytest.mark.parametrize("extra", [(), LORA])
def test_resume_after_a_reset_matches_the_uninterrupted_run(tiny_config, tmp_path, extra):
    """Resets after steps 2 and 4 of 4; a checkpoint at step 3, where the reference is the policy of step 2 (neither
    the starting model nor the policy saved). The run interrupted there and resumed logs the uninterrupted run's
    metrics, step 4's loss/kl included."""
    common = ("trainer.total_steps=4", "trainer.save_every=3", "algorithm.kl_coef=0.05",
              "algorithm.reference_reset_every=2", "algorithm.updates_per_batch=2", *extra)
    Trainer(tiny_config(*common, f"trainer.output_dir={tmp_path / 'full'}")).fit()
    Trainer(tiny_config(*common, f"trainer.output_dir={tmp_path / 'part'}")).fit(stop_after=3)
    assert (tmp_path / "part" / "checkpoints" / "step_000003" / REFERENCE_DIR / REFERENCE_FILE).is_file()
    from vlrl.cli import main

    assert main(["train", "--resume", str(tmp_path / "part"), "trainer.progress_bar=false"]) == 0

    def comparable(run):
        return [{k: v for k, v in ln.items() if not k.startswith("perf/")} for ln in read_metrics(run)]

    a, b = comparable(tmp_path / "full"), comparable(tmp_path / "part")
    assert [ln["step"] for ln in a] == [ln["step"] for ln in b] == [1, 2, 3, 4]
    assert [ln[METRIC] for ln in a] == [0, 1, 0, 1] and a[3]["loss/kl"] > 0
    assert a == b
