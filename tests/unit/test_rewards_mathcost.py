"""Cost bounds of the ``math`` reward: what is refused before parsing or comparing, and what is not."""

import doctest

import pytest
import sympy

from vlrl.rewards import mathcost
from vlrl.rewards.mathcost import bracket_depth, text_too_costly, too_costly

TEXT_CASES = [
    (r"\frac{1}{2}", False),
    (r"\binom{10}{3}", False),
    (r"\dbinom{n}{k}", False),  # symbolic: nothing to evaluate
    (r"\binom{9999}{2}", False),  # k small: 2 multiplications
    (r"\binom{10^{6}}{500000}", True),  # 500,000 multiplications of 6-digit numbers
    (r"\tbinom {1000000} {500000}", True),
    (r"\binom{\binom{10^{6}}{500000}}{2}", True),  # nested in an argument
    (r"\Gamma(5)", False),
    (r"\Gamma\left(10^{6}\right)", True),
    (r"\Gamma{100000}", True),  # 99999! has 456,569 digits
    (r"\gamma", False),  # Euler's constant, no call
    (r"\binom{10", False),  # unclosed: the parser will not evaluate it
    (r"{n \choose k}", True),  # refused outright
    (r"\det(A)", True),
    (r"\operatorname{eye}(3)", True),
    (r"\operatorname{rank}(A)", True),
    (r"\operatorname{sgn}(x)", False),  # an unknown operator is a plain function
]


@pytest.mark.parametrize("text,expected", TEXT_CASES)
def test_text_too_costly(text, expected):
    assert text_too_costly(text) is expected


x, y = sympy.symbols("x y")


def _pow(base, exponent):
    return sympy.Pow(base, exponent, evaluate=False)


EXPR_CASES = [
    (sympy.Integer(2) ** 2024, False),  # 610 digits
    (_pow(10, 9000), False),  # 9,001 digits
    (_pow(10, 11000), True),  # 11,001 digits: over the bound
    (_pow(sympy.Rational(1, 3), 10000), False),  # 3^10000 has 4,772 digits
    (_pow(9, _pow(9, 9)), True),  # 9^(387,420,489)
    (_pow(0, _pow(9, _pow(9, 9))), True),  # a zero base does not hide the exponent's cost
    (_pow(x + 1, 199), False),  # 200 terms once expanded
    (_pow(x + 1, 200), True),
    (_pow(x + y + 1, 18), False),  # C(20, 2) = 190 terms
    (_pow(x + y + 1, 19), True),  # C(21, 2) = 210 terms
    (_pow(x, 10**6), True),  # a symbol counts as ~10: 10^6 digits
    (sympy.factorial(100, evaluate=False), False),
    (sympy.factorial(_pow(10, 100), evaluate=False), True),
    (sympy.Sum(x, (x, 1, 100)), False),
    (sympy.Sum(x, (x, 1, 10**9)), True),
    (sympy.Sum(1 / x**2, (x, 1, sympy.oo)), False),  # an infinite sum is symbolic work, not 10^n terms
    (sympy.log(sympy.log(sympy.log(sympy.log(sympy.log(x, evaluate=False))))), False),  # 5 calls deep
    (sympy.log(sympy.log(sympy.log(sympy.log(sympy.log(sympy.log(x)))))), True),  # 6
    (sympy.Matrix([[1, _pow(9, _pow(9, 9))]]), True),  # matrix entries are checked
    ("9^{9^{9}}", False),  # a string is compared as a string: no cost
    (sympy.Float("1e300"), False),
]


@pytest.mark.parametrize("expr,expected", EXPR_CASES)
def test_too_costly(expr, expected):
    assert too_costly(expr) is expected


def test_bracket_depth():
    assert bracket_depth("") == 0
    assert bracket_depth(r"\frac{1}{\sqrt{2}}") == 2
    assert bracket_depth(")))(") == 1  # stray closers do not go negative


def test_docstring_examples():
    assert doctest.testmod(mathcost).failed == 0
