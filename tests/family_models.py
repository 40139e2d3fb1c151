"""Tiny random checkpoints of each supported Qwen-VL family, built here straight from transformers' own classes —
independently of `vlrl.models.tiny` and `vlrl.models.families`, so that tests comparing vlrl's path with
transformers' forward and `generate` do not share a builder with the code under test.

Each checkpoint has a word-level tokenizer (the words below), the family's processor with its own patch size,
a few layers, and for Qwen3-VL deepstack mergers on two vision blocks.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import torch

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
            "<|video_pad|>", "<unk>"]
WORDS = ["system", "user", "assistant", "what", "colour", "is", "the", "shape", "how", "many", "are", "there", "?",
         "red", "green", "blue", "one", "two", "three", "<answer>", "</answer>", "a", "picture", "of", "and", "left",
         "right", "compare", "these", "images", "describe", "it"]

# Messages to text: roles as words, an image part as start + one placeholder + end (the processor expands the
# placeholder to the image's token count).
TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<|vision_start|> <|image_pad|> <|vision_end|> {% else %}{{ p['text'] }} {% endif %}"
    "{% endfor %}{% endif %}<|im_end|> {% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<|endoftext|>",
                                  eos_token="<|im_end|>", padding_side="left",
                                  additional_special_tokens=SPECIALS[1:2] + SPECIALS[3:7])
    tok.chat_template = TEMPLATE
    return tok


def _ids(tok) -> dict:
    t = tok.convert_tokens_to_ids
    return dict(image_token_id=t("<|image_pad|>"), video_token_id=t("<|video_pad|>"),
                vision_start_token_id=t("<|vision_start|>"), vision_end_token_id=t("<|vision_end|>"))


def _text(tok, **extra) -> dict:
    return dict(vocab_size=len(tok), hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=4096, bos_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **extra)


def build(family: str, out: Path, seed: int = 0, min_pixels: int = 32 * 32, max_pixels: int = 96 * 96) -> Path:
    """Write a tiny random checkpoint of `family` (a model_type) into `out`; returns `out`."""
    import transformers as tf

    tok = tokenizer()
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    if family == "qwen2_vl":
        config = tf.Qwen2VLConfig(
            text_config=_text(tok, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                    "mrope_section": [2, 3, 3]}),
            vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14),
            **_ids(tok))
        model_class, processor_class, patch = tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLProcessor, 14
        video = tf.Qwen2VLVideoProcessor(size=size, patch_size=patch, merge_size=2, temporal_patch_size=2)
    elif family == "qwen2_5_vl":
        config = tf.Qwen2_5_VLConfig(
            text_config=_text(tok, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                    "mrope_section": [2, 3, 3]}),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64,
                               fullatt_block_indexes=[1], window_size=56, patch_size=14),
            **_ids(tok))
        model_class, processor_class, patch = tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLProcessor, 14
        video = tf.Qwen2VLVideoProcessor(size=size, patch_size=patch, merge_size=2, temporal_patch_size=2)
    elif family in ("qwen3_vl", "qwen3_vl_moe"):
        moe = family == "qwen3_vl_moe"
        rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2], "mrope_interleaved": True}
        text = _text(tok, head_dim=16, rope_parameters=rope)
        if moe:  # 4 experts of which 2 per token; the last layer a dense MLP
            text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1,
                        mlp_only_layers=[2], tie_word_embeddings=False)
        config = (tf.Qwen3VLMoeConfig if moe else tf.Qwen3VLConfig)(
            text_config=text,
            vision_config=dict(depth=3, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64,
                               patch_size=16, num_position_embeddings=16, deepstack_visual_indexes=[0, 1]),
            **_ids(tok))
        model_class = tf.Qwen3VLMoeForConditionalGeneration if moe else tf.Qwen3VLForConditionalGeneration
        processor_class, patch = tf.Qwen3VLProcessor, 16
        video = tf.Qwen3VLVideoProcessor(size=size, patch_size=patch, merge_size=2, temporal_patch_size=2)
    else:
        raise ValueError(family)
    torch.manual_seed(seed)
    model = model_class(config)
    # Larger weights than the 0.02 default, so that images, deepstack and positions visibly move the logits.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.15, generator=torch.Generator().manual_seed(zlib.crc32(name.encode()) + seed))
    image = tf.Qwen2VLImageProcessor(size=size, patch_size=patch, merge_size=2, temporal_patch_size=2)
    processor = processor_class(image_processor=image, tokenizer=tok, video_processor=video, chat_template=TEMPLATE)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = [tok.eos_token_id]
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return Path(out)
