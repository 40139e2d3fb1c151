"""Released shapes, --set overrides and family checks: random models of each family made small by overrides
have exactly the config fields asked for; bad overrides and configs fail with messages that say what is valid."""

from __future__ import annotations

import json

import pytest

from vlrl.cli import main
from vlrl.models.families import FAMILIES, FamilyError, mrope_sections
from vlrl.models.shapes import RELEASED_SHAPES, OverrideError, parse_overrides, resolve_shape, shapes_help
from vlrl.models.tiny import build_tiny_tokenizer

# Shrinking overrides per family, as `vlrl models random --set` items. Vision depth 2 and one deepstack layer
# / one full-attention block keep every family's own parts (windows, deepstack mergers) in the model.
SMALL_TEXT = ["text.num_hidden_layers=1", "text.hidden_size=64", "text.intermediate_size=128",
              "text.num_attention_heads=4", "text.num_key_value_heads=2", "text.vocab_size=256"]
SMALL = {
    "qwen2-vl-2b": SMALL_TEXT + ["vision.depth=2", "vision.embed_dim=32", "vision.num_heads=2",
                                 "vision.hidden_size=64", "vision.mlp_ratio=2"],
    "qwen2.5-vl-7b": SMALL_TEXT + ["vision.depth=2", "vision.hidden_size=32", "vision.intermediate_size=64",
                                   "vision.num_heads=2", "vision.out_hidden_size=64",
                                   "vision.fullatt_block_indexes=[1]", "vision.window_size=56"],
    "qwen3-vl-4b": SMALL_TEXT + ["text.head_dim=32", "vision.depth=2", "vision.hidden_size=32",
                                 "vision.intermediate_size=64", "vision.num_heads=2", "vision.out_hidden_size=64",
                                 "vision.deepstack_visual_indexes=[1]", "vision.num_position_embeddings=64"],
}
# What config.json must then hold (hand-written). Untouched fields keep the released value: tie_word_embeddings
# (true for Qwen2-VL-2B and Qwen3-VL-4B, false for Qwen2.5-VL-7B) and the family's patch size.
EXPECTED = {
    "qwen2-vl-2b": dict(
        model_type="qwen2_vl", tie_word_embeddings=True,
        text=dict(num_hidden_layers=1, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=256),
        # head_dim 64 / 4 = 16 -> half 8 -> [8 - 2*3, 3, 3]; theta Qwen2's 1e6
        rope=dict(rope_type="default", rope_theta=1_000_000.0, mrope_section=[2, 3, 3]),
        vision=dict(depth=2, embed_dim=32, num_heads=2, hidden_size=64, mlp_ratio=2, patch_size=14,
                    spatial_merge_size=2, temporal_patch_size=2)),
    "qwen2.5-vl-7b": dict(
        model_type="qwen2_5_vl", tie_word_embeddings=False,
        text=dict(num_hidden_layers=1, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=256),
        rope=dict(rope_type="default", rope_theta=1_000_000.0, mrope_section=[2, 3, 3]),
        vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                    fullatt_block_indexes=[1], window_size=56, patch_size=14)),
    "qwen3-vl-4b": dict(
        model_type="qwen3_vl", tie_word_embeddings=True,
        text=dict(num_hidden_layers=1, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=256, head_dim=32),
        # head_dim 32 (not 64 / 4, as 4B's 128 is not 2560 / 32) -> half 16 -> 5*16//16 = 5 each spatial, 6 temporal
        rope=dict(rope_type="default", rope_theta=5_000_000.0, mrope_section=[6, 5, 5], mrope_interleaved=True),
        vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                    deepstack_visual_indexes=[1], num_position_embeddings=64, patch_size=16)),
}


@pytest.mark.parametrize("like", list(SMALL))
def test_small_random_model_of_each_family_has_the_fields_asked(like, tmp_path):
    from safetensors import safe_open

    out = tmp_path / like
    argv = ["models", "random", str(out), "--like", like, "--dtype", "float32"]
    assert main([*argv, *(a for item in SMALL[like] for a in ("--set", item))]) == 0
    config = json.loads((out / "config.json").read_text())
    want = EXPECTED[like]
    assert config["model_type"] == want["model_type"]
    assert config["tie_word_embeddings"] is want["tie_word_embeddings"]
    assert {k: config["text_config"][k] for k in want["text"]} == want["text"]
    assert config["text_config"]["rope_parameters"] == want["rope"]
    assert {k: config["vision_config"][k] for k in want["vision"]} == want["vision"]
    # The weights have that shape too: the embedding table is vocab_size x hidden_size.
    with safe_open(out / "model.safetensors", "pt") as f:
        embed = next(k for k in f.keys() if k.endswith("embed_tokens.weight"))
        assert tuple(f.get_slice(embed).get_shape()) == (256, 64)
    processor = json.loads((out / "processor_config.json").read_text())["image_processor"]
    # The random model's images: 256-1280 merged tokens of (patch * 2)^2 pixels.
    factor = 2 * want["vision"]["patch_size"]
    assert processor["size"] == {"shortest_edge": 256 * factor**2, "longest_edge": 1280 * factor**2}


@pytest.mark.parametrize("name", list(RELEASED_SHAPES))
def test_every_released_shape_makes_a_valid_config_of_its_family(name):
    shape = resolve_shape(name)
    family = FAMILIES[shape["family"]]
    assert shape["source"].startswith("Qwen/") and shape["source"].endswith("-Instruct config.json")
    assert shape["family"] == {"qwen2": "qwen2_vl", "qwen2.5": "qwen2_5_vl", "qwen3": "qwen3_vl"}[name.split("-")[0]]
    config = family.config(build_tiny_tokenizer([]), shape["text"], shape["vision"])
    assert config.model_type == shape["family"]
    assert config.vision_config.patch_size == family.patch_size == (16 if shape["family"] == "qwen3_vl" else 14)
    # Every released checkpoint has head_dim 128, so the released mRoPE sections.
    assert config.text_config.rope_parameters["mrope_section"] == (
        [24, 20, 20] if shape["family"] == "qwen3_vl" else [16, 24, 24])


def test_mrope_sections_sum_to_half_the_head_dim():
    for head_dim in (16, 32, 64, 80, 128, 256):
        for interleaved in (False, True):
            t, h, w = mrope_sections(head_dim, interleaved)
            assert t + h + w == head_dim // 2 and h == w and min(t, h) > 0
    with pytest.raises(FamilyError, match="head_dim 6"):
        mrope_sections(6)


def test_parse_overrides_reads_numbers_bools_lists_and_strings():
    got = parse_overrides(["text.num_hidden_layers=4", "text.rms_norm_eps=1e-6", "text.tie_word_embeddings=false",
                           "vision.deepstack_visual_indexes=[0, 2]", "vision.hidden_act=gelu",
                           "vision.fullatt_block_indexes=[]", "text.num_hidden_layers=3"])
    assert got == {"text": {"num_hidden_layers": 3, "rms_norm_eps": 1e-6, "tie_word_embeddings": False},
                   "vision": {"deepstack_visual_indexes": [0, 2], "hidden_act": "gelu", "fullatt_block_indexes": []}}
    assert parse_overrides(None) == {} and parse_overrides([]) == {}


@pytest.mark.parametrize("item, message", [
    ("text.num_hidden_layers", "'text.num_hidden_layers': expected SECTION.FIELD=VALUE with SECTION one of text, vision"),
    ("num_hidden_layers=2", "'num_hidden_layers=2': expected SECTION.FIELD=VALUE"),
    ("text.=2", "'text.=2': expected SECTION.FIELD=VALUE"),
    ("text.hidden_size=", "'text.hidden_size=': expected SECTION.FIELD=VALUE"),
    ("model.hidden_size=2", "'model.hidden_size=2': unknown section 'model'; sections: text, vision"),
])
def test_parse_overrides_errors_name_the_item_and_the_sections(item, message):
    with pytest.raises(OverrideError) as e:
        parse_overrides(["text.num_hidden_layers=1", item])
    assert message in str(e.value)


def test_resolve_shape_refuses_unknown_names_and_fields_listing_valid_ones():
    with pytest.raises(OverrideError, match="unknown model shape 'qwen3-vl-30b'.*qwen3-vl-32b"):
        resolve_shape("qwen3-vl-30b")
    with pytest.raises(OverrideError) as e:
        resolve_shape("qwen3-vl-4b", parse_overrides(["vision.window_size=112"]))  # a Qwen2.5-VL field
    assert "qwen3_vl has no vision field 'window_size'" in str(e.value) and "deepstack_visual_indexes" in str(e.value)
    # Qwen2.5-VL derives head_dim; token ids and rope_parameters are the builder's.
    for item in ("text.head_dim=64", "text.bos_token_id=3", "text.rope_parameters=x", "vision.patch_size=16"):
        with pytest.raises(OverrideError, match="has no"):
            resolve_shape("qwen2.5-vl-3b", parse_overrides([item]))
    # The table itself is not changed by an override.
    resolve_shape("qwen2.5-vl-3b", parse_overrides(["text.num_hidden_layers=1"]))
    assert RELEASED_SHAPES["qwen2.5-vl-3b"]["text"]["num_hidden_layers"] == 36


def test_check_refuses_configs_that_do_not_fit_the_family():
    tok = build_tiny_tokenizer([])
    shape = resolve_shape("qwen3-vl-2b")
    with pytest.raises(FamilyError, match="out_hidden_size 2048 must equal text hidden_size 64"):
        FAMILIES["qwen3_vl"].config(tok, dict(shape["text"], hidden_size=64), shape["vision"])
    with pytest.raises(FamilyError, match=r"deepstack_visual_indexes \[5, 11, 30\] outside depth 24"):
        FAMILIES["qwen3_vl"].config(tok, shape["text"], dict(shape["vision"], deepstack_visual_indexes=[5, 11, 30]))
    qwen2_5 = resolve_shape("qwen2.5-vl-3b")
    config = FAMILIES["qwen2_5_vl"].config(tok, qwen2_5["text"], qwen2_5["vision"])
    with pytest.raises(FamilyError, match="not a valid qwen3_vl config: model_type is 'qwen2_5_vl'"):
        FAMILIES["qwen3_vl"].check(config)
    config.vision_config.patch_size = 16
    with pytest.raises(FamilyError, match="vision patch_size is 16, the family's is 14"):
        FAMILIES["qwen2_5_vl"].check(config)


def test_cli_random_reports_a_bad_override_before_building(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["models", "random", str(out), "--like", "qwen2-vl-2b", "--set", "text.hiden_size=64"]) == 2
    err = capsys.readouterr().err
    assert "qwen2_vl has no text field 'hiden_size'" in err and "hidden_size" in err
    assert main(["models", "random", str(out), "--like", "qwen2-vl-2b", "--set", "text.hidden_size=64"]) == 2
    assert "text hidden_size 64 is not a multiple of num_attention_heads 12" in capsys.readouterr().err
    assert main(["models", "random", str(out), "--like", "qwen2-vl-2b", "--set", "text.hidden_size=96"]) == 2
    assert "vision hidden_size 1536 must equal text hidden_size 96" in capsys.readouterr().err
    assert not out.exists()


def test_random_help_lists_every_released_shape(capsys):
    with pytest.raises(SystemExit):
        main(["models", "random", "--help"])
    out = capsys.readouterr().out
    for name, shape in RELEASED_SHAPES.items():
        assert name in out and name in shapes_help() and shape["source"] in out
