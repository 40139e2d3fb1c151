"""The tiny model's rotary positions: every mRoPE axis turns by a usable angle per step."""

from __future__ import annotations

import math

import torch

from vlrl.models.families import FAMILIES
from vlrl.models.tiny import TINY_ROPE_THETA, TINY_TEXT, build_tiny_tokenizer


def test_every_mrope_axis_turns_at_least_half_a_radian_per_position():
    # head_dim 64 / 4 = 16 -> 8 rotary frequencies theta^(-i/8); mRoPE gives t, h, w the sections [2, 3, 3] in
    # that order, so the width axis gets i = 5, 6, 7. At theta 2 the slowest is 2^(-7/8) = 0.545 rad per column;
    # at Qwen's 1e6 it would be 1e6^(-7/8) = 5.6e-6 rad: no position signal across a 4-column image.
    from transformers import Qwen2_5_VLForConditionalGeneration

    tok = build_tiny_tokenizer(["red", "blue"])
    config = FAMILIES["qwen2_5_vl"].config(tok, dict(TINY_TEXT, vocab_size=len(tok)), dict(
        depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=64, fullatt_block_indexes=[0]))
    assert config.text_config.rope_parameters["rope_theta"] == TINY_ROPE_THETA == 2.0
    assert config.text_config.rope_parameters["mrope_section"] == [2, 3, 3]
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    inv_freq = model.model.language_model.rotary_emb.inv_freq
    expected = [2.0 ** (-i / 8) for i in range(8)]
    assert torch.allclose(inv_freq, torch.tensor(expected, dtype=inv_freq.dtype))
    width = inv_freq[5:]
    assert width.min().item() > 0.5 and math.isclose(width.min().item(), 2.0 ** (-7 / 8), rel_tol=1e-5)
