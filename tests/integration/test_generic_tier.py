"""The generic tier (`vlrl.models.generic`): architectures outside the Qwen-VL families — LLaVA and Gemma 3, tiny
random checkpoints built straight from transformers' classes (`tests/generic_models.py`) — through vlrl's update,
rollout and trainer, against transformers' own forward and `generate` run one prompt at a time, fp32 on CPU.

The batch mixes image prompts of different sizes, a two-image prompt and text-only prompts of different lengths,
so the prompts differ in length; the reference is `model(**processor(prompt))` on each sequence alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from vlrl.config import AlgorithmConfig, Config, ModelConfig, RolloutConfig
from vlrl.config_loader import load_config
from vlrl.data import PromptEncoder
from vlrl.data.prompts import build_messages
from vlrl.models.check import ModelPathError, check_model_path
from vlrl.models.policy import load_policy
from vlrl.rollout import generate
from vlrl.rollout.types import Rollouts
from vlrl.trainer import Trainer
from vlrl.update import CompletionForward, batch_logprobs, micro_batches

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from generic_models import ARCHITECTURES, build  # noqa: E402
from mixed_batch import mixed_rows, random_rollouts  # noqa: E402

G, T = 2, 5


@pytest.fixture(scope="module", params=ARCHITECTURES)
def checkpoint(request, tmp_path_factory):
    return request.param, build(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def policy(checkpoint):
    arch, path = checkpoint
    assert check_model_path(path).generic
    policy = load_policy(ModelConfig(dtype="float32"), path)
    assert policy.generic and policy.core.config.model_type == arch
    return policy


def _batch(policy, group_size: int = G):
    return PromptEncoder(policy.processor, 0, 0, generic=True)(mixed_rows(), group_size=group_size)


def _processor_inputs(policy, row):
    """transformers' processor on one row, as a user of transformers would call it."""
    text = policy.processor.apply_chat_template(build_messages(row), tokenize=False, add_generation_prompt=True)
    return policy.processor(text=[text], images=row.images or None, return_tensors="pt")


def _rollouts(policy, num_prompts: int) -> Rollouts:
    return random_rollouts(policy, num_prompts, G, T)


def _reference_logprobs(policy, batch, rollouts, temperature: float) -> torch.Tensor:
    """[N, T] log-probs of each completion from transformers' forward, one sequence at a time (0 where masked)."""
    out = torch.zeros(rollouts.completion_ids.shape)
    for r in range(rollouts.completion_ids.shape[0]):
        enc = _processor_inputs(policy, batch.rows[r // G])
        n = int(rollouts.completion_mask[r].sum())
        completion = rollouts.completion_ids[r, :n].unsqueeze(0)
        L = enc["input_ids"].shape[1]
        kwargs = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask", "token_type_ids")}
        if "token_type_ids" in enc:  # Gemma 3: 1 at image tokens; the completion is text
            kwargs["token_type_ids"] = torch.cat([enc["token_type_ids"], torch.zeros_like(completion)], 1)
        with torch.no_grad():
            logits = policy.core(input_ids=torch.cat([enc["input_ids"], completion], 1),
                                 attention_mask=torch.ones(1, L + n, dtype=torch.long), **kwargs).logits[0].float()
        logp = (logits[L - 1:L - 1 + n] / temperature).log_softmax(-1)
        out[r, :n] = logp.gather(-1, completion[0].unsqueeze(-1)).squeeze(-1)
    return out


def test_each_prompt_keeps_the_processors_own_outputs(policy):
    batch = _batch(policy)
    assert batch.images_per_prompt == [1, 0, 1, 2, 0]
    lengths = batch.attention_mask.sum(-1).tolist()
    assert len(set(lengths)) == len(lengths)  # all prompts differ in length: the batch is left-padded
    encoder = PromptEncoder(policy.processor, 0, 0, generic=True)
    sizes = [[im.size for im in row.images] for row in batch.rows]
    assert encoder.prompt_lengths([row.problem for row in batch.rows], sizes) == lengths
    for p, row in enumerate(batch.rows):
        enc = _processor_inputs(policy, row)
        assert set(batch.prompt_inputs[p]) == set(enc)
        for key, value in enc.items():
            torch.testing.assert_close(batch.prompt_inputs[p][key], value, rtol=0, atol=0, msg=key)
        assert batch.input_ids[p][batch.attention_mask[p].bool()].tolist() == enc["input_ids"][0].tolist()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_equal_transformers_forward(policy, temperature):
    batch = _batch(policy)
    rollouts = _rollouts(policy, batch.num_prompts)
    rows = torch.arange(batch.num_prompts * G)
    chunks = micro_batches(batch, rollouts, rows, 3)  # micro-batches that split groups and mix prompts
    assert any(len(seqs.groups) > 1 for _, seqs in chunks)
    with torch.no_grad():
        ours = batch_logprobs(policy, CompletionForward(policy.model), chunks, temperature, AlgorithmConfig())
    expected = _reference_logprobs(policy, batch, rollouts, temperature)
    mask = rollouts.completion_mask.bool()
    torch.testing.assert_close(ours[mask], expected[mask], atol=1e-5, rtol=0)
    assert expected[mask].std() > 0.1  # the model's output is not degenerate


def test_images_move_the_logprobs(policy):
    """The comparison above would pass if both sides dropped the images: they must change the output."""
    batch = _batch(policy, group_size=1)
    rollouts = Rollouts(torch.full((batch.num_prompts, 1), 20), torch.ones(batch.num_prompts, 1, dtype=torch.long),
                        torch.zeros(batch.num_prompts, 1), [""] * batch.num_prompts,
                        torch.ones(batch.num_prompts, dtype=torch.bool), 1)
    [(_, seqs)] = micro_batches(batch, rollouts, torch.tensor([0]), 1)
    _, prompt = seqs.groups[0]
    with torch.no_grad():
        with_image = policy.completion_logprobs(prompt, seqs.targets, seqs.mask)[0]
        other = dict(prompt, pixel_values=prompt["pixel_values"].flip(-1))
        flipped = policy.completion_logprobs(other, seqs.targets, seqs.mask)[0]
    assert (with_image - flipped).abs().max() > 1e-3


def test_the_update_gives_the_sequence_by_sequence_gradients(policy):
    """Entropy and gradients of a micro-batch mixing prompts equal those of each row run alone."""
    batch = _batch(policy)
    rollouts = _rollouts(policy, batch.num_prompts)
    rows = torch.arange(batch.num_prompts * G)
    forward = CompletionForward(policy.model)

    def grads(size):
        policy.model.zero_grad(set_to_none=True)
        for _, seqs in micro_batches(batch, rollouts, rows, size):
            logp, entropy = forward(policy, seqs, temperature=0.8, with_entropy=True)
            ((logp * seqs.mask).sum() + 0.1 * (entropy * seqs.mask).sum()).backward()
        return {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.grad is not None}

    together, alone = grads(4), grads(1)
    policy.model.zero_grad(set_to_none=True)
    assert set(together) == set(alone)
    assert any("vision" in n for n in together) and any("projector" in n for n in together)
    for name, grad in alone.items():
        torch.testing.assert_close(together[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_greedy_rollout_equals_generate(policy):
    batch = _batch(policy, group_size=1)
    with torch.no_grad():
        ours = generate(policy, batch, RolloutConfig(backend="reference", max_new_tokens=6), greedy=True)
    for p, row in enumerate(batch.rows):
        enc = _processor_inputs(policy, row)
        with torch.no_grad():
            out = policy.core.generate(**enc, max_new_tokens=6, do_sample=False,
                                       suppress_tokens=list(policy.banned_token_ids),
                                       eos_token_id=list(policy.eos_token_ids), pad_token_id=policy.pad_token_id)
        expected = out[0, enc["input_ids"].shape[1]:].tolist()
        n = int(ours.completion_mask[p].sum())
        assert ours.completion_ids[p, :n].tolist() == expected[:n] and n == len(expected), row.id


def test_sampled_rollout_logprobs_are_the_updates(policy):
    """Behaviour log-probs of sampled completions equal the update's recomputation (on-policy ratio 1), and each
    prompt's samples depend on its own seed only."""
    batch = _batch(policy)
    cfg = RolloutConfig(backend="reference", max_new_tokens=T, temperature=0.9)
    seeds = [11, 12, 13, 14, 15]
    with torch.no_grad():
        rollouts = generate(policy, batch, cfg, seeds=seeds)
        again = generate(policy, _batch(policy), cfg, seeds=[99, 12, 98, 97, 96])
        rows = torch.arange(len(rollouts.texts))
        chunks = micro_batches(batch, rollouts, rows, 4)
        logp = batch_logprobs(policy, CompletionForward(policy.model), chunks, cfg.temperature, AlgorithmConfig())
    mask = rollouts.completion_mask.bool()
    torch.testing.assert_close(logp[mask], rollouts.logprobs[mask], atol=1e-5, rtol=0)
    assert rollouts.completion_ids[G:2 * G].tolist() == again.completion_ids[G:2 * G, :rollouts.completion_ids.shape[1]].tolist()


def test_chat_answers_with_the_greedy_rollout(policy):
    """`vlrl serve`'s engine routes a generic-tier model to the reference backend (its default is `cached`)."""
    from vlrl.chat import ChatEngine, SamplingParams

    row = mixed_rows()[0]
    engine = ChatEngine(policy, 0, 0, max_new_tokens=6)
    reply = engine.complete(build_messages(row), list(row.images), SamplingParams(max_tokens=6))
    batch = PromptEncoder(policy.processor, 0, 0, generic=True)([row], group_size=1)
    expected = generate(policy, batch, RolloutConfig(backend="reference", max_new_tokens=6), greedy=True)
    assert reply.completions[0].text == expected.texts[0]
    assert reply.prompt_tokens == int(batch.attention_mask.sum())


def test_the_fast_paths_are_refused_naming_the_reference_backend(policy):
    batch = _batch(policy, group_size=1)
    for backend in ("cached", "engine"):
        with pytest.raises(ValueError, match="set rollout.backend=reference"):
            generate(policy, batch, RolloutConfig(backend=backend, max_new_tokens=2), greedy=True)
    rollouts = _rollouts(policy, batch.num_prompts)
    with pytest.raises(ValueError, match="set algorithm.shared_prompt=false"):
        micro_batches(batch, rollouts, torch.arange(2), 2, shared_prompt=True)


def _config(model_dir, data_dir, out_dir, *overrides: str) -> Config:
    # The checkpoints' word-level tokenizer lacks most of the shapes data's words: trained on as they are.
    return load_config(Config, None, [
        f"model.path={model_dir}", f"data.path={data_dir}", f"trainer.output_dir={out_dir}", "model.dtype=float32",
        "data.prompts_per_step=2", "rollout.group_size=3", "rollout.max_new_tokens=4", "trainer.eval_every=2",
        "trainer.progress_bar=false", "trainer.device=cpu", "data.max_eval_rows=4", "optim.warmup_steps=0",
        "data.source_weights={}", "data.unknown_tokens=ignore", "optim.lr=0.05", "trainer.total_steps=2",
        *overrides,
    ])


def test_training_runs_and_moves_the_parameters(checkpoint, shapes_dir, tmp_path):
    arch, model_dir = checkpoint
    run = tmp_path / "run"
    trainer = Trainer(_config(model_dir, shapes_dir, run, "rollout.backend=reference", "algorithm.shared_prompt=false",
                              "algorithm.kl_coef=0.05"))
    assert trainer.policy.generic
    before = {n: p.detach().clone() for n, p in trainer.policy.core.named_parameters()}
    last_eval = trainer.fit()
    moved = {n for n, p in trainer.policy.core.named_parameters() if not torch.equal(p, before[n])}
    assert any("language_model" in n for n in moved) and any("vision" in n for n in moved), arch
    assert "eval/accuracy" in last_eval
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if "loss/loss" in m] == [1, 2]
    assert all(m.get("loss/kl", 0.0) == m.get("loss/kl", 0.0) for m in lines)  # no NaN
    # The final checkpoint reloads as the same architecture.
    assert load_policy(ModelConfig(dtype="float32"), run / "final").core.config.model_type == arch


def test_what_the_generic_tier_does_not_do_is_refused_at_start_up(checkpoint, shapes_dir, tmp_path):
    _, model_dir = checkpoint
    with pytest.raises(ValueError) as info:
        Trainer(_config(model_dir, shapes_dir, tmp_path / "run", "model.freeze_vision=true"))
    message = str(info.value)
    assert "generic tier" in message
    for fix in ("rollout.backend=reference", "algorithm.shared_prompt=false", "model.freeze_vision=false"):
        assert fix in message
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before anything is written or loaded


@pytest.mark.parametrize("config,kind", [
    ({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, "a text-only model"),
    ({"model_type": "clip", "architectures": ["CLIPModel"], "vision_config": {}, "text_config": {}},
     "a vision-language model"),
])
def test_an_unsupported_model_is_refused_naming_families_and_the_generic_tier(tmp_path, config, kind):
    path = tmp_path / "model"
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelPathError) as info:
        check_model_path(path)
    message = str(info.value)
    assert f"model_type {config['model_type']!r}" in message and kind in message
    for name in ("qwen2_vl (Qwen2-VL)", "qwen2_5_vl (Qwen2.5-VL)", "qwen3_vl (Qwen3-VL)", "generic tier",
                 "AutoModelForImageTextToText"):
        assert name in message


def test_min_new_tokens_is_generates_own(policy):
    """rollout.min_new_tokens on the generic tier: with EOS made likely (its output row a long random direction,
    so it wins for about half of all hidden states), greedy completions end early without the minimum, hold at
    least N tokens with it, and equal transformers' generate(min_new_tokens=N) on each prompt alone."""
    n_min, t_max = 3, 8
    batch = _batch(policy, group_size=1)
    head = policy.lm_head.weight
    saved = head.data.clone()
    eos = policy.eos_token_ids[0]
    direction = torch.randn(head.shape[1], generator=torch.Generator().manual_seed(0))
    try:
        head.data[eos] = direction / direction.norm() * head.data.norm(dim=1).max() * 8
        with torch.no_grad():
            cfg = RolloutConfig(backend="reference", max_new_tokens=t_max)
            free = generate(policy, batch, cfg, greedy=True)
            ours = generate(policy, batch, RolloutConfig(backend="reference", max_new_tokens=t_max,
                                                         min_new_tokens=n_min), greedy=True)
            expected = []
            for row in batch.rows:
                enc = _processor_inputs(policy, row)
                out = policy.core.generate(**enc, max_new_tokens=t_max, min_new_tokens=n_min, do_sample=False,
                                           suppress_tokens=list(policy.banned_token_ids),
                                           eos_token_id=list(policy.eos_token_ids), pad_token_id=policy.pad_token_id)
                expected.append(out[0, enc["input_ids"].shape[1]:].tolist())
    finally:
        head.data.copy_(saved)
    assert (free.lengths < n_min).any()  # the premise: EOS comes early without a minimum
    assert (ours.lengths >= n_min).all() and ours.finished.any(), ours.lengths.tolist()
    for p, want in enumerate(expected):
        n = int(ours.completion_mask[p].sum())
        assert ours.completion_ids[p, :n].tolist() == want and n == len(want), batch.rows[p].id
