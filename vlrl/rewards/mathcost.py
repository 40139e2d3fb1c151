r"""Cost bounds for the ``math`` reward: the checks that stand in for math-verify's disabled timeouts.

math-verify evaluates what it compares (``doit``, ``evalf``, ``simplify``), and its LaTeX parser already
evaluates a few commands while parsing. A short answer can therefore run for hours: ``9^{9^{9}}`` has 370
million digits, ``(x+1)^{1000}`` expands into 1001 terms with 300-digit coefficients, ``\log`` nested eight
deep sends ``evalf`` chasing precision, ``\binom{10^{6}}{500000}`` is computed by the parser itself.

The checks here bound those costs from the text (before parsing) or from the unevaluated SymPy tree
(before comparing), in time linear in their size. They are deliberately loose: answers a task could
expect stay far below every bound, and an answer over one scores 0.0.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import sympy
from math_verify import parse
from sympy.concrete.expr_with_limits import ExprWithLimits

MAX_DIGITS = 10_000  # exact numbers: 10,000 digits cost ~0.1 s to build and compare
MAX_TERMS = 200  # expansions and sums: simplify takes ~0.5 s at 300 terms of (x+1)^n, ~12 s at 1000
MAX_CALLS = 5  # nested function calls: evalf ran for minutes on \log nested 8 deep

# latex2sympy evaluates these while parsing, so their arguments are sized before the parser runs...
_EAGER_RE = re.compile(r"\\(?:[dt]?binom|Gamma|gamma)(?![A-Za-z])")
# ...and these always run when parsed; no answer needs the parser to build or reduce a matrix.
_REFUSED_RE = re.compile(
    r"\\(?:choose|det)(?![A-Za-z])"
    r"|\\operatorname\s*\{\s*(?:eye|rank|trace|tr|rref|nullspace|norm|cols|rows|eig\w*|diagonalize|svd)\s*\}",
    re.IGNORECASE,
)
_CLOSERS = {"{": "}", "(": ")", "[": "]"}


def bracket_depth(text: str) -> int:
    """Deepest nesting of ``( [ {`` in ``text`` (a stray closer does not go below zero).

    >>> bracket_depth("f((x)) + [y]")
    2
    """
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth = max(depth - 1, 0)
    return deepest


def text_too_costly(text: str) -> bool:
    r"""Whether parsing ``text`` would evaluate something over the bounds: a binomial or Gamma function
    whose arguments are too large (``\binom{10^{6}}{500000}``, ``\Gamma(10^{6})``), or a matrix
    operation or TeX's ``\choose``, which are refused outright.

    >>> text_too_costly(r"\binom{10}{3}"), text_too_costly(r"\binom{10^{6}}{500000}")
    (False, True)
    """
    if _REFUSED_RE.search(text):
        return True
    for match in _EAGER_RE.finditer(text):
        binomial = "binom" in match.group()
        args = _arguments(text, match.end(), 2 if binomial else 1)
        if args is None:  # \gamma the constant, or a call the parser will not read as one
            continue
        bounds = [_pow10(_magnitude(a)) for a in args]
        # binomial(n, k) multiplies k numbers of up to log10(n) digits; Gamma(x) is (x - 1)!.
        digits = min(bounds) * math.log10(max(bounds[0], 2))
        if not digits <= MAX_DIGITS:
            return True
    return False


def _arguments(text: str, start: int, count: int) -> list[str] | None:
    r"""The next ``count`` bracketed groups after ``start`` (``{…}``, ``(…)`` or ``\left(…\right)``), or None."""
    args = []
    i = start
    for _ in range(count):
        while i < len(text) and text[i].isspace():
            i += 1
        if text.startswith("\\left", i):
            i += len("\\left")
        if i >= len(text) or text[i] not in _CLOSERS:
            return None
        opener, closer, depth = text[i], _CLOSERS[text[i]], 0
        for j in range(i, len(text)):
            if text[j] == opener and text[j - 1] != "\\":
                depth += 1
            elif text[j] == closer and text[j - 1] != "\\":
                depth -= 1
                if depth == 0:
                    args.append(text[i + 1:j].removesuffix("\\right"))
                    i = j + 1
                    break
        else:
            return None
    return args


def _magnitude(arg: str) -> float:
    """Bound on log10 of the value of the LaTeX ``arg`` (inf when it is itself too costly to parse)."""
    if text_too_costly(arg):
        return math.inf
    parsed = [p for p in parse(f"${arg}$", parsing_timeout=None, raise_on_error=False) if isinstance(p, sympy.Basic)]
    try:
        return _size(parsed[0]).magnitude if parsed else 0.0
    except RecursionError:
        return math.inf


def too_costly(expr: object) -> bool:
    """Whether comparing the parsed ``expr`` could build an exact number over MAX_DIGITS digits, expand or
    sum over MAX_TERMS terms, or evaluate function calls nested deeper than MAX_CALLS. Strings (math-verify's
    unparsed matches) cost nothing.

    >>> too_costly(sympy.sympify("2**10")), too_costly(sympy.Pow(9, sympy.Pow(9, 9, evaluate=False), evaluate=False))
    (False, True)
    """
    if isinstance(expr, sympy.MatrixBase):
        return any(too_costly(e) for e in expr)
    if not isinstance(expr, sympy.Basic):
        return False
    try:
        size = _size(expr)
    except RecursionError:  # a tree this deep is no answer either
        return True
    # Written as "not within" so that a NaN bound counts as too costly.
    return not (size.digits <= MAX_DIGITS and size.terms <= MAX_TERMS and size.calls <= MAX_CALLS)


class _Size(NamedTuple):
    """Upper bounds for an unevaluated SymPy expression; they saturate at inf."""

    magnitude: float  # log10 of its absolute value
    digits: float  # decimal digits of the largest exact number evaluating it builds
    terms: float  # terms once expanded (or summed)
    calls: int  # deepest nesting of function calls


def _size(expr: sympy.Basic) -> _Size:
    # Symbols count as magnitude 1 (about 10), so that x^{10^{6}} is bounded too.
    if isinstance(expr, sympy.Rational):  # Integer included
        p, q = abs(int(expr.p)), int(expr.q)
        if p == 0:
            return _Size(0.0, 1.0, 1.0, 0)
        return _Size(math.log10(p) - math.log10(q), math.log10(max(p, q)) + 1, 1.0, 0)
    if isinstance(expr, sympy.Float):
        value = abs(float(expr))
        magnitude = math.log10(value) if 0 < value < math.inf else (0.0 if value == 0 else math.inf)
        return _Size(magnitude, max(magnitude, 0.0), 1.0, 0)
    if not expr.args:  # symbols, pi, E, infinity
        return _Size(1.0, 1.0, 1.0, 0)
    if isinstance(expr, ExprWithLimits):  # sums, products, integrals
        return _limits_size(expr)
    sizes = [_size(a) for a in expr.args]
    digits = max(s.digits for s in sizes)
    calls = max(s.calls for s in sizes) + isinstance(expr, sympy.Function)
    if isinstance(expr, sympy.Pow):
        base, exponent = sizes
        power = _pow10(exponent.magnitude) * (1 + 1e-9)  # bound on |exponent|; 10**log10(24) may be < 24
        terms = base.terms + exponent.terms
        if expr.base.free_symbols:  # (x + 1)^n may be expanded: C(n + k - 1, k - 1) terms for k summands
            fits = power <= MAX_TERMS and base.terms <= MAX_TERMS
            terms = math.comb(int(power) + int(base.terms) - 1, int(base.terms) - 1) if fits else math.inf
        # p^n has about n·log10(p) digits; for a rational base its larger term counts.
        digits = max(digits, _times(max(abs(base.magnitude), base.digits - 1), power))
        return _Size(_times(abs(base.magnitude), power), digits, terms, calls)
    if isinstance(expr, (sympy.factorial, sympy.factorial2, sympy.subfactorial, sympy.binomial, sympy.gamma)):
        n = _pow10(sizes[0].magnitude)
        magnitude = n * math.log10(n) if n > 1 else 1.0
        return _Size(magnitude, max(digits, magnitude), 1.0, calls)
    if isinstance(expr, sympy.Mul):
        magnitude = sum(s.magnitude for s in sizes)
        digits = max(digits, sum(s.digits for s in sizes))
        return _Size(magnitude, digits, math.prod(s.terms for s in sizes), calls)
    magnitude = max(s.magnitude for s in sizes) + math.log10(len(sizes))
    return _Size(magnitude, digits, sum(s.terms for s in sizes), calls)


def _limits_size(expr: ExprWithLimits) -> _Size:
    # A sum or product over n values may be evaluated term by term: n times the body.
    body = _size(expr.function)
    span = 1.0
    for limit in expr.limits:
        span *= max(1.0, sum(_pow10(_size(bound).magnitude) for bound in limit[1:]))
    return _Size(body.magnitude + math.log10(span), body.digits, body.terms * span, body.calls + 1)


def _pow10(x: float) -> float:
    return math.inf if x > 300 else 10.0**x


def _times(a: float, b: float) -> float:
    # 0 * inf is NaN, which would slip through every comparison; a zero factor wins.
    return 0.0 if a == 0 or b == 0 else a * b
