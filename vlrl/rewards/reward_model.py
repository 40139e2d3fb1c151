"""``reward_model``: a local sequence-classification checkpoint (``AutoModelForSequenceClassification``) scores each
completion given its question, a batch at a time.

The text scored is the row's question (``problem``) and the whole completion: through the tokenizer's chat
template when it has one (a user turn holding the question, an assistant turn holding the completion: the
layout chat reward models are trained on), else as a sentence pair ``tokenizer(question, completion)`` (what
cross-encoders such as BERT-style reward models take). Inputs are cut to ``max_length`` tokens from the end the
tokenizer truncates (its ``truncation_side``), padded on the right. The model sees text only, not images.

The logits become a score in [0, 1]: the sigmoid of the single logit of a one-label model, or the softmax
probability of class ``label`` (an index, or a name from the config's ``label2id``) of a model with several.

Batched, in the trainer's process: the mixer calls :func:`reward_model` once per step with every completion it
scores; identical texts are scored once, the rest in batches of ``batch_size`` (sorted by length, so a batch
pads little). The model is loaded once per process and kept (by path, device and dtype). Any error — a missing
checkpoint, a model with several labels and no ``label`` — fails every completion of the call (scored 0,
counted in ``reward/parse_failures``); a non-finite score fails its completion.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from vlrl.rewards.base import RewardInput, accepted_params, register_reward

_DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_MODELS: dict[tuple, tuple] = {}  # (resolved path, device, dtype) -> (model, tokenizer)
_LOCK = threading.Lock()


def load(path: str | Path, device: str = "auto", dtype: str = "auto") -> tuple:
    """(model, tokenizer) of the checkpoint at ``path``, loaded once per process, in eval mode, with a pad token
    (the eos token where the tokenizer has none) and right padding."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = resolve_device(device)
    key = (str(Path(path).expanduser().resolve()), device, dtype)
    with _LOCK:
        if key not in _MODELS:
            tokenizer = AutoTokenizer.from_pretrained(key[0])
            if tokenizer.pad_token is None:
                if tokenizer.eos_token is None:
                    raise ValueError(f"reward_model {key[0]}: the tokenizer has neither a pad nor an eos token")
                tokenizer.pad_token = tokenizer.eos_token
            tokenizer.padding_side = "right"  # positions then count from 0 for every row, batched or alone
            model = AutoModelForSequenceClassification.from_pretrained(key[0], dtype=_DTYPES[dtype])
            if model.config.pad_token_id is None:  # decoder models find each row's last token by it
                model.config.pad_token_id = tokenizer.pad_token_id
            _MODELS[key] = (model.to(device).eval(), tokenizer)
        return _MODELS[key]


def resolve_device(device: str) -> str:
    """``auto``: the first CUDA device where there is one, else the CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def encode(tokenizer, questions: Sequence[str], completions: Sequence[str], max_length: int) -> dict:
    """The tokenizer's batch for (question, completion) pairs: chat template when it has one, else sentence
    pairs; padded, truncated to ``max_length``, as tensors."""
    if getattr(tokenizer, "chat_template", None):
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": c}],
                                               tokenize=False) for q, c in zip(questions, completions, strict=True)]
        return tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                         add_special_tokens=False)
    return tokenizer(list(questions), list(completions), padding=True, truncation=True, max_length=max_length,
                     return_tensors="pt")


def to_scores(logits: torch.Tensor, label: int | str | None, label2id: Mapping[str, int]) -> torch.Tensor:
    """Scores [B] in [0, 1] from logits [B, num_labels]: sigmoid of a single logit, else softmax of ``label``.

    >>> [round(x, 4) for x in to_scores(torch.tensor([[0.0], [2.0]]), None, {}).tolist()]  # 1 / (1 + e^-2)
    [0.5, 0.8808]
    >>> [round(x, 4) for x in to_scores(torch.tensor([[0.0, 0.0, 0.0]]), "good", {"bad": 0, "good": 2}).tolist()]
    [0.3333]
    """
    logits = logits.float()
    num_labels = logits.shape[-1]
    if num_labels == 1:
        if label is not None:
            raise ValueError("a one-label model is scored by the sigmoid of its logit: leave params.label unset")
        return torch.sigmoid(logits[:, 0])
    if label is None:
        raise ValueError(f"the model has {num_labels} labels {dict(label2id)}: set params.label to the index or "
                         "name of the class whose probability is the score")
    index = label2id.get(label, -1) if isinstance(label, str) else label
    if not 0 <= index < num_labels:
        raise ValueError(f"params.label {label!r} is not one of the model's {num_labels} labels {dict(label2id)}")
    return torch.softmax(logits, dim=-1)[:, index]


@register_reward("reward_model")
def reward_model(inputs: Sequence[RewardInput], path: str = "", batch_size: int = 16, max_length: int = 1024,
                 device: str = "auto", dtype: str = "auto", label: int | str | None = None) -> list[float]:
    """A local sequence-classification checkpoint scores question + completion (chat template, else a text pair).

    ``path``: the checkpoint directory (required); ``batch_size`` texts per forward, each cut to ``max_length``
    tokens; ``device`` (auto: cuda when there is one) and ``dtype`` (auto, float32, bfloat16, float16) to run
    it in; ``label``: unset for a one-logit model (score = sigmoid), else the index or name of the class whose
    softmax probability is the score. One score per input.
    """
    _check(dict(path=path, batch_size=batch_size, max_length=max_length, device=device, dtype=dtype, label=label))
    model, tokenizer = load(path, device, dtype)
    pairs = list(dict.fromkeys((inp.problem, inp.completion) for inp in inputs))  # identical texts once
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    scored: dict[tuple[str, str], float] = {}
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = [pairs[i] for i in order[start:start + batch_size]]
            batch = encode(tokenizer, [q for q, _ in chunk], [c for _, c in chunk], max_length)
            logits = model(**batch.to(model.device)).logits  # [B, num_labels]
            values = to_scores(logits, label, model.config.label2id or {}).tolist()
            scored.update(zip(chunk, values, strict=True))
    return [_finite(scored[(inp.problem, inp.completion)]) for inp in inputs]


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.nan  # NaN: the mixer counts the completion as failed


def _check(params: Mapping[str, Any]) -> None:
    """ValueError for params the reward cannot run with (the checkpoint itself is read on the first call)."""
    unknown = sorted(set(params) - accepted_params(reward_model))
    if unknown:
        raise ValueError(f"unknown params {unknown} for reward reward_model; accepted: "
                         f"{sorted(accepted_params(reward_model))}")
    path = params.get("path", "")
    if not isinstance(path, str) or not path:
        raise ValueError("reward_model needs params.path, a local sequence-classification checkpoint directory")
    if not (Path(path).expanduser() / "config.json").is_file():
        raise ValueError(f"reward_model params.path {path!r}: no checkpoint there (no config.json)")
    for key in ("batch_size", "max_length"):
        value = params.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"reward_model params.{key} must be an integer >= 1, got {value!r}")
    if params.get("dtype", "auto") not in _DTYPES:
        raise ValueError(f"reward_model params.dtype must be one of {sorted(_DTYPES)}, got {params['dtype']!r}")
    if not isinstance(params.get("device", "auto"), str):
        raise ValueError(f"reward_model params.device must be a string (auto, cpu, cuda, cuda:1), got "
                         f"{params['device']!r}")
    label = params.get("label")
    if label is not None and (isinstance(label, bool) or not isinstance(label, (int, str))):
        raise ValueError(f"reward_model params.label must be a class index or name, got {label!r}")


reward_model.batched = True  # the mixer calls it once per step with every completion it scores, in this process
reward_model.check_params = _check  # when the mixer is built: a typo in path fails before training starts
