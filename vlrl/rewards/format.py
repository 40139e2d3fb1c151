"""The ``format`` reward: does the completion follow the ``<think>…</think><answer>…</answer>`` layout?

Whitespace is insignificant everywhere (the tiny model's word-level tokenizer decodes as
``"<answer> red </answer>"``). Tags are matched case-sensitively.

The layout is scored as a list of checks, each worth an equal share under ``partial_credit``:

1. ``open_once``      — ``<answer>`` occurs exactly once.
2. ``close_after``    — ``</answer>`` occurs exactly once, after ``<answer>``.
3. ``answer_nonempty``— the text between them is non-empty and holds no think tag.
4. ``clean_outside``  — nothing follows ``</answer>``, and before ``<answer>`` there is nothing or
   exactly one ``<think>…</think>`` block.
5. ``think_pair``     — only when ``require_think``: ``<think>`` and ``</think>`` each occur exactly once,
   in that order, closed before ``<answer>``.

Strict mode (the default) scores 1.0 when every check passes and 0.0 otherwise; partial credit scores
the fraction passed, so a strictly valid completion gets 1.0 in both modes and text with no answer tags
gets 0.0. With ``require_think=False`` a leading think block is allowed but not required. The think block
may be empty: the reward checks layout, not reasoning.
"""

from __future__ import annotations

from vlrl.rewards.base import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    RewardInput,
    register_reward,
)


def format_checks(text: str, require_think: bool = False) -> dict[str, bool]:
    """The named layout checks of the module docstring for ``text``, in order; all True = valid."""
    s = text.strip()
    i_open, i_close = s.find(ANSWER_OPEN), s.find(ANSWER_CLOSE)
    open_once = s.count(ANSWER_OPEN) == 1
    close_after = open_once and s.count(ANSWER_CLOSE) == 1 and i_close > i_open
    checks = {"open_once": open_once, "close_after": close_after}
    if close_after:
        before = s[:i_open].strip()
        content = s[i_open + len(ANSWER_OPEN):i_close].strip()
        after = s[i_close + len(ANSWER_CLOSE):].strip()
        checks["answer_nonempty"] = bool(content) and THINK_OPEN not in content and THINK_CLOSE not in content
        checks["clean_outside"] = not after and (not before or _is_think_block(before))
    else:
        checks["answer_nonempty"] = checks["clean_outside"] = False
    if require_think:
        i_think, i_think_close = s.find(THINK_OPEN), s.find(THINK_CLOSE)
        checks["think_pair"] = (
            s.count(THINK_OPEN) == 1
            and s.count(THINK_CLOSE) == 1
            and i_think < i_think_close
            and (i_open < 0 or i_think_close < i_open)
        )
    return checks


def _is_think_block(text: str) -> bool:
    return (
        text.startswith(THINK_OPEN)
        and text.endswith(THINK_CLOSE)
        and text.count(THINK_OPEN) == 1
        and text.count(THINK_CLOSE) == 1
    )


@register_reward("format")
def format_reward(inp: RewardInput, require_think: bool = False, partial_credit: bool = False) -> float:
    """1.0 when ``inp.completion`` follows the answer-tag layout, else 0.0 (or the fraction of layout
    checks passed with ``partial_credit``). Always applies; never None.

    >>> format_reward(RewardInput("<answer> red </answer>", "red", "colour"))
    1.0
    """
    checks = format_checks(inp.completion, require_think)
    passed = sum(checks.values())
    if partial_credit:
        return passed / len(checks)
    return 1.0 if passed == len(checks) else 0.0
