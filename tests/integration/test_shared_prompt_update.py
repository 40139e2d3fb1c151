"""The prompt-once update forward (`algorithm.shared_prompt`) against the per-sequence forward on the tiny model:
log-probs, gradients of a GRPO loss (with and without activation checkpointing) and a whole trainer step.

The per-sequence path runs every row as [prompt + completion]; it is the reference here (itself checked against
transformers' own forward in test_rollout.py). The batch mixes image prompts of different sizes (one with two
images) and text-only prompts, so prompts are left-padded by different amounts.
"""

from __future__ import annotations

import pytest
import torch

import vlrl.update
from data_pipelines.synthetic.shapes import shape_rows
from vlrl.algorithms import policy_loss
from vlrl.config import AlgorithmConfig, ModelConfig
from vlrl.data import PromptEncoder, validate_row
from vlrl.models.policy import load_policy
from vlrl.rollout.types import Rollouts
from vlrl.trainer import Trainer
from vlrl.update import CompletionForward, batch_logprobs, micro_batches
from vlrl.update_shared import shared_prompt_hidden

G, T = 3, 5


def _rows():
    colour = shape_rows("colour", 2, seed=3, split="test")
    count = shape_rows("count", 2, seed=3, split="test", image_size=112)
    two_images = dict(colour[1], id="two", images=[colour[1]["images"][0], count[1]["images"][0]],
                      problem="<image> <image> how many shapes are there ?")
    text_short = dict(colour[0], id="text-short", images=[], problem="red ?")
    text_long = dict(count[0], id="text-long", images=[], problem="what colour is the shape ? how many shapes ?")
    raw = [colour[0], text_short, count[0], two_images, text_long]
    return [validate_row(r, i) for i, r in enumerate(raw)]


def _batch(policy):
    batch = PromptEncoder(policy.processor, 56 * 56, 112 * 112)(_rows(), group_size=G)
    policy.prompt_positions(batch)
    return batch


def _rollouts(policy, num_prompts: int) -> Rollouts:
    """Random completions (no vision tokens) with lengths 1..T, so masks end anywhere, including after 1 token."""
    gen = torch.Generator().manual_seed(0)
    n = num_prompts * G
    allowed = torch.tensor([i for i in range(policy.core.config.text_config.vocab_size)
                            if i not in policy.banned_token_ids])
    ids = allowed[torch.randint(len(allowed), (n, T), generator=gen)]
    lengths = torch.arange(n) % T + 1
    mask = (torch.arange(T) < lengths.unsqueeze(1)).long()
    ids = ids.masked_fill(mask == 0, policy.pad_token_id)
    return Rollouts(ids, mask, torch.zeros(n, T), [""] * n, lengths < T, G)


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return load_policy(ModelConfig(freeze_vision=False), tiny_model_dir)


def test_batch_has_left_padding_images_and_text_only_prompts(policy):
    batch = _batch(policy)
    pads = (batch.attention_mask == 0).sum(1)
    assert len(set(pads.tolist())) == len(pads)  # every prompt padded by a different amount
    assert batch.images_per_prompt == [1, 0, 1, 2, 0]


@pytest.mark.parametrize("size", [15, 4, 1])  # all rows; groups split across micro-batches; one row each
def test_logprobs_equal_per_sequence(policy, size):
    batch, forward = _batch(policy), CompletionForward(policy.model)
    rollouts = _rollouts(policy, batch.num_prompts)
    rows = torch.arange(batch.num_prompts * G)
    cfg = AlgorithmConfig(logprob_chunk_size=7)
    per_seq = batch_logprobs(policy, forward, micro_batches(batch, rollouts, rows, size), 0.7, cfg)
    shared = batch_logprobs(policy, forward, micro_batches(batch, rollouts, rows, size, shared_prompt=True), 0.7, cfg)
    assert per_seq.shape == shared.shape == (len(rows), T)
    torch.testing.assert_close(shared, per_seq, atol=1e-5, rtol=0)
    # Masked (padding) positions too: both paths give each query the same keys.
    assert shared.std() > 0.1  # not a degenerate model output


def _grpo_grads(policy, chunks, advantages, num_tokens: float) -> dict[str, torch.Tensor]:
    """Gradients of a token-mean GRPO loss (with entropy bonus) accumulated over `chunks`."""
    forward = CompletionForward(policy.model)
    policy.model.zero_grad(set_to_none=True)
    for mb, seqs in chunks:
        logp, entropy = forward(policy, seqs, chunk_size=8, with_entropy=True)
        old = logp.detach() - 0.1 * torch.linspace(-1, 1, logp.numel()).view_as(logp)  # ratios != 1: clipping
        loss, _ = policy_loss(logp, old, advantages[mb], seqs.mask, clip_low=0.2, clip_high=0.28,
                              aggregation="token_mean", ratio_level="token", entropy=entropy, entropy_coef=0.05,
                              num_tokens=num_tokens)
        loss.backward()
    return {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("freeze_vision", [False, True])
def test_grpo_gradients_equal_per_sequence(tiny_model_dir, checkpointing, freeze_vision):
    policy = load_policy(ModelConfig(freeze_vision=freeze_vision, gradient_checkpointing=checkpointing),
                         tiny_model_dir)
    policy.model.train()
    assert policy.core.model.language_model.layers[0].gradient_checkpointing == checkpointing
    batch = _batch(policy)
    rollouts = _rollouts(policy, batch.num_prompts)
    rows = torch.arange(batch.num_prompts * G)
    advantages = torch.linspace(-1.0, 1.0, len(rows))
    num_tokens = float(rollouts.completion_mask.sum())
    per_seq = _grpo_grads(policy, micro_batches(batch, rollouts, rows, 4), advantages, num_tokens)
    shared = _grpo_grads(policy, micro_batches(batch, rollouts, rows, 4, shared_prompt=True), advantages,
                         num_tokens)
    assert set(per_seq) == set(shared)
    assert any(".merger." in n for n in shared)
    assert any(".visual.blocks." in n for n in shared) != freeze_vision
    for name, grad in per_seq.items():
        assert grad.abs().max() > 0, name  # every trainable parameter is reached (merger, tower, LM, head)
        torch.testing.assert_close(shared[name], grad, atol=1e-6, rtol=1e-4, msg=name)
    # The layers' own checkpointing settings are restored after the forward.
    assert all("_can_checkpoint_with_cache" not in layer.__dict__ for layer in policy.core.model.language_model.layers)


def _step_params(tiny_config, tmp_path, monkeypatch, shared: bool) -> dict[str, torch.Tensor]:
    cfg = tiny_config(f"algorithm.shared_prompt={str(shared).lower()}", "trainer.total_steps=1",
                      "algorithm.micro_batch_size=6", "algorithm.updates_per_batch=2", "algorithm.kl_coef=0.05",
                      "optim.eps=1.0", "optim.lr=0.2", f"trainer.output_dir={tmp_path / str(shared)}")
    trainer = Trainer(cfg)
    before = {n: p.detach().clone() for n, p in trainer.policy.core.named_parameters()}
    calls = []
    monkeypatch.setattr(vlrl.update, "shared_prompt_hidden",
                        lambda *args: calls.append(1) or shared_prompt_hidden(*args))
    trainer.fit()
    # 16 rows in micro-batches of 6 = 3 chunks, each through old log-probs, reference log-probs and 2 epochs.
    assert len(calls) == (12 if shared else 0)
    after = {n: p.detach().clone() for n, p in trainer.policy.core.named_parameters()}
    assert sum(not torch.equal(before[n], after[n]) for n in before) > len(before) // 2
    return after


def test_trainer_step_equal_per_sequence(tiny_config, tmp_path, monkeypatch):
    """One step (two PPO epochs, KL to the reference, micro-batches of 6 rows splitting groups of 4) gives the
    same parameters in both modes. Adam with eps=1 steps ~ lr * gradient, so a gradient error shows."""
    per_seq = _step_params(tiny_config, tmp_path, monkeypatch, shared=False)
    shared = _step_params(tiny_config, tmp_path, monkeypatch, shared=True)
    for name in per_seq:
        torch.testing.assert_close(shared[name], per_seq[name], atol=1e-5, rtol=0, msg=name)
