"""The `engine` backend on CUDA (tiny model, fp32): the decode step captured in CUDA graphs samples what the
eager step and the `cached` backend sample, through compaction to smaller buckets, and greedy decoding matches
transformers `generate`. Skipped where no CUDA device exists; run with `python -m pytest -q tests/gpu`."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from data_pipelines.synthetic.shapes import shape_rows
from vlrl.config import ModelConfig, RolloutConfig
from vlrl.data import PromptEncoder, validate_row
from vlrl.models.policy import load_policy
from vlrl.rollout import generate
from vlrl.rollout.engine import StepRunner
from vlrl.rollout.sampling import prompt_seed


@pytest.mark.gpu
def test_cuda_graph_engine_matches_eager_cached_and_reference(tiny_model_dir, monkeypatch):
    policy = load_policy(ModelConfig(), tiny_model_dir, device="cuda")
    raw = shape_rows("colour", 2, seed=2, split="test") + shape_rows("count", 2, seed=2, split="test", image_size=112)
    raw += [dict(r, images=[]) for r in shape_rows("count", 2, seed=3, split="test")]
    batch = PromptEncoder(policy.processor, 56 * 56, 112 * 112)([validate_row(r, i) for i, r in enumerate(raw)], 8)
    captured = []
    real_capture = StepRunner._capture
    monkeypatch.setattr(StepRunner, "_capture", lambda self, b: (captured.append(b), real_capture(self, b)))

    cfg = RolloutConfig(max_new_tokens=32, backend="engine")
    seeds = [prompt_seed(4, 0, j) for j in range(batch.num_prompts)]
    graphs = generate(policy, batch, cfg, seeds=seeds)
    eager = generate(policy, batch, dataclasses.replace(cfg, cuda_graphs=False), seeds=seeds)
    cached = generate(policy, batch, dataclasses.replace(cfg, backend="cached"), seeds=seeds)
    assert captured[0] == 48 and len(captured) >= 2  # the full batch, then smaller buckets after compaction
    for other in (eager, cached):
        assert torch.equal(graphs.completion_ids, other.completion_ids)
        torch.testing.assert_close(graphs.logprobs, other.logprobs, atol=1e-5, rtol=0)

    greedy = generate(policy, batch, dataclasses.replace(cfg, max_new_tokens=12), greedy=True)
    ref = generate(policy, batch, RolloutConfig(max_new_tokens=12, backend="reference"), greedy=True)
    assert torch.equal(greedy.completion_ids, ref.completion_ids)
    torch.testing.assert_close(greedy.logprobs, ref.logprobs, atol=1e-5, rtol=0)
