"""Answer verifiers: ``exact_text``, ``one_of``, ``number``, ``choice``, and the task router ``accuracy``
(which also routes to ``math``, ``ocr``, ``yes_no`` and ``iou`` in their own modules).

Each verifier reads the *answer region* of the completion — the content of the last
``<answer>…</answer>``, or the whole completion when there are no tags and ``fallback_to_completion``
(the default) — and returns 1.0 for a match, 0.0 otherwise. Unparseable model output scores 0.0; a
ground truth the verifier cannot parse raises ValueError, which the mixer scores 0.0 and counts, since
it is a data error the user should see.
"""

from __future__ import annotations

import json
import math
import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from vlrl.rewards.base import RewardInput, answer_region, check_params, get_reward, register_reward

_ARTICLES = frozenset({"a", "an", "the"})


def normalize_text(text: str) -> str:
    """Unicode NFKC, case-folded, punctuation to spaces, articles a/an/the dropped, whitespace collapsed.

    Punctuation becomes a space rather than vanishing so that "red,blue" and "red, blue" agree.

    >>> normalize_text("  The Red-Cube! ")
    'red cube'
    """
    chars = (" " if unicodedata.category(c).startswith("P") else c for c in unicodedata.normalize("NFKC", text).casefold())
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


# A number: optional sign (not glued to a preceding word, digit or "^", so "3-4" reads 3 and 4 and "cm^2" no
# 2), optional currency sign, digits with optional comma thousand separators, optional decimals; then at most
# one of an exponent "e3", a power of ten "× 10^3" or a power "^2"; optional "/denominator"; optional percent.
_NUM = r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+"
_NUMBER_RE = re.compile(
    rf"(?<![\w.^])(?P<sign>[+-]?)[$€£¥]?(?P<num>{_NUM})"
    r"(?:[eE](?P<exp>[+-]?[0-9]+)"
    r"|\s*(?:[x×*·]|\\times|\\cdot)\s*10\s*\^\s*\{?(?P<exp10>[+-]?[0-9]+)\}?"
    r"|\s*\^\s*\{?(?P<pow>[+-]?[0-9]+)\}?)?"
    rf"(?:\s*/\s*(?P<den>{_NUM}))?"
    r"(?P<pct>\s*\\?%|\s+percent\b)?"
)
_MAX_EXPONENT = 400  # beyond float range anyway; a bigger one would make Fraction build a huge integer
_SMALL_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS_WORDS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORD_NUMBER_RE = re.compile(
    rf"\b(?:(?P<tens>{'|'.join(_TENS_WORDS)})(?:[\s-]+(?P<unit>{'|'.join(_SMALL_WORDS[1:10])}))?"
    rf"|(?P<small>{'|'.join(_SMALL_WORDS)}))\b",
    re.IGNORECASE,
)
# NFKC turns full-width digits into ASCII but leaves the minus sign alone, and would make "m²" read "m2"
# and "½" read "1⁄2" with a fraction slash; these three are mapped to "-", "^2" and "/".
_NUMBER_CHARS = str.maketrans({"\u2212": "-", "\u2044": "/", **{c: f"^{i}" for i, c in enumerate("⁰¹²³⁴⁵⁶⁷⁸⁹")}})


def read_numbers(text: str, *, percent_as_fraction: bool = False, words: bool = True) -> list[float | None]:
    """Every number written in ``text``, in order; None for one that is written but cannot be read
    (``1/0``, ``1e999``). See :func:`parse_number` for the forms read.

    >>> read_numbers("3 + 4 = 7"), read_numbers("one or two"), read_numbers("1/0 or 2")
    ([3.0, 4.0, 7.0], [1.0, 2.0], [None, 2.0])
    """
    # Superscripts must be mapped before NFKC and the fraction slash it produces after.
    text = unicodedata.normalize("NFKC", text.translate(_NUMBER_CHARS)).translate(_NUMBER_CHARS)
    values = [_match_value(m, percent_as_fraction) for m in _NUMBER_RE.finditer(text)]
    if not values and words:
        values = [_word_value(m) for m in _WORD_NUMBER_RE.finditer(text)]
    return values


def parse_number(text: str, *, percent_as_fraction: bool = False, words: bool = True) -> float | None:
    """The last readable number in ``text`` as a float, or None when there is none.

    Reads ints, decimals, "1,234" thousand separators, a leading +/- (also "−"), a currency sign ("$5"),
    exponents "1.5e3", powers of ten "1.5 × 10^3" / "1.5 \\times 10^{3}", powers "2^10", simple fractions
    "3/4", and a trailing "%" / "percent": ignored by default ("50%" is 50, so it matches a ground truth
    written "50"), divided by 100 with ``percent_as_fraction`` ("50%" is 0.5). Units after the number are
    ignored ("12 cm"). With ``words``, number words "zero" to "ninety-nine" are read, but only when the text
    has no number in digits, since "one" is also a pronoun. The last number is taken because a model's
    answer usually ends with its result ("3 + 4 = 7").

    >>> parse_number("about -1,234.5"), parse_number("3/4"), parse_number("1.5 x 10^3 m")
    (-1234.5, 0.75, 1500.0)
    >>> parse_number("50%"), parse_number("50%", percent_as_fraction=True), parse_number("Twenty-one")
    (50.0, 0.5, 21.0)
    """
    values = read_numbers(text, percent_as_fraction=percent_as_fraction, words=words)
    return next((v for v in reversed(values) if v is not None), None)


_TRUTH_WRAPPER_RE = re.compile(r"^\$+(.*?)\$+$|^\\boxed\{(.*)\}$", re.DOTALL)


def truth_number(text: str, *, percent_as_fraction: bool = False, words: bool = True) -> float | None:
    """The value of a ground truth that *is* one number (forms as :func:`parse_number`; ``$…$``,
    ``\\boxed{…}`` and a final period around it are ignored), else None — unlike :func:`parse_number`,
    which finds the last number *in* a text.

    >>> truth_number("1,500"), truth_number("three"), truth_number("x^2+1"), truth_number("12 apples")
    (1500.0, 3.0, None, None)
    """
    text = unicodedata.normalize("NFKC", text.translate(_NUMBER_CHARS)).translate(_NUMBER_CHARS).strip()
    wrapped = _TRUTH_WRAPPER_RE.match(text)
    while wrapped:
        text = (wrapped.group(1) if wrapped.group(1) is not None else wrapped.group(2)).strip()
        wrapped = _TRUTH_WRAPPER_RE.match(text)
    text = text.rstrip(".").strip()
    match = _NUMBER_RE.fullmatch(text)
    if match:
        return _match_value(match, percent_as_fraction)
    word = _WORD_NUMBER_RE.fullmatch(text) if words else None
    return _word_value(word) if word else None


def _match_value(match: re.Match, percent_as_fraction: bool) -> float | None:
    try:
        value = Fraction(match["num"].replace(",", ""))
        power = match["exp"] or match["exp10"]
        if power is not None:
            if abs(int(power)) > _MAX_EXPONENT:
                return None
            value *= Fraction(10) ** int(power)
        if match["pow"] is not None:
            if abs(int(match["pow"])) * math.log10(max(abs(value), 2)) > _MAX_EXPONENT:
                return None
            value **= int(match["pow"])
        if match["den"]:
            value /= Fraction(match["den"].replace(",", ""))
        if match["pct"] and percent_as_fraction:
            value /= 100
        result = float(-value if match["sign"] == "-" else value)
    except (ValueError, OverflowError, ZeroDivisionError):
        return None
    return result if math.isfinite(result) else None


def _word_value(match: re.Match) -> float:
    if match["small"]:
        return float(_SMALL_WORDS.index(match["small"].lower()))
    tens = 20 + 10 * _TENS_WORDS.index(match["tens"].lower())
    return float(tens + (_SMALL_WORDS.index(match["unit"].lower()) if match["unit"] else 0))


@register_reward("number")
def number(
    inp: RewardInput,
    rel_tol: float = 1e-6,
    abs_tol: float = 0.0,
    fallback_to_completion: bool = True,
    single: bool = False,
    percent_as_fraction: bool = False,
    words: bool = True,
) -> float | None:
    """1.0 when the last number of the answer region is close to the ground-truth number
    (``math.isclose`` with ``rel_tol``/``abs_tol``); 0.0 when no number can be read from the output.
    None (the reward does not apply, counted by the mixer) when the ground truth is not one number
    (:func:`truth_number`): an expression or a sentence with a number in it is no count to match.
    ``single=True`` also scores 0.0 when the region holds more than one number: for answers that are a bare
    number (counts), it stops a policy from listing several candidates and being credited for the last.
    ``percent_as_fraction`` and ``words`` apply to both sides, as described in :func:`parse_number`.

    >>> number(RewardInput("<answer>$1,500 total</answer>", "1.5e3", "count"))
    1.0
    """
    options = {"percent_as_fraction": percent_as_fraction, "words": words}
    truth = truth_number(str(inp.answer), **options)
    if truth is None:
        return None  # a truth like "x^2+1" names no number: reading its last digit would reward noise
    region = answer_region(inp.completion, fallback_to_completion)
    values = read_numbers(region, **options) if region is not None else []
    pred = next((v for v in reversed(values) if v is not None), None)
    if pred is None or (single and len(values) > 1):
        return 0.0
    return 1.0 if math.isclose(pred, truth, rel_tol=rel_tol, abs_tol=abs_tol) else 0.0


# Forms of a choice letter, tried in order; the first that matches decides.
_CHOICE_PATTERNS = (
    # The whole region is the letter, maybe bracketed and/or followed by "." or ":" ("b", "(B)", "B.").
    re.compile(r"^[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:]?$"),
    # A phrase naming the answer: "the answer is B", "Answer: (C)", "option D". The last such phrase wins.
    re.compile(r"\b(?i:answer|option|choice)\b\s*(?i:is)?\s*:?\s*[(\[]?([A-Z])(?![\w])"),
    # The region starts with a bracketed letter or a letter and delimiter: "(B) cat", "B) cat", "B. cat".
    re.compile(r"^[(\[]([A-Z])[)\]]|^([A-Z])[).:](?:\s|$)"),
    # A bracketed letter anywhere: "I pick (B) because ...". The last one wins.
    re.compile(r"[(\[]([A-Z])[)\]]"),
)


def parse_choice(text: str) -> str | None:
    """The multiple-choice letter (upper case) named in ``text``, or None.

    Accepts "B", "(B)", "B.", "B) text", "the answer is B", "Answer: (C)", "option D"; a bare capital inside
    prose ("A cat") is not read as a choice, because it is indistinguishable from a word.

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


def choice_options(options: Sequence[str] | Mapping[str, str] | str | None, meta: Mapping | None) -> dict[str, str]:
    """Letter -> normalised option text, from ``options`` or else the row's ``meta["options"]`` /
    ``meta["choices"]``; {} when neither is there.

    Either form may be a list (letters A, B, C, ... in order) or a mapping letter -> text, or JSON text of
    one. A label repeating the option's own letter is dropped ("A. cat" is option A, "cat"). A malformed
    spec raises ValueError: it is a data error.

    >>> choice_options(["A. red cube", "blue ball"], None)
    {'A': 'red cube', 'B': 'blue ball'}
    """
    spec = options if options is not None else next(
        (meta[k] for k in ("options", "choices") if meta and meta.get(k) is not None), None
    )
    if spec is None:
        return {}
    if isinstance(spec, str):
        spec = json.loads(spec)  # JSONDecodeError is a ValueError
    if isinstance(spec, Mapping):
        items = [(str(k).strip(" ()[].:").upper(), v) for k, v in spec.items()]
    elif isinstance(spec, Sequence) and not isinstance(spec, str) and len(spec) <= 26:
        items = [(string.ascii_uppercase[i], text) for i, text in enumerate(spec)]
    else:
        raise ValueError(f"choice: options must be a list of at most 26 texts or a letter -> text map, got {spec!r}")
    table = {}
    for letter, text in items:
        if len(letter) != 1 or letter not in string.ascii_uppercase:
            raise ValueError(f"choice: option key {letter!r} is not a letter A-Z")
        table[letter] = normalize_text(re.sub(rf"^\s*[(\[]?{letter}\s*[)\].:]\s*", "", str(text), flags=re.I))
    return table


def choice_from_text(text: str, options: Mapping[str, str]) -> str | None:
    """The letter whose option text ``text`` names (normalised, as whole words), or None when it names
    none or several. An option named only inside a longer named option ("red" in "dark red") does not count.

    >>> choice_from_text("It is the dark red one", {"A": "red", "B": "dark red"})
    'B'
    """
    rest = f" {normalize_text(text)} "
    named = []
    for letter, option in sorted(options.items(), key=lambda kv: (-len(kv[1].split()), kv[0])):
        if option and f" {option} " in rest:
            named.append(letter)
            rest = rest.replace(f" {option} ", " | ")
    return named[0] if len(named) == 1 else None


@register_reward("choice")
def choice(
    inp: RewardInput,
    options: Sequence[str] | Mapping[str, str] | None = None,
    fallback_to_completion: bool = True,
) -> float:
    """1.0 when the choice in the answer region is the ground-truth choice.

    Both sides are read as a letter first (:func:`parse_choice`); when that fails and the row has options
    (:func:`choice_options`), as the text of one option (:func:`choice_from_text` for the answer, an exact
    normalised match for the ground truth). A ground truth that is neither raises ValueError.

    >>> choice(RewardInput("<answer>a blue ball</answer>", "B", "mcq", meta={"options": ["red", "blue ball"]}))
    1.0
    """
    table = choice_options(options, inp.meta)
    truth = parse_choice(str(inp.answer))
    if truth is None:
        truth = next((k for k, v in table.items() if v and v == normalize_text(str(inp.answer))), None)
    if truth is None:
        raise ValueError(f"choice: ground truth {inp.answer!r} is not a choice letter nor an option's text")
    region = answer_region(inp.completion, fallback_to_completion)
    if region is None:
        return 0.0
    pred = parse_choice(region)
    if pred is None and table:
        pred = choice_from_text(region, table)
    return 1.0 if pred == truth else 0.0


DEFAULT_ROUTES: Mapping[str, str] = {
    "count": "number",
    "number": "number",
    "math": "math",
    "mcq": "choice",
    "grounding": "iou",
    "detection": "detection",
    "ocr": "ocr",
    "yes_no": "yes_no",
    "yesno": "yes_no",
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
    A name taken by several verifiers reaches each of them: ``threshold`` is the IoU cut of ``iou`` *and*
    the similarity cut of ``ocr``, ``max_chars`` bounds both ``math`` and ``ocr``; set such params in
    ``reward.per_task`` terms to keep them apart.
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
