"""Tiny random checkpoints of image-text-to-text architectures outside the Qwen-VL families (vlrl's generic
tier), built here straight from transformers' config, model and processor classes, offline: LLaVA (a CLIP
tower and a Llama text model; fixed-size images, `<image>` repeated per feature) and Gemma 3 (a SigLIP tower
pooled to a fixed number of soft tokens, `token_type_ids` from the processor, bidirectional attention over an
image's tokens).

Each has a word-level tokenizer holding the architecture's special tokens (the processor writes them without
spaces; special tokens are split out before the whitespace pre-tokenizer runs) and a chat template that writes
roles as words and an image part as the architecture's image marker.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import torch

ARCHITECTURES = ("llava", "gemma3")

WORDS = ["system", "user", "assistant", "what", "colour", "is", "the", "shape", "how", "many", "are", "there", "?",
         "red", "green", "blue", "one", "two", "three", "<answer>", "</answer>", "a", "picture", "of", "and", "left",
         "right", "compare", "these", "images", "describe", "it"]
# Per architecture: (special tokens, the template's image marker, eos).
SPECIALS = {
    "llava": (["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|end|>", "<image>"], "<image>", "<|end|>"),
    "gemma3": (["<pad>", "<bos>", "<eos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                "<end_of_image>", "<image_soft_token>"], "<start_of_image>", "<end_of_turn>"),
}


def template(image_marker: str, start: str, end: str) -> str:
    return (
        "{% for m in messages %}" + start + " {{ m['role'] }} "
        "{% if m['content'] is string %}{{ m['content'] }} {% else %}{% for p in m['content'] %}"
        "{% if p['type'] == 'image' %}" + image_marker + " {% else %}{{ p['text'] }} {% endif %}"
        "{% endfor %}{% endif %}" + end + " {% endfor %}{% if add_generation_prompt %}" + start + " assistant {% endif %}"
    )


def tokenizer(arch: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials, _, eos = SPECIALS[arch]
    vocab = {t: i for i, t in enumerate(specials + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    extra = {}
    if arch == "gemma3":
        extra = dict(extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                           "image_token": "<image_soft_token>"})
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token=eos,
                                  bos_token=specials[1], padding_side="left",
                                  additional_special_tokens=[t for t in specials[4:]], **extra)
    return tok


def _text(tok, **extra) -> dict:
    return dict(vocab_size=len(tok), hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=4096, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **extra)


def build(arch: str, out: Path, seed: int = 0) -> Path:
    """Write a tiny random checkpoint of `arch` (one of ARCHITECTURES) into `out`; returns `out`."""
    import transformers as tf

    tok = tokenizer(arch)
    specials, marker, eos = SPECIALS[arch]
    t = tok.convert_tokens_to_ids
    if arch == "llava":
        image_size, patch = 32, 8
        config = tf.LlavaConfig(
            text_config=tf.LlamaConfig(**_text(tok)),
            vision_config=tf.CLIPVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                              num_attention_heads=2, image_size=image_size, patch_size=patch,
                                              projection_dim=32),
            image_token_index=t("<image>"), vision_feature_select_strategy="default", vision_feature_layer=-1,
            projector_hidden_act="gelu")
        model = tf.LlavaForConditionalGeneration(config)
        image = tf.CLIPImageProcessor(size={"shortest_edge": image_size},
                                      crop_size={"height": image_size, "width": image_size})
        processor = tf.LlavaProcessor(image_processor=image, tokenizer=tok, patch_size=patch,
                                      vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                      chat_template=template(marker, "<|user|>", "<|end|>"))
    elif arch == "gemma3":
        image_size, patch, tokens = 32, 8, 4
        config = tf.Gemma3Config(
            text_config=tf.Gemma3TextConfig(**_text(tok, head_dim=16, sliding_window=8, query_pre_attn_scalar=16)),
            vision_config=tf.SiglipVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                                num_attention_heads=2, image_size=image_size, patch_size=patch),
            mm_tokens_per_image=tokens, boi_token_index=t("<start_of_image>"), eoi_token_index=t("<end_of_image>"),
            image_token_index=t("<image_soft_token>"))
        model = tf.Gemma3ForConditionalGeneration(config)
        image = tf.Gemma3ImageProcessor(size={"height": image_size, "width": image_size})
        processor = tf.Gemma3Processor(image_processor=image, tokenizer=tok, image_seq_length=tokens,
                                       chat_template=template(marker, "<start_of_turn>", "<end_of_turn>"))
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    # Larger weights than the 0.02 default, so that images and positions visibly move the logits.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.15, generator=torch.Generator().manual_seed(zlib.crc32(name.encode()) + seed))
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = [tok.eos_token_id]
    model.generation_config.bos_token_id = tok.bos_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return Path(out)
