"""The ``format`` reward: strict layout, partial credit shares, think requirement."""

import pytest

from vlrl.rewards import RewardInput, get_reward
from vlrl.rewards.format import format_checks

fmt = get_reward("format")


def score(completion: str, **params) -> float:
    return fmt(RewardInput(completion=completion, answer="red", task="colour"), **params)


# (completion, strict score without think requirement, strict score with require_think)
STRICT_CASES = [
    ("<answer>red</answer>", 1.0, 0.0),
    ("<answer> red </answer>", 1.0, 0.0),  # word-level tokenizer spacing
    ("  \n<answer>red</answer>\n ", 1.0, 0.0),  # surrounding whitespace ignored
    ("<think> it is red </think> <answer> red </answer>", 1.0, 1.0),
    ("<think></think><answer>red</answer>", 1.0, 1.0),  # empty think is still the layout
    ("<answer> </answer>", 0.0, 0.0),  # empty answer
    ("red", 0.0, 0.0),  # no tags at all
    ("the colour is <answer>red</answer>", 0.0, 0.0),  # prose before the answer
    ("<answer>red</answer> done", 0.0, 0.0),  # text after the answer
    ("<answer>red</answer><answer>blue</answer>", 0.0, 0.0),  # answer twice
    ("</answer>red<answer>", 0.0, 0.0),  # tags reversed
    ("<answer>red", 0.0, 0.0),  # unclosed
    ("<think>a</think><think>b</think><answer>red</answer>", 0.0, 0.0),  # two think blocks
    ("<answer>red</answer><think>a</think>", 0.0, 0.0),  # think after the answer
    ("<answer><think>x</think>red</answer>", 0.0, 0.0),  # think inside the answer
    ("<ANSWER>red</ANSWER>", 0.0, 0.0),  # tags are case-sensitive
]


@pytest.mark.parametrize("completion,plain,with_think", STRICT_CASES)
def test_strict(completion, plain, with_think):
    assert score(completion) == plain
    assert score(completion, require_think=True) == with_think


# Shares without think: open_once, close_after, answer_nonempty, clean_outside -> k / 4.
PARTIAL_CASES = [
    ("<answer>red</answer>", False, 1.0),
    ("red", False, 0.0),
    ("<answer>red", False, 0.25),  # open_once only
    ("<answer> </answer>", False, 0.75),  # all but answer_nonempty
    ("so <answer>red</answer>", False, 0.75),  # all but clean_outside
    ("<answer>red</answer> and more", False, 0.75),
    ("<answer>a</answer><answer>b</answer>", False, 0.0),  # neither tag occurs once
    ("</answer> red <answer>", False, 0.25),  # open once, but the close comes first
    # With think, five shares: the four above plus think_pair.
    ("<think>x</think><answer>red</answer>", True, 1.0),
    ("<answer>red</answer>", True, 0.8),  # think pair missing
    ("<think>x</think><answer>red", True, 0.4),  # open_once + think_pair
    ("<think>x<answer>red</answer>", True, 0.6),  # open, close, nonempty; outside unclean, no pair
    ("nothing", True, 0.0),
]


@pytest.mark.parametrize("completion,require_think,expected", PARTIAL_CASES)
def test_partial_credit(completion, require_think, expected):
    assert score(completion, partial_credit=True, require_think=require_think) == pytest.approx(expected)


@pytest.mark.parametrize("completion,_plain,_think", STRICT_CASES)
@pytest.mark.parametrize("require_think", [False, True])
def test_partial_credit_is_one_exactly_when_strict_is_one(completion, _plain, _think, require_think):
    strict = score(completion, require_think=require_think)
    partial = score(completion, require_think=require_think, partial_credit=True)
    assert (strict == 1.0) == (partial == 1.0)
    assert 0.0 <= partial <= 1.0


def test_checks_are_named_in_order():
    checks = format_checks("<answer>red", require_think=True)
    assert list(checks) == ["open_once", "close_after", "answer_nonempty", "clean_outside", "think_pair"]
    assert checks == {
        "open_once": True, "close_after": False, "answer_nonempty": False,
        "clean_outside": False, "think_pair": False,
    }
