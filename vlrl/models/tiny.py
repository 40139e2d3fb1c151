"""Qwen2.5-VL checkpoints built offline: a tiny one for CPU demos and tests, and random-weight ones with the
exact shape of the released models for GPU benchmarks.

Both use the real transformers classes (`Qwen2_5_VLForConditionalGeneration`, `Qwen2_5_VLProcessor`), so the
training code path is the one a real checkpoint takes. The tiny model has a word-level vocabulary in which
every answer and the `<answer>`/`</answer>` tags are single tokens: that is what makes RL from random
initialisation feasible in a few minutes on a CPU. The vocabulary's words are passed in (the trainer takes them
from the dataset it trains on, see :func:`words_of`); text is split into words and punctuation, keeping
word-internal hyphens, dots, apostrophes and slashes, so an answer such as `top-left`, `3.5` or `don't` is one
token and `shape?` is `shape` + `?`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import torch

from vlrl.atomic import atomic_dir

SPECIAL_TOKENS = [
    "<|endoftext|>",  # pad and bos, as in Qwen2.5
    "<|im_start|>",
    "<|im_end|>",  # end of turn = eos
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<unk>",
]
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]
CHAT_WORDS = ["system", "user", "assistant"]

# The structure of Qwen2.5-VL's template, simplified for a word-level vocabulary: images first unless the text
# places them, roles as words, turns closed by <|im_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|> "
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)

# Shapes of the released checkpoints (from their public config.json files), used for benchmarks with random
# weights; vocab 151,936 like the real tokenizer's embedding table.
RELEASED_SHAPES = {
    "qwen2.5-vl-3b": dict(
        text=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                  num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                    fullatt_block_indexes=[7, 15, 23, 31], window_size=112),
    ),
    "qwen2.5-vl-7b": dict(
        text=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                  num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
        vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                    fullatt_block_indexes=[7, 15, 23, 31], window_size=112),
    ),
}


# One word: letters/digits, optionally joined by single inner - . ' / ("top-left", "3.5", "don't", "km/h"); any
# other non-space character is a word of its own ("?", ",", "(", "%").
WORD_PATTERN = r"\w+(?:[-.'/]\w+)*|[^\w\s]"


def _pre_tokenizer():
    """Whitespace split, then each piece cut into WORD_PATTERN matches (they cover every non-space
    character, so no piece is dropped)."""
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="isolated"),
    ])


_TAG_OR_SPECIAL = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS + TAG_TOKENS))


def words_of(texts: Iterable[str]) -> list[str]:
    """The words the tiny tokenizer cuts `texts` into, first-seen order, without the special and tag tokens
    (those split out of running text before the words do).

    >>> words_of(["Is the shape top-left?", "<answer>3.5</answer>"])
    ['Is', 'the', 'shape', 'top-left', '?', '3.5']
    """
    split = _pre_tokenizer().pre_tokenize_str
    seen: dict[str, None] = {}
    for text in texts:
        for piece in _TAG_OR_SPECIAL.split(text):
            seen.update((word, None) for word, _ in split(piece))
    return list(seen)


def tiny_vocabulary(words: Iterable[str]) -> list[str]:
    """Token strings of the tiny tokenizer, id = position: special tokens, tags, then the words of `words`
    (split as the tokenizer splits text) and the chat template's role words, sorted."""
    reserved = set(SPECIAL_TOKENS) | set(TAG_TOKENS)
    vocab = sorted((set(words_of(words)) | set(CHAT_WORDS)) - reserved)
    return SPECIAL_TOKENS + TAG_TOKENS + vocab


def build_tiny_tokenizer(words: Iterable[str]):
    """A word-level fast tokenizer with Qwen2.5's special tokens and the vocabulary of `words` (returns a
    transformers tokenizer); any other word encodes as `<unk>`."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(tiny_vocabulary(words))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = _pre_tokenizer()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<|endoftext|>",
        bos_token=None,
        eos_token="<|im_end|>",
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<unk>", "<|endoftext|>", "<|im_end|>")],
        padding_side="left",
    )
    # Tags must split out of running text ("<answer>red</answer>") like special tokens, but survive decoding.
    tokenizer.add_tokens(TAG_TOKENS, special_tokens=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_processor(tokenizer, min_pixels: int, max_pixels: int):
    """A Qwen2.5-VL processor (image + video processor, chat template) around `tokenizer`."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    image_processor = Qwen2VLImageProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2)
    video_processor = Qwen2VLVideoProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=tokenizer.chat_template,
    )


def qwen2_5_vl_config(tokenizer, text: dict, vision: dict):
    """A `Qwen2_5_VLConfig` whose special token ids come from `tokenizer`."""
    from transformers import Qwen2_5_VLConfig

    ids = tokenizer.convert_tokens_to_ids
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    # mRoPE splits the rotary half-dimension into (temporal, height, width) sections; Qwen uses 16/24/24 of 64.
    half = head_dim // 2
    sections = [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]
    theta = text.get("rope_theta", 1_000_000.0)
    text_config = dict(
        max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": theta, "mrope_section": sections},
        bos_token_id=ids("<|endoftext|>"),
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
        **{k: v for k, v in text.items() if k not in ("tie_word_embeddings", "rope_theta")},
    )
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=dict(patch_size=14, spatial_merge_size=2, temporal_patch_size=2, **vision),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=text.get("tie_word_embeddings", False),
    )


# Initialised with std 0.1 rather than transformers' 0.02: at 0.02 the answer position attends almost uniformly
# to ~18 tokens and even supervised training sat on a chance-level plateau for hundreds of steps before it
# read the image; at 0.1 it learns both synthetic tasks in ~150 supervised steps (measured on 2 CPU cores).
TINY_INIT_STD = 0.1
# rope_theta 2 rather than Qwen's 1e6: with a head dimension of 16, mRoPE gives the width axis the three slowest
# of 8 frequencies, which at 1e6 turn by less than 0.001 rad per image column: the language model could not tell
# where in the image a feature is, and position tasks stayed at chance even under supervised training. At 2
# every frequency turns 0.5-1 rad per step (the tiny model's prompts are a few dozen tokens).
TINY_ROPE_THETA = 2.0
TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=False, initializer_range=TINY_INIT_STD,
                 rope_theta=TINY_ROPE_THETA)
TINY_VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                   fullatt_block_indexes=[1], window_size=56, initializer_range=TINY_INIT_STD)


def build_tiny_model(out_dir: str | Path, *, words: Iterable[str], seed: int = 0, min_pixels: int = 56 * 56,
                     max_pixels: int = 112 * 112) -> Path:
    """Write a tiny random Qwen2.5-VL checkpoint (config, weights, tokenizer, processor) to `out_dir`, its
    vocabulary the words of `words` (texts; e.g. every problem and answer of the data it will train on)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    tokenizer = build_tiny_tokenizer(words)
    config = qwen2_5_vl_config(tokenizer, dict(TINY_TEXT, vocab_size=len(tokenizer)), TINY_VISION)
    config.initializer_range = TINY_INIT_STD
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    return _save(model, build_processor(tokenizer, min_pixels, max_pixels), out_dir)


def build_random_model(out_dir: str | Path, like: str, *, words: Iterable[str], dtype: str = "bfloat16",
                       seed: int = 0, min_pixels: int = 256 * 28 * 28, max_pixels: int = 1280 * 28 * 28,
                       device: str = "cpu") -> Path:
    """Write a random-weight checkpoint with the exact layout of a released model (`like`, e.g.
    'qwen2.5-vl-3b'), with the tiny word-level tokenizer of `words` padded to the real vocabulary size.
    `device="cuda"` draws the weights on the GPU (seconds instead of about a minute of CPU time for 3B); the
    files are the same format either way."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    if like not in RELEASED_SHAPES:
        raise ValueError(f"unknown model shape {like!r}; known: {sorted(RELEASED_SHAPES)}")
    shape = RELEASED_SHAPES[like]
    tokenizer = build_tiny_tokenizer(words)
    config = qwen2_5_vl_config(tokenizer, shape["text"], shape["vision"])
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration(config).to(getattr(torch, dtype))
    return _save(model, build_processor(tokenizer, min_pixels, max_pixels), out_dir)


def _save(model, processor, out_dir: str | Path) -> Path:
    """Write model and processor into `out_dir`, whole or not at all; an existing `out_dir` must be empty."""
    out = Path(out_dir)
    model.generation_config.pad_token_id = model.config.text_config.pad_token_id
    # Like Qwen2.5-VL-Instruct: either end-of-turn or end-of-text ends a completion.
    model.generation_config.eos_token_id = [model.config.text_config.eos_token_id,
                                            model.config.text_config.pad_token_id]
    model.generation_config.bos_token_id = model.config.text_config.bos_token_id
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return out
