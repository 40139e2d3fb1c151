r"""The ``math`` reward: is the model's answer mathematically equal to the ground truth?

Parsing and comparison are math-verify's (``math_verify.parse`` turns LaTeX or plain text into SymPy,
``math_verify.verify`` compares numerically, symbolically, as sets, intervals, equations, ...). This module
decides *which text* is compared and bounds the cost of comparing it.

Which text
----------
The answer region is the last ``<answer>…</answer>``, or the whole completion when there are no tags and
``fallback_to_completion``. The ``source`` param picks from it:

===================  ======================================================================================
source               text compared
===================  ======================================================================================
``answer_or_boxed``  the content of the last ``\boxed{}`` in the region if there is one, else the region
``boxed``            the content of the last ``\boxed{}`` in the region; a region without one scores 0.0
``answer``           the whole region (math-verify then finds what it can in it)
===================  ======================================================================================

math-verify's LaTeX reader only looks inside math delimiters, so bare ``\sqrt{8}`` would not be found.
A text without ``$``, ``\(``, ``\[`` or ``\boxed`` is therefore wrapped in ``$…$`` first — unless it reads
as prose (it holds an English word of three letters or more, LaTeX commands and ``\text{}`` aside), since
wrapped prose parses into a product of one-letter symbols; prose goes to math-verify as it stands, whose
plain-text reader finds "the answer is 3". The ground truth is read the same way, so ``\frac{1}{2}``,
``0.5`` and ``1/2`` are all one half; a ground truth SymPy cannot read raises ValueError.

Timeouts and cost guards
------------------------
math-verify bounds its own work with ``signal.alarm``. That fails outside the main thread and would
overwrite the alarm of a caller that times each reward call itself, so it is switched off here
(``parsing_timeout=None``, ``timeout_seconds=None``, ``raise_on_error=False``). Without it, a ten-character
answer such as ``9^{9^{9}}`` would run for hours, so cheap checks stand in front of the parser and the
comparison; each scores 0.0 without calling math-verify:

- ``max_chars`` (default 2000): the text to compare (the ``\boxed{}`` content, or the region) is longer.
  Parse time grows with length: up to about 2 s for 2,000 characters of ``(1,2)\cup…`` on a busy core.
- ``max_depth`` (default 10): brackets ``( [ {`` nest deeper than this. The LaTeX grammar's look-ahead
  is costly on nested brackets (around 0.1 s per level of parentheses); real answers nest 2–4 deep.
- the text asks the parser itself to evaluate something large (``\binom{10^{6}}{500000}``), or the parsed
  prediction would build a number of over 10,000 digits (``9^{9^{9}}``), expand or sum over 200 terms
  (``(x+1)^{1000}``, ``\sum_{k=1}^{10^{9}}``) or nest function calls over 5 deep; see
  :mod:`vlrl.rewards.mathcost`.

These bound the cases found so far, not every way SymPy can be slow: the caller's per-call timeout
remains the backstop.

A caller's own timeout should raise an exception derived from ``BaseException``: math-verify catches
``Exception`` inside ``parse`` and ``verify``, and would turn one into an ordinary "no match".
"""

from __future__ import annotations

import functools
import re

import math_verify.grader
import math_verify.parser
import sympy
from math_verify import parse, verify

from vlrl.rewards.base import RewardInput, answer_region, register_reward
from vlrl.rewards.mathcost import bracket_depth, text_too_costly, too_costly

# math-verify warns once per process that its own timeouts are off; ours (vlrl.rewards.runner) are on, so
# the warning would only mislead. (Module flags of math-verify 0.9; harmless where they do not exist.)
math_verify.grader.TIMEOUT_WARNING_SHOWN = True
math_verify.parser.TIMEOUT_WARNING_SHOWN = True

SOURCES = ("answer_or_boxed", "boxed", "answer")

_DELIMITED_RE = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed|\\fbox")  # "\$" is a dollar sign, not math
# A bare number in e-notation: math-verify reads "1e-3" as 1·e − 3, so it is rewritten as 1 \cdot 10^{-3}.
_E_NOTATION_RE = re.compile(r"\s*([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))[eE]([+-]?[0-9]+)\s*")
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
# \text{...}-like groups hold units or labels, and \commands are LaTeX: neither makes a text prose.
_LATEX_WORDS_RE = re.compile(r"\\(?:text\w*|mathrm|mbox|operatorname)\s*\{[^{}]*\}|\\[A-Za-z]+")
_WORD_RE = re.compile(r"[A-Za-z]{3,}")
_MATH_WORDS = frozenset(
    "and sin cos tan cot sec csc log exp sqrt max min gcd lcm mod deg arcsin arccos arctan sinh cosh tanh"
    .split()
)


@register_reward("math")
def math_answer(
    inp: RewardInput,
    source: str = "answer_or_boxed",
    fallback_to_completion: bool = True,
    max_chars: int = 2000,
    max_depth: int = 10,
) -> float:
    r"""1.0 when the answer (chosen by ``source``, see the module doc) equals the ground truth according to
    math-verify, else 0.0. Texts over ``max_chars`` characters or nesting brackets deeper than
    ``max_depth`` score 0.0 unparsed.

    >>> math_answer(RewardInput(r"<answer>so \boxed{\dfrac{1}{2}}</answer>", "0.5", "math"))
    1.0
    """
    if source not in SOURCES:
        raise ValueError(f"math: source must be one of {SOURCES}, got {source!r}")
    truth = _parse_truth(str(inp.answer))
    region = answer_region(inp.completion, fallback_to_completion)
    if region is None:
        return 0.0
    text = last_boxed(region) if source != "answer" else None
    if text is None:
        if source == "boxed":
            return 0.0
        text = region
    if not text.strip() or len(text) > max_chars or bracket_depth(text) > max_depth or text_too_costly(text):
        return 0.0
    pred = parse_math(text)
    if not pred or any(too_costly(p) for p in pred):
        return 0.0
    return 1.0 if verify(list(truth), pred, timeout_seconds=None, raise_on_error=False) else 0.0


@functools.lru_cache(maxsize=1024)
def _parse_truth(text: str) -> tuple:
    # Cached: the G completions of a prompt share one ground truth. A reading that is only the matched
    # string (math-verify keeps one when SymPy conversion fails) means the ground truth is malformed.
    parsed = parse_math(text)
    if not any(isinstance(p, (sympy.Basic, sympy.MatrixBase)) for p in parsed):
        raise ValueError(f"math: cannot read a mathematical answer from ground truth {text!r}")
    return tuple(parsed)


def parse_math(text: str) -> list:
    r"""math-verify's reading of ``text`` (SymPy objects, then the matched string), or [] when none.

    Bare LaTeX is wrapped in ``$…$``; prose is parsed as it stands (see the module doc).

    >>> parse_math(r"2\sqrt{2}")[0]
    2*sqrt(2)
    """
    number = _E_NOTATION_RE.fullmatch(text)
    if number:
        text = rf"{number[1]} \cdot 10^{{{number[2]}}}"
    if _DELIMITED_RE.search(text):
        return _parse(text)
    if _is_prose(text):
        return _parse(text)
    return _parse(f"${text}$") or _parse(text)


def _parse(text: str) -> list:
    return parse(text, parsing_timeout=None, raise_on_error=False)


def _is_prose(text: str) -> bool:
    words = _WORD_RE.findall(_LATEX_WORDS_RE.sub(" ", text))
    return any(w.lower() not in _MATH_WORDS for w in words)


def last_boxed(text: str) -> str | None:
    r"""Content of the last complete ``\boxed{…}`` (or ``\fbox{…}``) in ``text``, or None.

    Escaped braces ``\{ \}`` do not count, so a boxed set reads whole. Linear in ``len(text)``: one pass
    pairs every brace, so a flood of unclosed ``\boxed{`` costs no more than one.

    >>> last_boxed(r"\boxed{1} then \boxed{\{1, 2\}} and \boxed{3")
    '\\{1, 2\\}'
    """
    closing: dict[int, int] = {}
    stack: list[int] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            stack.append(i)
        elif char == "}" and stack:
            closing[stack.pop()] = i
        i += 1
    for match in reversed(list(_BOXED_RE.finditer(text))):
        open_at = match.end() - 1
        if open_at in closing:
            return text[open_at + 1:closing[open_at]].strip()
    return None
