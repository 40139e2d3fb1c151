"""The ``ocr`` reward: how close the text the model read is to the ground truth, ANLS-style.

ANLS (average normalised Levenshtein similarity; Biten et al., "Scene Text Visual Question Answering",
ICCV 2019, and the DocVQA metric) credits a reading by its similarity ``1 − d / max(|pred|, |truth|)``,
``d`` the character edit distance, and gives 0 below a threshold of 0.5, so that a wrong answer that
shares a few characters with the right one earns nothing. With several acceptable answers the best
similarity counts. Where this reward differs:

- ANLS zeroes a similarity of exactly the threshold (it keeps ``distance / length < τ``); here a similarity
  equal to ``threshold`` is kept.
- Normalisation (``normalize=True``) is Unicode NFKC, case folding and collapsed whitespace; ANLS lower-
  cases and strips. Punctuation is kept: in OCR it is part of what was read.
- Predictions longer than ``max_chars`` (default 1000) score 0.0 unread: the edit distance costs
  ``len(pred) · len(truth)`` steps in Python, about 0.3 s for two 1,000-character texts.
"""

from __future__ import annotations

import json
import math
import unicodedata

from vlrl.rewards.base import RewardInput, answer_region, register_reward


@register_reward("ocr")
def ocr(
    inp: RewardInput,
    threshold: float = 0.5,
    normalize: bool = True,
    max_chars: int = 1000,
    fallback_to_completion: bool = True,
) -> float:
    """The best similarity (see the module doc) of the answer region to any acceptable answer, or 0.0
    when it is below ``threshold``. The ground truth is one text, or JSON text of a list of texts.

    >>> ocr(RewardInput("<answer>Hello World</answer>", '["hello world!", "hi"]', "ocr"))  # 1 - 1/12
    0.9166666666666666
    """
    truths = ground_truth_texts(inp.answer, normalize)
    region = answer_region(inp.completion, fallback_to_completion)
    if region is None or len(region) > max_chars:
        return 0.0
    pred = _normalize(region) if normalize else region
    if not pred:
        return 0.0
    best = max(similarity(pred, truth, threshold) for truth in truths)
    return best if best >= threshold else 0.0


def ground_truth_texts(answer: object, normalize: bool = True) -> list[str]:
    """The acceptable answers in ``answer``: a list, JSON text of a list, or one text; normalised when
    ``normalize``. Raises ValueError when none is left non-empty.

    >>> ground_truth_texts('["STOP", " stop  sign "]')
    ['stop', 'stop sign']
    """
    items = answer
    if isinstance(answer, str) and answer.lstrip().startswith("["):
        try:
            items = json.loads(answer)
        except ValueError:  # text that merely starts with "[" is one answer
            items = answer
    if not isinstance(items, (list, tuple)):
        items = [items]
    texts = [_normalize(str(t)) if normalize else str(t) for t in items if t is not None]
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError(f"ocr: ground truth {answer!r} holds no non-empty answer")
    return texts


def similarity(a: str, b: str, threshold: float = 0.0) -> float:
    """``1 − levenshtein(a, b) / max(len(a), len(b))``; 1.0 for two empty texts. Below ``threshold`` the
    value is only known to be below it: the distance computation stops early and the result is 0.0.

    >>> similarity("kitten", "sitting")  # 3 edits over 7 characters
    0.5714285714285714
    """
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    # similarity >= threshold  <=>  distance <= (1 - threshold) * longest
    # The epsilon keeps float error from rounding an exact boundary down: (1 - 0.8) * 5 = 0.9999999999999998.
    limit = math.floor((1.0 - threshold) * longest + 1e-9) if threshold > 0 else None
    distance = levenshtein(a, b, limit)
    if limit is not None and distance > limit:
        return 0.0
    return 1.0 - distance / longest


def levenshtein(a: str, b: str, limit: int | None = None) -> int:
    """Edit distance between ``a`` and ``b``: the fewest single-character insertions, deletions and
    substitutions turning one into the other. With ``limit``, a distance over it is returned as ``limit + 1``,
    as soon as it is known to exceed it.

    Dynamic programming over two rows of ``len(shorter) + 1`` cells: O(len(a) · len(b)) time. A shared
    prefix and suffix are cut first, and a row whose every cell exceeds ``limit`` ends the search, since
    the cells of later rows can only grow.

    >>> levenshtein("kitten", "sitting"), levenshtein("", "abc"), levenshtein("abcdef", "uvwxyz", limit=2)
    (3, 3, 3)
    """
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    a, b = a[start:len(a) - end], b[start:len(b) - end]
    if len(a) < len(b):
        a, b = b, a
    if limit is not None and len(a) - len(b) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        if limit is not None and min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1] if limit is None else min(previous[-1], limit + 1)


def _normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())
