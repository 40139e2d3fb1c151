"""The `engine` rollout backend on the tiny model (fp32, CPU): against transformers `generate` (greedy), against
`cached` (the same seeds sample the same tokens), against a fresh forward (behaviour log-probs), with and without
compaction, with stop strings and with EOS. The batch mixes image and text-only prompts of several lengths,
so prompts are left-padded."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from data_pipelines.synthetic.shapes import shape_rows
from vlrl.config import ModelConfig, RolloutConfig
from vlrl.data import PromptEncoder, validate_row
from vlrl.models.policy import load_policy
from vlrl.rollout import generate
from vlrl.rollout.engine import _prefill, decode_step, generate_engine
from vlrl.rollout.sampling import prompt_seed
from vlrl.rollout.static_cache import DecodeState


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return load_policy(ModelConfig(), tiny_model_dir)


@pytest.fixture(scope="module")
def batch(policy):
    """Six prompts: a 56px and a 112px image (4 and 16 image tokens), two text-only, one with a longer text."""
    colour = shape_rows("colour", 2, seed=2, split="test")
    count = shape_rows("count", 2, seed=2, split="test", image_size=112)
    text_only = [dict(r, images=[]) for r in shape_rows("count", 2, seed=3, split="test")]
    text_only[1]["problem"] = "how many shapes are there ? what colour is the shape ?"
    colour[1]["problem"] = "what colour is the shape ? is it red or blue ?"
    rows = [validate_row(r, i) for i, r in enumerate(colour + count + text_only)]
    return PromptEncoder(policy.processor, 56 * 56, 112 * 112)(rows, group_size=4)


def test_batch_is_mixed_and_left_padded(batch):
    """The premise of the other tests: image and text-only prompts, several lengths, left padding."""
    lengths = batch.attention_mask.sum(1)
    assert batch.images_per_prompt == [1, 1, 1, 1, 0, 0]
    assert len(set(lengths.tolist())) >= 4
    assert (batch.attention_mask[:, 0] == 0).sum() >= 4 and (batch.attention_mask[:, -1] == 1).all()


def test_greedy_engine_equals_reference(policy, batch):
    cfg = RolloutConfig(max_new_tokens=10)
    engine = generate(policy, batch, dataclasses.replace(cfg, backend="engine"), greedy=True)
    ref = generate(policy, batch, dataclasses.replace(cfg, backend="reference"), greedy=True)
    assert torch.equal(engine.completion_ids, ref.completion_ids)
    assert torch.equal(engine.completion_mask, ref.completion_mask)
    assert torch.equal(engine.finished, ref.finished) and engine.texts == ref.texts
    torch.testing.assert_close(engine.logprobs, ref.logprobs, atol=1e-5, rtol=0)
    assert len({tuple(r) for r in engine.completion_ids.tolist()}) > 2  # prompts do differ


@pytest.mark.parametrize("sampling", [dict(temperature=1.0), dict(temperature=0.7, top_k=12, top_p=0.9)])
def test_seeded_engine_samples_what_cached_samples(policy, batch, sampling, fresh_logprobs):
    cfg = RolloutConfig(max_new_tokens=12, **sampling)
    seeds = [prompt_seed(5, 0, j) for j in range(batch.num_prompts)]
    cached = generate(policy, batch, cfg, seeds=seeds)
    engine = generate(policy, batch, dataclasses.replace(cfg, backend="engine"), seeds=seeds)
    assert torch.equal(engine.completion_ids, cached.completion_ids)
    assert torch.equal(engine.completion_mask, cached.completion_mask)
    torch.testing.assert_close(engine.logprobs, cached.logprobs, atol=1e-5, rtol=0)
    # Behaviour log-probs are those of a fresh forward over prompt + completion.
    mask = engine.completion_mask.bool()
    expected = fresh_logprobs(policy, batch, engine, cfg.temperature)
    torch.testing.assert_close(engine.logprobs[mask], expected[mask], atol=1e-5, rtol=0)
    assert len({tuple(r) for r in engine.completion_ids[:4].tolist()}) > 1  # the group's samples differ


def test_compaction_changes_nothing(policy, batch, monkeypatch):
    """Rows leave the batch as they finish (24 rows -> buckets 16, 8, ...); outputs equal the uncompacted run,
    seeded and with a generator."""
    compactions = []
    real = DecodeState.compact
    monkeypatch.setattr(DecodeState, "compact", lambda self, sel: (compactions.append(len(sel)), real(self, sel)))
    cfg = RolloutConfig(max_new_tokens=24)
    seeds = [prompt_seed(1, 2, j) for j in range(batch.num_prompts)]
    for randomness in (lambda: dict(seeds=seeds), lambda: dict(generator=torch.Generator().manual_seed(7))):
        on = generate_engine(policy, batch, cfg, compact=True, **randomness())
        off = generate_engine(policy, batch, cfg, compact=False, **randomness())
        assert torch.equal(on.completion_ids, off.completion_ids) and on.texts == off.texts
        torch.testing.assert_close(on.logprobs, off.logprobs, atol=1e-6, rtol=0)
    assert len(compactions) >= 2 and all(n < 24 for n in compactions)


def _words(policy, ids: list[int]) -> list[str]:
    """The tiny tokenizer is word-level: a completion's text is its non-special tokens' words joined by spaces."""
    special = set(policy.tokenizer.all_special_ids)
    return [policy.tokenizer.convert_ids_to_tokens(i) for i in ids if i not in special]


def _expected_stop(policy, ids: list[int], stop: str) -> int:
    """Tokens kept when `stop` ends the completion `ids` (0 = it never appears), found on the word list."""
    special, words = set(policy.tokenizer.all_special_ids), []
    for k, i in enumerate(ids):
        if i in policy.eos_token_ids:
            return 0
        if i not in special:
            words.append(policy.tokenizer.convert_ids_to_tokens(i))
        if stop in " ".join(words):
            return k + 1
    return 0


@pytest.mark.parametrize("backend", ["engine", "cached"])
def test_stop_strings_cut_completions(policy, batch, backend):
    cfg = RolloutConfig(max_new_tokens=12, backend=backend)
    seeds = [prompt_seed(9, 0, j) for j in range(batch.num_prompts)]
    free = generate(policy, batch, cfg, seeds=seeds)
    # A one-word stop that some completions contain mid-way, and a two-word one spanning two tokens.
    words = [_words(policy, r[:n]) for r, n in zip(free.completion_ids.tolist(), free.lengths.tolist(), strict=True)]
    vocab = [w for w in policy.tokenizer.get_vocab() if w.isalpha()]
    unique = [w for ws in words for w in ws[1:-1] if sum(w in v for v in vocab) == 1]
    bigrams = [f"{a} {b}" for ws in words for a, b in zip(ws, ws[1:], strict=False) if a.isalpha() and b.isalpha()]
    for stop in (max(set(unique), key=unique.count), bigrams[0]):
        out = generate(policy, batch, dataclasses.replace(cfg, stop=[stop]), seeds=seeds)
        cut = 0
        for i, ids in enumerate(free.completion_ids.tolist()):
            keep = _expected_stop(policy, ids[:int(free.lengths[i])], stop) or int(free.lengths[i])
            cut += keep < int(free.lengths[i])
            assert int(out.lengths[i]) == keep
            assert out.completion_ids[i, :keep].tolist() == ids[:keep]
            assert (out.completion_ids[i, keep:] == policy.pad_token_id).all() and (out.logprobs[i, keep:] == 0).all()
            torch.testing.assert_close(out.logprobs[i, :keep], free.logprobs[i, :keep], atol=1e-5, rtol=0)
            if stop in free.texts[i]:
                assert out.texts[i].endswith(stop) and bool(out.finished[i])
                assert free.texts[i].startswith(out.texts[i])
            else:
                assert out.texts[i] == free.texts[i]
        assert cut >= 1  # the stop string did end some completion early


def test_reference_applies_stop_strings_the_same_way(policy, batch):
    cfg = RolloutConfig(max_new_tokens=10, stop=["the", "red"])
    engine = generate(policy, batch, dataclasses.replace(cfg, backend="engine"), greedy=True)
    ref = generate(policy, batch, dataclasses.replace(cfg, backend="reference"), greedy=True)
    assert torch.equal(engine.completion_ids, ref.completion_ids) and engine.texts == ref.texts
    assert torch.equal(engine.finished, ref.finished)
    free = generate(policy, batch, dataclasses.replace(cfg, backend="engine", stop=[]), greedy=True)
    assert (engine.lengths < free.lengths).any()


def test_eos_ends_rows_and_decoding(policy, batch):
    """With EOS made likely, rows end at their first EOS (kept, then padding), decoding stops once all rows
    have, and the engine still matches `cached`; vision placeholders stay unsampled."""
    head = policy.core.lm_head.weight
    saved = head.data.clone()
    direction = torch.randn(head.shape[1], generator=torch.Generator().manual_seed(0))
    try:
        # The two EOS ids get opposite rows, so for any hidden state one of them is likely (rows end after
        # 1-9 tokens); vision placeholders are made the most likely tokens of all.
        head.data[policy.eos_token_ids[0]], head.data[policy.eos_token_ids[1]] = direction, -direction
        head.data[list(policy.banned_token_ids)] = head.data.abs().max() * 50
        cfg = RolloutConfig(max_new_tokens=40, backend="engine")
        seeds = [prompt_seed(3, 0, j) for j in range(batch.num_prompts)]
        out = generate(policy, batch, cfg, seeds=seeds)
        cached = generate(policy, batch, dataclasses.replace(cfg, backend="cached"), seeds=seeds)
    finally:
        head.data.copy_(saved)
    assert torch.equal(out.completion_ids, cached.completion_ids)
    # Log-probs are in the thousands here (the placeholders' huge logits), so compare relatively.
    torch.testing.assert_close(out.logprobs, cached.logprobs, atol=1e-5, rtol=1e-5)
    assert out.completion_ids.shape[1] < 40 and out.finished.all() and len(set(out.lengths.tolist())) > 2
    assert not torch.isin(out.completion_ids, torch.tensor(policy.banned_token_ids)).any()
    is_eos = torch.isin(out.completion_ids, torch.tensor(policy.eos_token_ids))
    for ids, mask, hits in zip(out.completion_ids, out.completion_mask, is_eos, strict=True):
        n = int(mask.sum())
        assert hits[:n].nonzero().flatten().tolist() == [n - 1]  # one EOS, the last kept token
        assert (ids[n:] == policy.pad_token_id).all()


def test_decode_step_reads_no_tensor_value_on_the_host(policy, batch):
    """CUDA graphs replay kernels only: a step that read a tensor on the host (`.item()`, a branch on a mask,
    `nonzero`) could not be captured. On the meta device tensors have shapes but no values, so the step running
    there end to end shows it never reads one. (No GPU here; tests/gpu captures it for real.)"""
    with torch.no_grad():
        state, _ = _prefill(policy, batch, max_new_tokens=4)
    to_meta = lambda v: [t.to("meta") for t in v] if isinstance(v, list) else v.to("meta")  # noqa: E731
    meta_state = DecodeState(**{f.name: to_meta(getattr(state, f.name)) for f in dataclasses.fields(state)})
    meta_policy = dataclasses.replace(policy, model=copy.deepcopy(policy.model).to("meta"))
    with torch.no_grad():
        logits = decode_step(meta_policy, meta_state, 16)
    assert logits.device.type == "meta" and logits.shape == (16, policy.lm_head.out_features)
