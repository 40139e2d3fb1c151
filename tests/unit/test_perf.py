"""Model-FLOPs accounting of the update (vlrl.perf), against counts from the model's config."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from vlrl.config import ModelConfig
from vlrl.models.policy import load_policy
from vlrl.perf import layer_params, peak_tflops, update_flops


def test_update_flops_count_layer_tokens_and_head_on_completions(tiny_model_dir):
    policy = load_policy(ModelConfig(path=str(tiny_model_dir)), tiny_model_dir)
    c = policy.core.config.text_config
    H, inter, n_layers, V = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
    kv = c.num_key_value_heads * (H // c.num_attention_heads)
    # Per layer: q (H*H + H bias), k and v (H*kv + kv bias each), o (H*H), gate/up/down (3*H*inter), 2 RMSNorms (H).
    per_layer = (H * H + H) + 2 * (H * kv + kv) + H * H + 3 * H * inter + 2 * H
    body, head = layer_params(policy)
    assert body == n_layers * per_layer + H  # + the final norm
    assert head == H * V

    whole = SimpleNamespace(input_ids=torch.zeros(4, 10), targets=torch.zeros(4, 3))  # 4 rows of 7 + 3 tokens
    shared = SimpleNamespace(prompt_ids=torch.zeros(2, 7), targets=torch.zeros(4, 3))  # 2 prompts, 4 rows
    filler = SimpleNamespace(input_ids=torch.zeros(1, 10), targets=torch.zeros(1, 3))
    chunks = [(torch.arange(4), whole), (torch.arange(4), shared), (torch.zeros(0), filler)]
    expected = 6 * 2 * (body * (40 + (14 + 8)) + head * (12 + 12))  # 2 updates; the filler counts nothing
    assert update_flops(policy, chunks, updates=2) == expected


def test_peak_is_unknown_on_cpu():
    assert peak_tflops(torch.device("cpu")) is None
