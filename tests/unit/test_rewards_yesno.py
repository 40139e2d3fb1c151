"""The ``yes_no`` reward: reading a yes/no verdict."""

import doctest

import pytest

from vlrl.rewards import RewardInput, get_reward, yesno


def run(completion: str, answer: str, **params):
    return get_reward("yes_no")(RewardInput(completion=completion, answer=answer, task="yes_no"), **params)


YES_NO_CASES = [
    ("<answer>Yes</answer>", "yes", {}, 1.0),
    ("<answer>yes.</answer>", "Yes", {}, 1.0),
    ("<answer>YES!</answer>", "yes", {}, 1.0),
    ("<answer>No</answer>", "yes", {}, 0.0),
    ("<answer>Yes, because the cube is red.</answer>", "yes", {}, 1.0),  # a reason after the verdict
    ("<answer>No, there is none.</answer>", "no", {}, 1.0),
    ("<answer>Yes yes</answer>", "yes", {}, 1.0),
    ("<answer>yes or no</answer>", "yes", {}, 0.0),  # a hedge pays nothing
    ("<answer>Yes, there is no cat</answer>", "yes", {}, 0.0),  # both polarities: 0 by design
    ("<answer>true</answer>", "yes", {}, 1.0),  # true/false are synonyms...
    ("<answer>False</answer>", "no", {}, 1.0),
    ("<answer>yes</answer>", "True", {}, 1.0),
    ("<answer>true</answer>", "yes", {"true_false": False}, 0.0),  # ...unless true_false=False
    ("<answer>It is not true</answer>", "no", {}, 1.0),  # "not" flips the next word
    ("<answer>That isn't true</answer>", "false", {}, 1.0),
    ("<answer>The correct answer is no</answer>", "no", {}, 1.0),  # "correct" is not a verdict word
    ("<answer>Nothing is known</answer>", "no", {}, 0.0),  # whole words only
    ("<answer>eyes</answer>", "yes", {}, 0.0),
    ("<answer>maybe</answer>", "yes", {}, 0.0),
    ("<answer></answer>", "yes", {}, 0.0),
    ("yes", "yes", {}, 1.0),  # no tags: the whole completion
    ("yes", "yes", {"fallback_to_completion": False}, 0.0),
    ("<think>no?</think><answer>yes</answer>", "yes", {}, 1.0),  # only the answer region is read
]


@pytest.mark.parametrize("completion,answer,params,expected", YES_NO_CASES)
def test_yes_no(completion, answer, params, expected):
    assert run(completion, answer, **params) == expected


@pytest.mark.parametrize("answer,params", [("maybe", {}), ("yes or no", {}), ("true", {"true_false": False})])
def test_yes_no_bad_ground_truth_raises(answer, params):
    with pytest.raises(ValueError, match="ground truth"):
        run("<answer>yes</answer>", answer, **params)


def test_docstring_examples():
    assert doctest.testmod(yesno).failed == 0
