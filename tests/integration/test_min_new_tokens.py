"""rollout.min_new_tokens on every rollout backend (tiny model, fp32, CPU): no completion ends before it, and
greedy decoding with it equals transformers' own `generate(..., min_new_tokens=N)` on the same model.

The tiny model's two EOS rows of the LM head are set to opposite directions, so for any hidden state one of them
is likely and completions end after a few tokens: without the minimum many are shorter than it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from data_pipelines.synthetic.shapes import shape_rows
from vlrl.config import ModelConfig, RolloutConfig
from vlrl.data import PromptEncoder, validate_row
from vlrl.models.policy import load_policy
from vlrl.rollout import generate
from vlrl.rollout.sampling import prompt_seed

N, T = 5, 12


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    policy = load_policy(ModelConfig(), tiny_model_dir)  # this module's own copy: its head is changed
    head = policy.core.lm_head.weight
    direction = torch.randn(head.shape[1], generator=torch.Generator().manual_seed(0))
    head.data[policy.eos_token_ids[0]], head.data[policy.eos_token_ids[1]] = direction, -direction
    return policy


@pytest.fixture(scope="module")
def batch(policy):
    """Four prompts: two with images of different sizes, two text-only (left padding differs)."""
    colour = shape_rows("colour", 1, seed=2, split="test")
    count = shape_rows("count", 1, seed=2, split="test", image_size=112)
    text_only = [dict(r, images=[]) for r in shape_rows("count", 2, seed=3, split="test")]
    rows = [validate_row(r, i) for i, r in enumerate(colour + count + text_only)]
    return PromptEncoder(policy.processor, 56 * 56, 112 * 112)(rows, group_size=3)


@pytest.mark.parametrize("backend", ["cached", "engine", "reference"])
@pytest.mark.parametrize("greedy", [True, False])
def test_no_completion_ends_before_min_new_tokens(policy, batch, backend, greedy):
    cfg = RolloutConfig(backend=backend, max_new_tokens=T)
    seeds = [prompt_seed(1, 0, j) for j in range(batch.num_prompts)]
    free = generate(policy, batch, cfg, greedy=greedy, seeds=seeds)
    assert (free.lengths < N).any() and free.finished.any()  # the premise: EOS comes early without a minimum
    out = generate(policy, batch, dataclasses.replace(cfg, min_new_tokens=N), greedy=greedy, seeds=seeds)
    assert (out.lengths >= N).all(), out.lengths.tolist()
    eos = torch.isin(out.completion_ids[:, :N - 1], torch.tensor(policy.eos_token_ids))
    assert not eos.any()
    assert out.finished.any()  # EOS is still sampled after the minimum


def test_greedy_with_min_new_tokens_equals_transformers_generate(policy, batch):
    """cached and engine against transformers' generate(min_new_tokens=N) on the same prompts (one copy each)."""
    one = dataclasses.replace(batch, group_size=1)
    with torch.no_grad():
        out = policy.core.generate(
            input_ids=one.input_ids, attention_mask=one.attention_mask, mm_token_type_ids=one.mm_token_type_ids,
            pixel_values=one.pixel_values, image_grid_thw=one.image_grid_thw, max_new_tokens=T, min_new_tokens=N,
            do_sample=False, suppress_tokens=list(policy.banned_token_ids), eos_token_id=list(policy.eos_token_ids),
            pad_token_id=policy.pad_token_id)
    expected = out[:, one.input_ids.shape[1]:]
    for backend in ("cached", "engine"):
        ours = generate(policy, one, RolloutConfig(backend=backend, max_new_tokens=T, min_new_tokens=N), greedy=True)
        for p in range(one.num_prompts):
            n = int(ours.completion_mask[p].sum())
            want = expected[p].tolist()
            if policy.pad_token_id in want:  # transformers pads a row that finished before the others
                want = want[:want.index(policy.pad_token_id)]
            assert ours.completion_ids[p, :n].tolist() == want[:n] and n >= N, (backend, p)
            assert n == len(want) or (n == T and len(want) >= T), (backend, p)
