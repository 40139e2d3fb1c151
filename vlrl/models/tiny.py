"""Qwen VL checkpoints built offline: a tiny one for CPU demos and tests, and random-weight ones with the
exact shape of the released models (:mod:`vlrl.models.shapes`) for GPU benchmarks, each of any family of
:mod:`vlrl.models.families` (Qwen2-VL, Qwen2.5-VL — the default — and Qwen3-VL).

Both use the real transformers classes (e.g. `Qwen2_5_VLForConditionalGeneration`, `Qwen2_5_VLProcessor`), so
the training code path is the one a real checkpoint takes. The tiny model has a word-level vocabulary in which
every answer and the `<answer>`/`</answer>` tags are single tokens: that is what makes RL from random
initialisation feasible in a few minutes on a CPU. The vocabulary's words are passed in (the trainer takes them
from the dataset it trains on, see :func:`words_of`); text is split into words and punctuation, keeping
word-internal hyphens, dots, apostrophes and slashes, so an answer such as `top-left`, `3.5` or `don't` is one
token and `shape?` is `shape` + `?`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import torch

from vlrl.atomic import atomic_dir
from vlrl.models.families import FamilyError, get_family
from vlrl.models.shapes import resolve_shape

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

# The structure of Qwen's VL template, simplified for a word-level vocabulary: images first unless the text
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
# The vision towers, one per family, as small as their layout allows: 2 blocks, 2 heads, merger into the 64-wide
# language model. Qwen2.5's window is 2 merged tokens a side, its last block global; Qwen3's learned position
# grid is 8x8 (interpolated to any image), its first block's output added to the first text layer (deepstack).
TINY_VISION = {
    "qwen2_vl": dict(depth=2, embed_dim=32, mlp_ratio=2, num_heads=2, hidden_size=64,
                     initializer_range=TINY_INIT_STD),
    "qwen2_5_vl": dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                       fullatt_block_indexes=[1], window_size=56, initializer_range=TINY_INIT_STD),
    "qwen3_vl": dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                     num_position_embeddings=64, deepstack_visual_indexes=[0], initializer_range=TINY_INIT_STD),
}


def build_tiny_model(out_dir: str | Path, *, words: Iterable[str], family: str = "qwen2_5_vl", seed: int = 0,
                     min_pixels: int = 56 * 56, max_pixels: int = 112 * 112) -> Path:
    """Write a tiny random checkpoint of `family` (a model_type of :data:`FAMILIES`: config, weights,
    tokenizer, processor) to `out_dir`, its vocabulary the words of `words` (texts; e.g. every problem and
    answer of the data it will train on)."""
    fam = get_family(family)
    tokenizer = build_tiny_tokenizer(words)
    config = fam.config(tokenizer, dict(TINY_TEXT, vocab_size=len(tokenizer)), TINY_VISION[family])
    config.initializer_range = TINY_INIT_STD
    torch.manual_seed(seed)
    model = fam.model(config)
    return _save(model, fam.processor(tokenizer, min_pixels, max_pixels), out_dir)


def build_random_model(out_dir: str | Path, like: str, *, overrides: dict[str, dict] | None = None,
                       words: Iterable[str] = (), dtype: str = "bfloat16", seed: int = 0,
                       min_pixels: int | None = None, max_pixels: int | None = None, device: str = "cpu") -> Path:
    """Write a random-weight checkpoint with the layout of a released model (`like`, a name of
    :data:`RELEASED_SHAPES`, e.g. 'qwen2.5-vl-3b'), `overrides` (``{"text": {...}, "vision": {...}}``, see
    :func:`parse_overrides`) applied, with the tiny word-level tokenizer of `words` padded to the shape's
    vocabulary size. Images default to 256-1280 merged tokens (the released processors' range for Qwen2.5-VL).
    `device="cuda"` draws the weights on the GPU (seconds instead of about a minute of CPU time for 3B); the
    files are the same format either way."""
    shape = resolve_shape(like, overrides)
    fam = get_family(shape["family"])
    tokenizer = build_tiny_tokenizer(words)
    if shape["text"]["vocab_size"] < len(tokenizer):
        raise FamilyError(f"{like}: text vocab_size {shape['text']['vocab_size']} is smaller than the tokenizer's "
                          f"{len(tokenizer)} tokens")
    config = fam.config(tokenizer, shape["text"], shape["vision"])
    tokens = fam.factor * fam.factor
    min_pixels = 256 * tokens if min_pixels is None else min_pixels
    max_pixels = 1280 * tokens if max_pixels is None else max_pixels
    torch.manual_seed(seed)
    with torch.device(device):
        model = fam.model(config).to(getattr(torch, dtype))
    return _save(model, fam.processor(tokenizer, min_pixels, max_pixels), out_dir)

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
