"""Length and repetition penalties: ``overlong`` and ``repetition``.

Both return the *amount* of penalty in [0, 1] (0 = none) and are meant to take a negative weight in the
mixer, e.g. ``{name: overlong, weight: -1.0}``: the total then drops by up to the weight's magnitude.

``overlong`` follows DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476): with a
length limit ``L_max`` and a buffer ``L_cache``, a completion of ``L`` tokens is penalised
``0`` while ``L <= L_max - L_cache``, linearly ``(L - (L_max - L_cache)) / L_cache`` inside the buffer,
and ``1`` beyond ``L_max``. DAPO adds the negative of this to the reward; here the mixer's negative weight
does. One departure: DAPO's limit is the rollout's hard cap, so a truncated completion (``L == L_max``)
gets exactly 1 — the same here when ``max_tokens`` is the rollout's ``max_new_tokens`` (the default).

``repetition`` is the fraction of word n-grams that repeat an earlier n-gram of the same completion: a
policy looping on a phrase ("so so so so …") scores near 1, ordinary prose near 0.
"""

from __future__ import annotations

from vlrl.rewards.base import RewardInput, register_reward

# DAPO used a 4,096-token buffer under a 20,480-token limit: a fifth of the limit.
DEFAULT_BUFFER_FRACTION = 0.2


@register_reward("overlong")
def overlong(inp: RewardInput, max_tokens: int | None = None, buffer: int | None = None) -> float | None:
    """DAPO soft overlong penalty in [0, 1] (see the module docstring).

    ``max_tokens`` defaults to the rollout's ``max_new_tokens`` (``inp.max_tokens``) and ``buffer`` to a
    fifth of it. Returns None (not applicable) when the completion's token count or the limit is unknown.

    >>> overlong(RewardInput("…", "", "t", num_tokens=90, max_tokens=100), buffer=20)  # (90 - 80) / 20
    0.5
    """
    limit = max_tokens if max_tokens is not None else inp.max_tokens
    if inp.num_tokens is None or limit is None:
        return None
    if limit <= 0:
        raise ValueError(f"overlong: max_tokens must be positive, got {limit}")
    cache = buffer if buffer is not None else max(1, round(DEFAULT_BUFFER_FRACTION * limit))
    if not 0 < cache <= limit:
        raise ValueError(f"overlong: buffer must be in (0, max_tokens={limit}], got {cache}")
    start = limit - cache
    if inp.num_tokens <= start:
        return 0.0
    return min(1.0, (inp.num_tokens - start) / cache)


@register_reward("repetition")
def repetition(inp: RewardInput, ngram: int = 4, min_words: int = 8, max_words: int = 20_000) -> float:
    """Fraction of the completion's word ``ngram``-grams already seen earlier in it, in [0, 1].

    Completions shorter than ``min_words`` words score 0 (too short to loop). Only the first ``max_words``
    words are read, which bounds the time on a degenerate megabyte of output (the fraction of a looping
    prefix is a fair estimate of the whole).

    >>> repetition(RewardInput("a b a b a b a b", "", "t"), ngram=2, min_words=2)  # 7 bigrams, 5 repeats
    0.7142857142857143
    """
    if ngram < 1:
        raise ValueError(f"repetition: ngram must be >= 1, got {ngram}")
    words = inp.completion.split(maxsplit=max_words)[:max_words]
    if len(words) < max(min_words, ngram):
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    total = len(words) - ngram + 1
    for i in range(total):
        gram = tuple(words[i:i + ngram])
        if gram in seen:
            repeats += 1
        else:
            seen.add(gram)
    return repeats / total
