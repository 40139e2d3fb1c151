"""The ``math`` verifier: which text is compared, math-verify's equivalences, and the cost guards."""

import doctest
import time

import pytest

from vlrl.rewards import RewardInput, get_reward, mathexpr
from vlrl.rewards.mathexpr import last_boxed


def run(completion: str, answer: str, **params):
    return get_reward("math")(RewardInput(completion=completion, answer=answer, task="math"), **params)


MATH_CASES = [
    # (completion, ground truth, params, expected)
    ("<answer>0.5</answer>", r"\frac{1}{2}", {}, 1.0),  # bare LaTeX ground truth
    ("<answer>1/2</answer>", "0.5", {}, 1.0),
    (r"<answer>\frac{1}{2}</answer>", "1/2", {}, 1.0),
    (r"<answer>\dfrac{3}{4}</answer>", "0.75", {}, 1.0),  # \dfrac is \frac
    ("<answer>x=3</answer>", "3", {}, 1.0),  # an assignment's value
    ("<answer>x = 3</answer>", "4", {}, 0.0),
    (r"\boxed{42}", "42", {}, 1.0),  # no tags: the completion's last \boxed{}
    (r"<answer>2\sqrt{2}</answer>", r"\sqrt{8}", {}, 1.0),
    (r"<answer>\sqrt{8}</answer>", r"3\sqrt{2}", {}, 0.0),
    (r"<answer>\{3, 1, 2\}</answer>", r"\{1,2,3\}", {}, 1.0),  # sets ignore order
    (r"<answer>\{1, 2\}</answer>", r"\{1,2,3\}", {}, 0.0),
    ("<answer>x=2 or x=3</answer>", r"\{2,3\}", {}, 1.0),  # two solutions are the set of them
    ("<answer>(1, 2]</answer>", "(1,2]", {}, 1.0),  # an interval, not the tuple (1, 2)
    ("<answer>(1, 2)</answer>", "(1,2]", {}, 0.0),  # the open end matters
    (r"<answer>[0, \infty)</answer>", r"[0,\infty)", {}, 1.0),
    ("<answer>50%</answer>", r"50\%", {}, 1.0),
    ("<answer>0.5</answer>", r"50\%", {}, 1.0),  # math-verify reads a percent either way
    ("<answer>0.6</answer>", r"50\%", {}, 0.0),
    ("<answer>1,000</answer>", "1000", {}, 1.0),
    ("<answer>1e-3</answer>", "0.001", {}, 1.0),  # e-notation, which math-verify reads as 1·e − 3
    ("<answer>2.5E3</answer>", "2500", {}, 1.0),
    (r"<answer>\$5</answer>", "5", {}, 1.0),  # an escaped dollar sign is not a math delimiter
    (r"<answer>-\frac{1}{3}</answer>", "-1/3", {}, 1.0),
    ("<answer>1/3</answer>", "-1/3", {}, 0.0),  # the sign matters
    ("<answer>0.333333</answer>", "1/3", {}, 1.0),  # equal to 6 decimals
    ("<answer>0.33</answer>", "1/3", {}, 0.0),
    ("<answer>x^2 + 2x + 1</answer>", "(x+1)^2", {}, 1.0),  # symbolic equality
    ("<answer>2x+5</answer>", "2", {}, 0.0),  # an expression is not its leading number
    ("<answer>The answer is 3</answer>", "3", {}, 1.0),  # prose is read as it stands
    ("<answer>3 apples</answer>", "3", {}, 1.0),
    (r"<answer>12 \text{ cm}</answer>", "12", {}, 1.0),  # units in \text{} are dropped
    ("<answer>7</answer>", "3", {}, 0.0),
    ("<answer></answer>", "3", {}, 0.0),  # empty answer
    ("<answer>no idea</answer>", "3", {}, 0.0),  # nothing to read
    ("3", "3", {}, 1.0),  # no tags: the whole completion by default
    ("3", "3", {"fallback_to_completion": False}, 0.0),
    # \boxed{} inside the answer region: its content is compared, not the words around it.
    (r"<answer>2 + 2 = \boxed{4}</answer>", "4", {}, 1.0),
    (r"<answer>\boxed{1} no wait \boxed{4}</answer>", "4", {}, 1.0),  # the last \boxed{} wins
    (r"<answer>\boxed{1} no wait \boxed{4}</answer>", "1", {}, 0.0),
    (r"\boxed{9} <answer>4</answer>", "4", {}, 1.0),  # a \boxed{} outside the region is not read
    (r"<answer>\boxed{4}</answer>", "4", {"source": "boxed"}, 1.0),
    ("<answer>4</answer>", "4", {"source": "boxed"}, 0.0),  # "boxed" needs a \boxed{}
    (r"<answer>4 \boxed{5}</answer>", "5", {"source": "answer"}, 1.0),  # math-verify prefers \boxed too
    # Guards: a text over max_chars scores 0.0 unparsed, however right.
    ("<answer>" + " " * 2000 + "4</answer>", "4", {}, 1.0),  # the region is stripped first
    ("<answer>" + "0" * 2000 + "4</answer>", "4", {}, 0.0),  # 2001 characters
    ("<answer>" + "0" * 20 + "4</answer>", "4", {"max_chars": 20}, 0.0),
    (r"\boxed{4} " + "x" * 5000, "4", {}, 1.0),  # max_chars bounds the \boxed{} content, not the region
    ("<answer>" + "(" * 11 + "4" + ")" * 11 + "</answer>", "4", {}, 0.0),  # deeper than max_depth=10
    ("<answer>" + "(" * 3 + "4" + ")" * 3 + "</answer>", "4", {}, 1.0),
    ("<answer>9^{9^{9}}</answer>", "2", {}, 0.0),  # 3.7e8 digits: refused, not computed
    ("<answer>(x+1)^{1000}</answer>", "2", {}, 0.0),  # 1001 terms once expanded: refused
    ("<answer>2^{10}</answer>", "1024", {}, 1.0),  # small powers are fine
    (r"<answer>\binom{10}{3}</answer>", "120", {}, 1.0),  # ...and small binomials
    (r"<answer>\Gamma(5)</answer>", "24", {}, 1.0),
    (r"<answer>\sum_{k=1}^{10} k</answer>", "55", {}, 1.0),
    (r"<answer>\sin(\cos(\tan(0)))</answer>", r"\sin(1)", {}, 1.0),  # calls nested 3 deep
]


@pytest.mark.parametrize("completion,answer,params,expected", MATH_CASES)
def test_math(completion, answer, params, expected):
    assert run(completion, answer, **params) == expected


@pytest.mark.parametrize("answer", ["", "the answer is unknown", r"\frac{"])
def test_math_bad_ground_truth_raises(answer):
    with pytest.raises(ValueError, match="ground truth"):
        run("<answer>3</answer>", answer)


def test_math_bad_source_raises():
    with pytest.raises(ValueError, match="source"):
        run("<answer>3</answer>", "3", source="last")


COSTLY_ANSWERS = [
    "9^{9^{9}}",
    "(10^{100})!",
    "0^{9^{9^{9}}}",
    "x^{10^{6}}",
    "(a+b+c)^{50}",
    r"\binom{10^{6}}{500000}",  # computed by the parser itself
    r"\Gamma(10^{6})",
    r"{1000000 \choose 500000}",
    r"\sum_{k=1}^{10^{9}} k^{k}",
    r"\log(\log(\log(\log(\log(\log(\log(\log(2))))))))",
    r"\det(\begin{pmatrix}a&b\\c&d\end{pmatrix})",
]


@pytest.mark.parametrize("answer", COSTLY_ANSWERS)
def test_math_refuses_costly_predictions_quickly(answer):
    # Each of these runs for minutes or hours if evaluated; refused, it costs at most a parse.
    start = time.perf_counter()
    assert run(f"<answer>{answer}</answer>", "2") == 0.0
    assert time.perf_counter() - start < 60.0  # evaluated, any of these runs for many minutes


LAST_BOXED_CASES = [
    (r"\boxed{42}", "42"),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces are not brackets
    (r"\boxed{1} and \boxed{2}", "2"),
    (r"\boxed{1} and \boxed{2", "1"),  # an unclosed last \boxed{ is skipped
    (r"\fbox{7}", "7"),
    (r"\boxed { 3 }", "3"),
    ("no box", None),
    (r"\boxed{" * 1000, None),
]


@pytest.mark.parametrize("text,expected", LAST_BOXED_CASES)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_docstring_examples():
    assert doctest.testmod(mathexpr).failed == 0
