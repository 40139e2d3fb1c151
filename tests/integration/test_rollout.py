"""The rollout backends on the tiny model: the cached engine against transformers `generate`, and behaviour
log-probs against an independent forward pass of the HF model."""

from __future__ import annotations

import pytest
import torch

from data_pipelines.synthetic.shapes import shape_rows
from vlrl.config import ModelConfig, RolloutConfig
from vlrl.data import PromptEncoder, validate_row
from vlrl.models.policy import load_policy
from vlrl.rollout import generate
from vlrl.rollout.sampling import prompt_seed


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return load_policy(ModelConfig(), tiny_model_dir)


@pytest.fixture(scope="module")
def batch_rows():
    raw = shape_rows("colour", 3, seed=1, split="test") + shape_rows("count", 3, seed=1, split="test")
    return [validate_row(r, i) for i, r in enumerate(raw)]


def test_greedy_cached_equals_reference(policy, batch_rows):
    batch = PromptEncoder(policy.processor, 56 * 56, 112 * 112)(batch_rows, group_size=2)
    cfg = RolloutConfig(max_new_tokens=8)
    cached = generate(policy, batch, cfg, greedy=True)
    ref = generate(policy, batch, RolloutConfig(max_new_tokens=8, backend="reference"), greedy=True)
    assert torch.equal(cached.completion_ids, ref.completion_ids)
    assert torch.equal(cached.completion_mask, ref.completion_mask)
    torch.testing.assert_close(cached.logprobs, ref.logprobs, atol=1e-5, rtol=0)
    # Greedy: the group's samples are identical.
    assert torch.equal(cached.completion_ids[0::2], cached.completion_ids[1::2])


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_match_fresh_forward(policy, batch_rows, temperature, fresh_logprobs):
    batch = PromptEncoder(policy.processor, 56 * 56, 112 * 112)(batch_rows, group_size=4)
    gen = torch.Generator().manual_seed(3)
    out = generate(policy, batch, RolloutConfig(max_new_tokens=8, temperature=temperature), generator=gen)
    expected = fresh_logprobs(policy, batch, out, temperature)
    mask = out.completion_mask.bool()
    torch.testing.assert_close(out.logprobs[mask], expected[mask], atol=1e-5, rtol=0)
    # Samples of one prompt differ (the shared cache is not collapsing them into one).
    assert len({tuple(r) for r in out.completion_ids[:4].tolist()}) > 1


def test_never_samples_vision_tokens(policy, batch_rows):
    batch = PromptEncoder(policy.processor, 56 * 56, 112 * 112)(batch_rows, group_size=8)
    # Make vision placeholders the most likely tokens: they must still never be sampled.
    head = policy.core.lm_head.weight
    saved = head.data.clone()
    try:
        head.data[list(policy.banned_token_ids)] = head.data.abs().max() * 50
        out = generate(policy, batch, RolloutConfig(max_new_tokens=6), generator=torch.Generator().manual_seed(0))
    finally:
        head.data.copy_(saved)
    assert not torch.isin(out.completion_ids, torch.tensor(policy.banned_token_ids)).any()


def test_masks_end_at_eos(policy, batch_rows):
    batch = PromptEncoder(policy.processor, 56 * 56, 112 * 112)(batch_rows, group_size=8)
    out = generate(policy, batch, RolloutConfig(max_new_tokens=8), generator=torch.Generator().manual_seed(1))
    eos = torch.tensor(policy.eos_token_ids)
    for ids, mask, finished in zip(out.completion_ids, out.completion_mask, out.finished, strict=True):
        n = int(mask.sum())
        hits = torch.isin(ids[:n], eos).nonzero()
        if finished:
            assert hits.numel() == 1 and int(hits[0]) == n - 1  # EOS is the last kept token
        else:
            assert hits.numel() == 0 and n == 8
        assert (ids[n:] == policy.pad_token_id).all()


def test_seeded_samples_do_not_depend_on_the_rest_of_the_batch(policy, batch_rows):
    """With a seed per prompt, a prompt's G samples are the same alone or batched with others (as data-parallel
    ranks split a step's prompts), and a different seed gives different samples."""
    encode = PromptEncoder(policy.processor, 56 * 56, 112 * 112)
    cfg = RolloutConfig(max_new_tokens=6)
    seeds = [prompt_seed(0, 3, j) for j in range(len(batch_rows))]
    together = generate(policy, encode(batch_rows, group_size=4), cfg, seeds=seeds)
    G = 4
    for start in (0, 4):  # two colour prompts, then two count prompts, each pair alone
        part = generate(policy, encode(batch_rows[start:start + 2], group_size=G), cfg, seeds=seeds[start:start + 2])
        assert torch.equal(part.completion_ids, together.completion_ids[start * G:(start + 2) * G])
        torch.testing.assert_close(part.logprobs, together.logprobs[start * G:(start + 2) * G], atol=1e-5, rtol=0)
    other = generate(policy, encode(batch_rows[:2], group_size=G), cfg, seeds=[s + 1 for s in seeds[:2]])
    assert not torch.equal(other.completion_ids, together.completion_ids[:2 * G])
