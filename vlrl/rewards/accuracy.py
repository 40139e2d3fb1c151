"""Answer verifiers: ``exact_text``, ``number``, ``choice``, and the task router ``accuracy``.

Each verifier reads the *answer region* of the completion — the content of the last
``<answer>…</answer>``, or the whole completion when there are no tags and ``fallback_to_completion``
(the default) — and returns 1.0 for a match, 0.0 otherwise. Unparseable model output scores 0.0; a
ground truth the verifier cannot parse raises ValueError, which the mixer scores 0.0 and counts, since
it is a data error the user should see.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from vlrl.rewards.base import RewardInput, answer_region, check_params, get_reward, register_reward

_ARTICLES = frozenset({"a", "an", "the"})


def normalize_text(text: str) -> str:
    """Lowercase, punctuation to spaces, articles a/an/the dropped, whitespace collapsed.

    Punctuation becomes a space rather than vanishing so that "red,blue" and "red, blue" agree.

    >>> normalize_text("  The Red-Cube! ")
    'red cube'
    """
    chars = (" " if unicodedata.category(c).startswith("P") else c for c in text.lower())
    return " ".join(w for w in "".join(chars).split() if w not in _ARTICLES)


@register_reward("exact_text")
def exact_text(inp: RewardInput, fallback_to_completion: bool = True) -> float:
    """1.0 when the normalised answer region equals the normalised ground truth (see
    :func:`normalize_text`); an empty prediction never matches."""
    region = answer_region(inp.completion, fallback_to_completion)
    if region is None:
        return 0.0
    pred = normalize_text(region)
    return 1.0 if pred and pred == normalize_text(str(inp.answer)) else 0.0


@register_reward("one_of")
def one_of(inp: RewardInput, options: Sequence[str] = (), fallback_to_completion: bool = True) -> float:
    """1.0 when the normalised answer region is one of ``options`` (right or wrong): a shaping term that
    rewards answering in the task's answer space (a colour word to a colour question, a letter to a
    multiple-choice one) while the policy learns which is right. It does not by itself keep every valid answer
    sampled: on the tiny demo it sped learning up and the answers then collapsed to one per task. Next to a
    ``format`` term, pass ``fallback_to_completion=False``: otherwise a bare untagged answer earns it too, and a
    policy can learn to drop the tags (it did there; ``docs/tiny_demo_tuning.md``).

    >>> one_of(RewardInput("<answer> Blue </answer>", "red", "colour"), options=["red", "blue"])
    1.0
    """
    region = answer_region(inp.completion, fallback_to_completion)
    if region is None:
        return 0.0
    allowed = {normalize_text(str(o)) for o in options}
    return 1.0 if normalize_text(region) in allowed else 0.0


# A number: optional sign (not glued to a preceding word or digit, so "3-4" reads 3 and 4), digits with
# optional comma thousand separators, optional decimals and exponent, optional "/denominator", optional %.
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_NUMBER_RE = re.compile(
    rf"(?<![\w.])(?P<sign>[+-]?)(?P<num>{_NUM})(?:[eE](?P<exp>[+-]?\d+))?"
    rf"(?:\s*/\s*(?P<den>{_NUM}))?(?:\s*%)?"
)


def parse_number(text: str) -> float | None:
    """The last number in ``text`` as a float, or None when there is none.

    Handles ints, decimals, "1,234" thousand separators, leading +/-, exponents, simple fractions "3/4"
    and a trailing "%" (ignored: "50%" is 50, so it matches a ground truth written "50"). The last number
    is taken because a model's answer usually ends with its result ("3 + 4 = 7").

    >>> parse_number("about -1,234.5")
    -1234.5
    >>> parse_number("3/4")
    0.75
    """
    matches = list(_NUMBER_RE.finditer(text))
    for match in reversed(matches):
        value = _match_value(match)
        if value is not None:
            return value
    return None


def _match_value(match: re.Match) -> float | None:
    try:
        value = Fraction(match["num"].replace(",", ""))
        if match["exp"]:
            value *= Fraction(10) ** int(match["exp"])
        if match["den"]:
            den = Fraction(match["den"].replace(",", ""))
            if den == 0:
                return None
            value /= den
        result = float(-value if match["sign"] == "-" else value)
    except (ValueError, OverflowError, ZeroDivisionError):
        return None
    return result if math.isfinite(result) else None


@register_reward("number")
def number(
    inp: RewardInput,
    rel_tol: float = 1e-6,
    abs_tol: float = 0.0,
    fallback_to_completion: bool = True,
    single: bool = False,
) -> float:
    """1.0 when the last number of the answer region is close to the ground-truth number
    (``math.isclose`` with ``rel_tol``/``abs_tol``); 0.0 when no number can be read from the output.
    ``single=True`` also scores 0.0 when the region holds more than one number: for answers that are a bare
    number (counts), it stops a policy from listing several candidates and being credited for the last."""
    truth = parse_number(str(inp.answer))
    if truth is None:
        raise ValueError(f"number: ground truth {inp.answer!r} holds no number")
    region = answer_region(inp.completion, fallback_to_completion)
    pred = parse_number(region) if region is not None else None
    if pred is None:
        return 0.0
    if single and len(_NUMBER_RE.findall(region)) > 1:
        return 0.0
    return 1.0 if math.isclose(pred, truth, rel_tol=rel_tol, abs_tol=abs_tol) else 0.0


# Forms of a choice letter, tried in order; the first that matches decides.
_CHOICE_PATTERNS = (
    # The whole region is the letter, maybe bracketed and/or followed by "." or ":" ("b", "(B)", "B.").
    re.compile(r"^[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:]?$"),
    # A phrase naming the answer: "the answer is B", "Answer: (C)", "option D". The last such phrase wins.
    re.compile(r"(?i:answer|option|choice)\s*(?i:is)?\s*:?\s*[(\[]?([A-Z])(?![\w])"),
    # The region starts with a bracketed letter or a letter and delimiter: "(B) cat", "B) cat", "B. cat".
    re.compile(r"^[(\[]([A-Z])[)\]]|^([A-Z])[).:](?:\s|$)"),
    # A bracketed letter anywhere: "I pick (B) because ...". The last one wins.
    re.compile(r"[(\[]([A-Z])[)\]]"),
)


def parse_choice(text: str) -> str | None:
    """The multiple-choice letter (upper case) named in ``text``, or None.

    Accepts "B", "(B)", "B.", "B) text", "the answer is B"; a bare capital inside prose ("A cat") is not
    read as a choice, because it is indistinguishable from a word.

    >>> parse_choice("B) a red cube"), parse_choice("I think the answer is C."), parse_choice("A cat")
    ('B', 'C', None)
    """
    text = text.strip()
    for pattern in _CHOICE_PATTERNS:
        matches = list(pattern.finditer(text))
        if matches:
            last = matches[-1]
            return next(g for g in last.groups() if g).upper()
    return None


@register_reward("choice")
def choice(inp: RewardInput, fallback_to_completion: bool = True) -> float:
    """1.0 when the choice letter in the answer region equals the ground-truth letter."""
    truth = parse_choice(str(inp.answer))
    if truth is None:
        raise ValueError(f"choice: ground truth {inp.answer!r} is not a choice letter")
    region = answer_region(inp.completion, fallback_to_completion)
    pred = parse_choice(region) if region is not None else None
    return 1.0 if pred == truth else 0.0


DEFAULT_ROUTES: Mapping[str, str] = {
    "count": "number",
    "math": "number",
    "number": "number",
    "mcq": "choice",
    "grounding": "iou",
}
DEFAULT_VERIFIER = "exact_text"


def route(task: str, routes: Mapping[str, str] | None = None) -> str:
    """The verifier name for ``task``: ``routes`` (overrides) over :data:`DEFAULT_ROUTES`, else
    :data:`DEFAULT_VERIFIER`."""
    table = {**DEFAULT_ROUTES, **(routes or {})}
    return table.get(task, DEFAULT_VERIFIER)


@register_reward("accuracy")
def accuracy(inp: RewardInput, routes: Mapping[str, str] | None = None, **params: Any) -> float | None:
    """Score ``inp`` with the verifier routed by ``inp.task`` (see :func:`route`).

    ``params`` are forwarded to the routed verifier, keeping only the names it accepts, so one term can
    carry e.g. ``rel_tol`` for numbers and ``box_format`` for boxes. Returns what the verifier returns.
    """
    name = route(inp.task, routes)
    fn = get_reward(name)
    if fn is accuracy:
        raise ValueError("accuracy: a route may not point back to 'accuracy'")
    return fn(inp, **_accepted(fn, params))


def _accepted(fn: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    kept = {}
    for key, value in params.items():
        try:
            check_params(fn, {key: value})
        except ValueError:
            continue
        kept[key] = value
    return kept


def _check_accuracy_params(params: Mapping[str, Any]) -> None:
    """Reject params that no verifier reachable through the route table accepts (a typo would otherwise
    be silently dropped by every row)."""
    routes = params.get("routes") or {}
    if not isinstance(routes, Mapping):
        raise ValueError(f"accuracy: routes must be a mapping of task -> reward name, got {routes!r}")
    names = {*DEFAULT_ROUTES.values(), DEFAULT_VERIFIER, *routes.values()}
    if "accuracy" in names:
        raise ValueError("accuracy: a route may not point back to 'accuracy'")
    verifiers = [get_reward(n) for n in sorted(names)]
    for key in params:
        if key != "routes" and not any(_accepted(fn, {key: params[key]}) for fn in verifiers):
            raise ValueError(f"accuracy: param {key!r} is accepted by none of the routed verifiers {sorted(names)}")


accuracy.check_params = _check_accuracy_params
