"""End-to-end training on the tiny model (CPU, offline): a few steps, checkpoints, resume."""

from __future__ import annotations

import math

import pytest
import torch

from vlrl.checkpoint import latest_checkpoint
from vlrl.config_loader import load_config
from vlrl.metrics import read_metrics
from vlrl.trainer import Trainer


def _params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_two_steps_change_parameters_and_log(tiny_config, tmp_path):
    cfg = tiny_config("trainer.eval_every=2", "algorithm.micro_batch_size=6")
    trainer = Trainer(cfg)
    before = _params(trainer.policy.core)
    trainer.fit()
    after = _params(trainer.policy.core)
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    # Language model, LM head and (trainable here) vision tower all moved.
    assert any(n.startswith("lm_head") for n in changed)
    assert any(".language_model." in n for n in changed)
    assert any(".visual." in n for n in changed)

    lines = read_metrics(cfg.trainer.output_dir)
    steps = [ln for ln in lines if "reward/mean" in ln]
    assert [ln["step"] for ln in steps] == [1, 2]
    for key in ("reward/mean", "reward/accuracy", "reward/format", "loss/loss", "loss/pg_loss", "loss/entropy",
                "loss/clip_frac", "loss/grad_norm", "rollout/length_mean", "perf/rollout_s", "perf/update_s",
                "optim/lr", "reward/shapes_colour/mean", "reward/shapes_count/mean"):
        assert key in steps[0], key
        assert steps[0][key] is not None and math.isfinite(steps[0][key]), key
    evals = [ln for ln in lines if "eval/accuracy" in ln]
    assert [ln["step"] for ln in evals] == [0, 2]
    assert {"eval/accuracy/shapes_colour", "eval/accuracy/shapes_count"} <= set(evals[-1])

    run = cfg.trainer.output_dir
    assert (tmp_path / "run" / "config.yaml").exists()
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert load_config(type(cfg), tmp_path / "run" / "config.yaml") == cfg
    # The final checkpoint is an HF-format model directory.
    from transformers import AutoModelForImageTextToText, AutoProcessor

    final = latest_checkpoint(run)
    assert final is not None and (tmp_path / "run" / "final").resolve() == final.resolve()
    loaded = AutoModelForImageTextToText.from_pretrained(final)
    AutoProcessor.from_pretrained(final)
    for name, value in loaded.named_parameters():
        if name in after:
            torch.testing.assert_close(value, after[name], rtol=0, atol=0)


def test_micro_batches_do_not_change_the_update(tiny_config):
    """The same step with 1 micro-batch or 4 gives the same parameters (losses use global token totals)."""
    results = []
    for mb in (16, 4):
        # Adam with eps=1 steps ~ lr * gradient: with the default eps its first step is ~ lr * sign(gradient),
        # blind to a wrong gradient scale and moving weights whose gradient is rounding noise by a full lr.
        trainer = Trainer(tiny_config(f"algorithm.micro_batch_size={mb}", "trainer.total_steps=1",
                                      "algorithm.updates_per_batch=1", "optim.eps=1.0", "optim.lr=0.2",
                                      f"trainer.output_dir={trainer_dir(mb)}"))
        trainer.fit()
        results.append(_params(trainer.policy.core))
    for name in results[0]:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=1e-4, atol=1e-6)


def test_old_logprobs_from_the_rollout_equal_a_recomputation_in_fp32(tiny_config):
    """algorithm.old_logprobs=rollout skips the old-log-prob pass; in fp32 the behaviour log-probs equal it to
    1e-5, so two PPO epochs end at the same parameters."""
    results, timers = [], []
    for source in ("recompute", "rollout"):
        trainer = Trainer(tiny_config(f"algorithm.old_logprobs={source}", "trainer.total_steps=1",
                                      "algorithm.updates_per_batch=2", "optim.eps=1.0", "optim.lr=0.2",
                                      f"trainer.output_dir={trainer_dir(source)}"))
        metrics = trainer.train_step(0)
        results.append(_params(trainer.policy.core))
        timers.append("perf/old_logprobs_s" in metrics)
    assert timers == [True, False]  # the recomputation ran only where asked
    for name in results[0]:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=1e-4, atol=1e-6)


def test_token_budget_does_not_change_the_update(tiny_config):
    """Micro-batches cut by a token budget (uneven sizes, groups split across them) give the parameters of one
    micro-batch holding the whole step."""
    results, sizes = [], []
    for extra in ((), ("algorithm.micro_batch_tokens=75",)):
        trainer = Trainer(tiny_config("algorithm.micro_batch_size=16", "trainer.total_steps=1",
                                      "algorithm.updates_per_batch=2", "optim.eps=1.0", "optim.lr=0.2",
                                      f"trainer.output_dir={trainer_dir(len(extra))}", *extra))
        split = trainer._micro_batches

        def recording(*args, split=split):
            chunks = split(*args)
            sizes.append([len(mb) for mb, _ in chunks])
            return chunks

        trainer._micro_batches = recording
        trainer.fit()
        results.append(_params(trainer.policy.core))
    assert sizes[0] == [16] and len(sizes[1]) > 2 and sum(sizes[1]) == 16
    assert any(s % 4 for s in sizes[1])  # some group of 4 samples is split across micro-batches
    for name in results[0]:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=1e-4, atol=1e-6)


def trainer_dir(tag) -> str:
    import tempfile

    return tempfile.mkdtemp(prefix=f"vlrl-mb{tag}-")


@pytest.mark.parametrize("extra", [(), ("algorithm.updates_per_batch=2", "algorithm.kl_coef=0.05"),
                                   ("model.lora_rank=4", "algorithm.kl_coef=0.05")])
def test_resume_matches_uninterrupted_run(tiny_config, tmp_path, extra):
    common = ("trainer.total_steps=4", "trainer.save_every=2", "trainer.eval_every=2", *extra)
    full = tiny_config(*common, f"trainer.output_dir={tmp_path / 'full'}")
    Trainer(full).fit()

    part = tiny_config(*common, f"trainer.output_dir={tmp_path / 'part'}")
    Trainer(part).fit(stop_after=3)  # interrupted after step 3; the last checkpoint is step 2
    from vlrl.cli import main

    assert main(["train", "--resume", str(tmp_path / "part"), "trainer.progress_bar=false"]) == 0

    def comparable(run):
        return [{k: v for k, v in ln.items() if not k.startswith("perf/")} for ln in read_metrics(run)]

    a, b = comparable(tmp_path / "full"), comparable(tmp_path / "part")
    assert [ln["step"] for ln in a] == [ln["step"] for ln in b]
    assert a == b


def test_3b_recipe_options_run_on_the_tiny_model(tiny_model_dir, shapes_dir, tmp_path):
    """The GPU recipe's code paths (bf16, gradient checkpointing, frozen vision tower, prompt suffix, grpo
    advantages) on the tiny model, so CI exercises them; the 3B-shaped run itself is tests/gpu."""
    from pathlib import Path

    from vlrl.config import Config

    recipe = Path(__file__).resolve().parents[2] / "configs" / "qwen2_5_vl_3b_grpo.yaml"
    cfg = load_config(Config, recipe, [
        f"model.path={tiny_model_dir}", f"data.path={shapes_dir}", f"trainer.output_dir={tmp_path / 'run'}",
        "trainer.total_steps=2", "trainer.eval_every=0", "trainer.save_every=0", "trainer.progress_bar=false",
        "trainer.device=cpu", "rollout.max_new_tokens=12", "data.prompts_per_step=2", "rollout.group_size=4",
        "data.unknown_tokens=ignore",  # the recipe's prompt suffix is English the demo's vocabulary lacks
    ])
    assert cfg.model.dtype == "bfloat16" and cfg.model.gradient_checkpointing and cfg.model.freeze_vision
    trainer = Trainer(cfg)
    visual_before = {n: p.detach().clone() for n, p in trainer.policy.core.model.visual.named_parameters()}
    trainer.fit()
    steps = [ln for ln in read_metrics(tmp_path / "run") if "loss/loss" in ln]
    assert len(steps) == 2 and all(math.isfinite(s["loss/loss"]) for s in steps)
    for name, p in trainer.policy.core.model.visual.named_parameters():
        if name.startswith("merger."):
            assert p.requires_grad
        else:  # the frozen tower did not move
            assert not p.requires_grad and torch.equal(p, visual_before[name]), name
    assert next(trainer.policy.core.parameters()).dtype == torch.bfloat16


def test_batch_advantage_baseline_is_the_mean_per_task(tiny_config):
    """algorithm.advantage=batch in the trainer: each reward minus the mean of its task's rewards in the step
    (by hand: colour rewards 1, 0, 0.5, 0.5 -> mean 0.5; count 1, 1 -> mean 1)."""
    from types import SimpleNamespace

    trainer = Trainer(tiny_config("algorithm.advantage=batch"))
    rows = [SimpleNamespace(task="colour"), SimpleNamespace(task="count"),
            SimpleNamespace(task="colour")]
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5, 0.5])  # G = 2 per row
    got = trainer._advantages(rewards, rows, 2)
    torch.testing.assert_close(got, torch.tensor([0.5, -0.5, 0.0, 0.0, 0.0, 0.0]))
    trainer.fit()  # and a whole (two-step) run takes it


def test_batches_leave_the_encoder_complete_and_the_backend_hears_of_each_update(tiny_config):
    """Positions are computed when a batch is encoded (the trainer adds nothing later); the rollout backend lives
    across steps and is told after each update that the weights changed."""
    from vlrl.data.prompts import PromptBatch

    trainer = Trainer(tiny_config("trainer.total_steps=3"))
    rows = [trainer.train_reader.row(i) for i in range(3)]
    batch = trainer.encode(rows, 2)
    assert batch.positions is not None
    expected = trainer.policy.rope_positions(batch.input_ids, batch.mm_token_type_ids, batch.image_grid_thw,
                                             batch.attention_mask)
    assert torch.equal(batch.positions, expected)
    lazy = PromptBatch(**{**batch.__dict__, "positions": None})
    assert torch.equal(trainer.policy.prompt_positions(lazy), batch.positions)
    backend = trainer.rollout
    trainer.fit()
    assert trainer.rollout is backend and backend.weight_version == 3


def test_advantage_eps_reaches_the_group_std_division(tiny_config):
    """Rewards [1, 0, 0, 1] of one group: mean 0.5, unbiased std sqrt(1/3) = 0.577350; with eps 0.1 the
    advantages are +-0.5 / 0.677350 = +-0.738170 (with the default 1e-6 they would be +-0.866024)."""
    trainer = Trainer(tiny_config("algorithm.scale_rewards=group", "algorithm.advantage_eps=0.1"))
    adv = trainer._advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), rows=[], G=4)
    assert adv.tolist() == pytest.approx([0.738170, -0.738170, -0.738170, 0.738170], abs=1e-6)


def test_scale_rewards_batch_divides_by_the_std_of_the_steps_rewards(tiny_config):
    """algorithm.scale_rewards=batch in the trainer, group baseline, G = 3, eps 0.
    Rewards [1, 0, 0 | 1, 1, 1]: group means 1/3 and 1 -> centred [2/3, -1/3, -1/3, 0, 0, 0]. The step's six
    rewards have mean 2/3, squared deviations 4 * 1/9 + 2 * 4/9 = 4/3, unbiased var 4/15, std 0.516398 ->
    [1.290994, -0.645497, -0.645497, 0, 0, 0]. scale_rewards=none leaves the centred values; the deprecated
    advantage=drgrpo loads as advantage=group scale_rewards=none."""
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    trainer = Trainer(tiny_config("algorithm.scale_rewards=batch", "algorithm.advantage_eps=0"))
    adv = trainer._advantages(rewards, rows=[], G=3)
    assert adv.tolist() == pytest.approx([1.290994, -0.645497, -0.645497, 0.0, 0.0, 0.0], abs=1e-6)
    with pytest.warns(FutureWarning, match="drgrpo is deprecated"):
        cfg = tiny_config("algorithm.advantage=drgrpo")
    assert (cfg.algorithm.advantage, cfg.algorithm.scale_rewards) == ("group", "none")
    trainer.cfg.algorithm.scale_rewards = "none"
    adv = trainer._advantages(rewards, rows=[], G=3)
    assert adv.tolist() == pytest.approx([2 / 3, -1 / 3, -1 / 3, 0.0, 0.0, 0.0], abs=1e-6)


def test_greedy_probe_is_the_change_of_the_greedy_answers_logprob(tiny_config, fresh_logprobs):
    """algorithm.greedy_probe_prompts=2: rollout/greedy_logprob_delta is, for the step's first two prompts, the
    greedy answer's summed log-prob after the update minus before, recomputed here by transformers' own forward
    (independent of the update's); with lr 0 the policy does not move and the delta is exactly 0. The step also
    logs the clip fractions and ratio mean."""
    from vlrl.rollout import generate

    def run(lr: float, name: str):
        cfg = tiny_config("algorithm.greedy_probe_prompts=2", "trainer.total_steps=1", f"optim.lr={lr}",
                          "rollout.temperature=0.7", f"trainer.output_dir={trainer_dir(name)}")
        trainer = Trainer(cfg)
        rows, _ = trainer.train_reader.step_rows(trainer.sampler, 0, range(2))
        batch = trainer.encode(rows, 1)
        greedy = generate(trainer.policy, batch, cfg.rollout, greedy=True)
        before = (fresh_logprobs(trainer.policy, batch, greedy, 0.7) * greedy.completion_mask).sum(-1)
        trainer.fit()
        after = (fresh_logprobs(trainer.policy, batch, greedy, 0.7) * greedy.completion_mask).sum(-1)
        [line] = [ln for ln in read_metrics(cfg.trainer.output_dir) if "loss/loss" in ln]
        return line, (after - before).mean().item()

    line, expected = run(0.2, "moved")
    assert abs(expected) > 1e-2, expected  # the update did move the greedy answers
    assert line["rollout/greedy_logprob_delta"] == pytest.approx(expected, abs=1e-4)
    for key in ("loss/clip_low_frac", "loss/clip_high_frac", "loss/clip_frac", "loss/ratio_mean", "perf/greedy_probe_s"):
        assert math.isfinite(line[key]), key
    assert line["loss/clip_frac"] == pytest.approx(line["loss/clip_low_frac"] + line["loss/clip_high_frac"])
    line, expected = run(0.0, "still")
    assert line["rollout/greedy_logprob_delta"] == 0.0 and expected == 0.0
