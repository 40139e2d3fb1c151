"""The tiny model: its rotary positions turn by a usable angle per step; each family's checkpoint reloads with
transformers' Auto classes and runs an image prompt."""

from __future__ import annotations

import json
import math

import PIL.Image
import pytest
import torch

from vlrl.models.families import FAMILIES
from vlrl.models.tiny import TINY_ROPE_THETA, TINY_TEXT, build_tiny_model, build_tiny_tokenizer


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


# Per family: (model class, processor class, patch size, image mean). A 112x112 image with the tiny processor's
# max_pixels of 112*112 = 12544, by smart_resize (sides rounded to multiples of patch*merge, shrunk to fit):
#   patch 14 (factor 28): 112 = 4 * 28 -> 112x112 = 12544 pixels, fits -> grid 112/14 = 8 -> [1, 8, 8],
#                         8*8/2^2 = 16 image tokens
#   patch 16 (factor 32): round(112/32) = 4 -> 128x128 = 16384 > 12544, so shrink by sqrt(112*112/12544) = 1:
#                         floor(112/32) * 32 = 96 -> grid 96/16 = 6 -> [1, 6, 6], 6*6/4 = 9 image tokens
FAMILY_CASES = {
    "qwen2_vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", 14, [1, 8, 8], 16, 0.48145466),
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor", 14, [1, 8, 8], 16, 0.48145466),
    "qwen3_vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", 16, [1, 6, 6], 9, 0.5),
}


@pytest.fixture(scope="module", params=list(FAMILY_CASES))
def tiny_family_dir(request, tmp_path_factory):
    family = request.param
    path = build_tiny_model(tmp_path_factory.mktemp(family), words=["what", "colour", "red", "blue"], family=family)
    return family, path


def test_tiny_model_of_each_family_reloads_with_auto_classes_and_runs_an_image_prompt(tiny_family_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    family, path = tiny_family_dir
    model_class, processor_class, patch, grid, n_image_tokens, mean = FAMILY_CASES[family]
    assert json.loads((path / "config.json").read_text())["model_type"] == family
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    assert type(model).__name__ == model_class and type(processor).__name__ == processor_class
    assert processor.image_processor.patch_size == model.config.vision_config.patch_size == patch
    assert processor.image_processor.image_mean[0] == pytest.approx(mean)

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what colour"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    image = PIL.Image.new("RGB", (112, 112), (200, 0, 0))
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [grid]
    assert (inputs["input_ids"] == model.config.image_token_id).sum().item() == n_image_tokens
    # pixel_values: one row per patch, 3 channels x temporal 2 x patch x patch values each.
    assert tuple(inputs["pixel_values"].shape) == (grid[1] * grid[2], 3 * 2 * patch * patch)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()


def test_tiny_config_of_each_family_has_its_rotary_layout(tiny_family_dir):
    family, path = tiny_family_dir
    config = json.loads((path / "config.json").read_text())
    text, vision = config["text_config"], config["vision_config"]
    rope = text["rope_parameters"]
    assert rope["rope_theta"] == TINY_ROPE_THETA
    if family == "qwen3_vl":
        # head_dim 64 / 4 = 16 -> 8 rotary frequencies dealt t, h, w, t, h, w, t, t: sections 5/16 of 8 = 2 each
        # for height and width, 8 - 4 = 4 temporal; the first vision block's features join the first text layer.
        assert text["head_dim"] == 16
        assert rope["mrope_section"] == [4, 2, 2] and rope["mrope_interleaved"] is True
        assert vision["deepstack_visual_indexes"] == [0] and vision["out_hidden_size"] == 64
    else:
        # Contiguous sections, 3/8 of 8 = 3 each for height and width, 2 temporal; head_dim is derived (64 / 4).
        assert "head_dim" not in text and "mrope_interleaved" not in rope
        assert rope["mrope_section"] == [2, 3, 3]
        # Qwen2-VL's merger writes vision_config.hidden_size; Qwen2.5-VL's out_hidden_size.
        assert vision["hidden_size" if family == "qwen2_vl" else "out_hidden_size"] == text["hidden_size"] == 64


def test_an_unknown_family_is_refused_with_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown model family 'llava'.*qwen2_vl, qwen2_5_vl, qwen3_vl"):
        build_tiny_model(tmp_path / "m", words=["red"], family="llava")
    assert not (tmp_path / "m").exists()
