"""LoRA through peft on the tiny model: what trains, what stays, the reference without a second model, the
adapter checkpoint and its merged export."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from vlrl.config import AlgorithmConfig, ModelConfig
from vlrl.models.policy import load_policy
from vlrl.trainer import Trainer
from vlrl.update import CompletionForward, batch_logprobs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trainer_chunks import sample_chunks  # noqa: E402

LORA = ("model.lora_rank=4", "model.lora_alpha=8", "trainer.total_steps=1", "optim.lr=0.05")


def _all_params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _logprobs(policy, forward, chunks) -> torch.Tensor:
    return batch_logprobs(policy, forward, chunks, 1.0, AlgorithmConfig())


def test_lora_trains_only_adapters_and_merger(tiny_config):
    trainer = Trainer(tiny_config(*LORA))
    core = trainer.policy.core
    before = _all_params(core)
    trainable = {n for n, p in core.named_parameters() if p.requires_grad}
    # 2 language layers x 7 projections x (A, B), and peft's trainable copy of the merger; nothing else.
    lora = {n for n in trainable if ".lora_A." in n or ".lora_B." in n}
    assert len(lora) == 2 * 7 * 2 and all(".language_model.layers." in n for n in lora)
    assert {n for n in trainable - lora} and all("merger.modules_to_save." in n for n in trainable - lora)
    trainer.fit()
    after = _all_params(core)
    for name, value in after.items():
        if name not in trainable:
            assert torch.equal(value, before[name]), f"frozen {name} changed"
    moved = {n: (after[n] - before[n]).abs().max().item() for n in trainable}
    assert min(v for n, v in moved.items() if ".lora_B." in n) > 0  # B starts at zero: every adapter moved
    assert max(v for n, v in moved.items() if "merger" in n) > 1e-3


def test_lora_vision_and_frozen_merger_targets(tiny_model_dir):
    policy = load_policy(ModelConfig(lora_rank=2, lora_vision=True, freeze_merger=True,
                                     lora_target_modules=["q_proj", "v_proj"]), tiny_model_dir)
    trainable = [n for n, p in policy.core.named_parameters() if p.requires_grad]
    assert all(".lora_" in n for n in trainable)
    # 2 vision blocks x 5 projections and 2 language layers x 2, each with A and B; the merger not at all.
    assert sum(".visual.blocks." in n for n in trainable) == 2 * 5 * 2
    assert sum(".language_model." in n for n in trainable) == 2 * 2 * 2
    assert not any("merger" in n for n in trainable)


def test_reference_is_the_base_model_and_export_merges(tiny_config, tiny_model_dir, tmp_path):
    """After an update (adapters and merger moved), the KL reference - the policy with its adapters off - gives
    the log-probs of the base model loaded on its own; the saved adapter, merged, gives the policy's."""
    trainer = Trainer(tiny_config(*LORA, "algorithm.kl_coef=0.05"))
    assert trainer.reference.model is None  # no second copy of the model
    trainer.fit()
    chunks = sample_chunks(trainer)
    with trainer.reference.use() as (policy, forward):
        ref = _logprobs(policy, forward, chunks)
    base = load_policy(ModelConfig(), tiny_model_dir)
    expected = _logprobs(base, CompletionForward(base.model), chunks)
    torch.testing.assert_close(ref, expected, rtol=0, atol=1e-5)
    current = _logprobs(trainer.policy, trainer.forward, chunks)
    assert (current - expected).abs().max() > 1e-3  # the trained adapter does change the policy

    from transformers import AutoModelForImageTextToText

    from vlrl.cli import main
    from vlrl.models.lora import is_adapter_checkpoint

    ckpt = tmp_path / "run" / "final"
    assert is_adapter_checkpoint(ckpt) and not (ckpt / "model.safetensors").exists()
    out = tmp_path / "merged"
    assert main(["export", str(ckpt), str(out)]) == 0
    merged = AutoModelForImageTextToText.from_pretrained(out)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    exported = load_policy(ModelConfig(), out)
    torch.testing.assert_close(_logprobs(exported, CompletionForward(exported.model), chunks), current,
                               rtol=0, atol=1e-5)
