"""Each supported family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) through vlrl's own path against transformers' own
forward and `generate`, on tiny random checkpoints built straight from transformers' classes
(`tests/family_models.py`, not vlrl's builders), fp32 on CPU.

The batch mixes one-image prompts of two sizes, a two-image prompt and text-only prompts, so prompts are
left-padded by different amounts; the reference runs each sequence alone, unpadded, through
`model(**processor(...))`: the processor's own resizing, the model's own positions (its `rope_deltas`), its own
image placement and, for Qwen3-VL, its own deepstack.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from vlrl.algorithms import policy_loss
from vlrl.config import AlgorithmConfig, ModelConfig, RolloutConfig
from vlrl.data import PromptEncoder
from vlrl.data.prompts import build_messages
from vlrl.models.policy import load_policy
from vlrl.rollout import generate
from vlrl.rollout.types import Rollouts
from vlrl.update import CompletionForward, batch_logprobs, micro_batches

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from family_models import FAMILIES, build  # noqa: E402
from mixed_batch import mixed_rows, random_rollouts  # noqa: E402

G, T = 2, 5
MIN_PIXELS, MAX_PIXELS = 32 * 32, 96 * 96


@pytest.fixture(scope="module", params=FAMILIES)
def checkpoint(request, tmp_path_factory):
    return request.param, build(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def policy(checkpoint):
    family, path = checkpoint
    policy = load_policy(ModelConfig(dtype="float32", freeze_vision=False), path)
    assert policy.model_type == family == policy.core.config.model_type
    return policy


def _batch(policy, group_size: int = G):
    batch = PromptEncoder(policy.processor, MIN_PIXELS, MAX_PIXELS)(mixed_rows(), group_size=group_size)
    policy.prompt_positions(batch)
    return batch


def _rollouts(policy, num_prompts: int) -> Rollouts:
    return random_rollouts(policy, num_prompts, G, T)


def _processor_inputs(policy, row, sizes=None):
    """transformers' processor on one row, as a user of transformers would call it. vlrl resizes images as
    qwen-vl-utils does (PIL bicubic) before the processor, whose own resize interpolates differently; given
    `sizes` (w, h per image) the images are resized so first, and the processor's resize is a no-op."""
    text = policy.processor.apply_chat_template(build_messages(row), tokenize=False, add_generation_prompt=True)
    images = [im if sizes is None else im.resize(size, Image.BICUBIC)
              for im, size in zip(row.images, sizes or [None] * len(row.images), strict=True)] or None
    return policy.processor(text=[text], images=images, return_tensors="pt",
                            images_kwargs={"size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}})


def _reference_logprobs(policy, batch, rollouts) -> torch.Tensor:
    """[N, T] log-probs of each completion from transformers' forward, one sequence at a time (0 where masked)."""
    out = torch.zeros(rollouts.completion_ids.shape)
    for r in range(rollouts.completion_ids.shape[0]):
        enc = _processor_inputs(policy, batch.rows[r // G], batch.resized_sizes[r // G])
        n = int(rollouts.completion_mask[r].sum())
        completion = rollouts.completion_ids[r, :n].unsqueeze(0)
        L = enc["input_ids"].shape[1]
        kwargs = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
        policy.core.model.rope_deltas = None
        with torch.no_grad():
            logits = policy.core(input_ids=torch.cat([enc["input_ids"], completion], 1),
                                 attention_mask=torch.ones(1, L + n, dtype=torch.long),
                                 mm_token_type_ids=torch.cat([enc["mm_token_type_ids"], torch.zeros_like(completion)], 1),
                                 **kwargs).logits[0].float()
        logp = logits[L - 1:L - 1 + n].log_softmax(-1)
        out[r, :n] = logp.gather(-1, completion[0].unsqueeze(-1)).squeeze(-1)
    return out


def test_encoded_prompts_are_the_processors(policy):
    batch = _batch(policy)
    for p, row in enumerate(batch.rows):
        enc = _processor_inputs(policy, row)
        ids = batch.input_ids[p][batch.attention_mask[p].bool()]
        assert ids.tolist() == enc["input_ids"][0].tolist(), row.id
        images = list(batch.prompt_images(p))
        if images:
            # The processor's own resize picks the same model-input size (so the same tokens and grid) ...
            assert batch.image_grid_thw[images].tolist() == enc["image_grid_thw"].tolist()
            # ... and on images resized to that size it gives the very patches vlrl passes on.
            resized = _processor_inputs(policy, row, batch.resized_sizes[p])
            torch.testing.assert_close(batch.select_images(images).pixel_values, resized["pixel_values"])
    patch = policy.core.config.vision_config.patch_size
    assert patch == (16 if policy.model_type.startswith("qwen3_vl") else 14)
    assert batch.images_per_prompt == [1, 0, 1, 2, 0]


@pytest.mark.parametrize("path", ["per_sequence", "shared_prompt", "reused_vision"])
def test_logprobs_equal_transformers_forward(policy, path):
    batch = _batch(policy)
    if path == "reused_vision":
        with torch.no_grad():
            batch.vision_states = policy.vision_states(batch.pixel_values, batch.image_grid_thw)
    rollouts = _rollouts(policy, batch.num_prompts)
    rows = torch.arange(batch.num_prompts * G)
    chunks = micro_batches(batch, rollouts, rows, 4, shared_prompt=path == "shared_prompt")
    with torch.no_grad():
        ours = batch_logprobs(policy, CompletionForward(policy.model), chunks, 1.0, AlgorithmConfig())
    expected = _reference_logprobs(policy, batch, rollouts)
    mask = rollouts.completion_mask.bool()
    torch.testing.assert_close(ours[mask], expected[mask], atol=1e-5, rtol=0)
    assert expected[mask].std() > 0.1  # the model's output is not degenerate


def test_deepstack_changes_the_output(policy):
    """The comparison above would not notice a family extra that does nothing: for Qwen3-VL, the deepstack
    features must move the logits (dropping them is what vlrl silently did before)."""
    if not policy.model_type.startswith("qwen3_vl"):
        pytest.skip("deepstack is Qwen3-VL's")
    batch = _batch(policy, group_size=1)
    with torch.no_grad():
        features = policy.image_features(batch.pixel_values, batch.image_grid_thw)
        assert len(features.deepstack) == len(policy.core.config.vision_config.deepstack_visual_indexes)
        with_ds, _ = policy.forward_tokens(batch.input_ids, features, batch.positions, batch.attention_mask)
        without = type(features)(features.embeds)
        no_ds, _ = policy.forward_tokens(batch.input_ids, without, batch.positions, batch.attention_mask)
    assert (with_ds[:, -1] - no_ds[:, -1]).abs().max() > 1e-2


@pytest.mark.parametrize("backend", ["cached", "engine", "reference"])
def test_greedy_rollout_equals_generate(policy, backend):
    batch = _batch(policy, group_size=1)
    cfg = RolloutConfig(backend=backend, max_new_tokens=6)
    with torch.no_grad():
        ours = generate(policy, batch, cfg, greedy=True)
    for p, row in enumerate(batch.rows):
        enc = _processor_inputs(policy, row, batch.resized_sizes[p])
        policy.core.model.rope_deltas = None
        with torch.no_grad():
            out = policy.core.generate(**enc, max_new_tokens=6, do_sample=False,
                                       suppress_tokens=list(policy.banned_token_ids),
                                       eos_token_id=list(policy.eos_token_ids), pad_token_id=policy.pad_token_id)
        expected = out[0, enc["input_ids"].shape[1]:].tolist()
        n = int(ours.completion_mask[p].sum())
        assert ours.completion_ids[p, :n].tolist() == expected[:n] and n == len(expected), (backend, row.id)


def _grads(policy, chunks, advantages, num_tokens: float) -> dict[str, torch.Tensor]:
    forward = CompletionForward(policy.model)
    policy.model.zero_grad(set_to_none=True)
    for mb, seqs in chunks:
        logp, entropy = forward(policy, seqs, chunk_size=8, with_entropy=True)
        old = logp.detach() - 0.1 * torch.linspace(-1, 1, logp.numel()).view_as(logp)
        loss, _ = policy_loss(logp, old, advantages[mb], seqs.mask, clip_low=0.2, clip_high=0.28,
                              aggregation="token_mean", ratio_level="token", entropy=entropy, entropy_coef=0.05,
                              num_tokens=num_tokens)
        loss.backward()
    return {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.grad is not None}


def test_shared_prompt_update_gives_the_per_sequence_gradients(policy):
    policy.model.train()
    batch = _batch(policy)
    rollouts = _rollouts(policy, batch.num_prompts)
    rows = torch.arange(batch.num_prompts * G)
    advantages = torch.linspace(-1.0, 1.0, len(rows))
    num_tokens = float(rollouts.completion_mask.sum())
    per_seq = _grads(policy, micro_batches(batch, rollouts, rows, 4), advantages, num_tokens)
    shared = _grads(policy, micro_batches(batch, rollouts, rows, 4, shared_prompt=True), advantages, num_tokens)
    policy.model.eval()
    assert set(per_seq) == set(shared)
    assert any(".visual.blocks." in n for n in shared) and any(".merger." in n for n in shared)
    if policy.model_type.startswith("qwen3_vl"):
        assert any(".deepstack_merger_list." in n for n in shared)
    for name, grad in per_seq.items():
        torch.testing.assert_close(shared[name], grad, atol=1e-6, rtol=1e-4, msg=name)
