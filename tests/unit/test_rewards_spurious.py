"""The spurious-reward controls `random` and `incorrect` (vlrl.rewards.spurious); expected values by hand."""

import doctest

import pytest

from vlrl.rewards import RewardInput, get_reward, spurious
from vlrl.rewards.base import check_params
from vlrl.rewards.offline import input_line, parse_line


def test_doctests():
    assert doctest.testmod(spurious).failed == 0


def _many(n: int, **where) -> list[RewardInput]:
    # n distinct completions of one row at one step
    return [RewardInput(f"<answer>{i}</answer>", "3", "count", row_id="row-7", **where) for i in range(n)]


def test_random_is_bernoulli_p_and_reproducible():
    rand = get_reward("random")
    inputs = _many(2000, step=3, seed=0)
    scores = [rand(inp, p=0.3) for inp in inputs]
    assert set(scores) == {0.0, 1.0}
    ones = int(sum(scores))
    # Binomial(2000, 0.3): mean 600, sd sqrt(2000 * 0.3 * 0.7) = 20.5; 4 sd is +-82. The draws are a fixed
    # function of the inputs, so the count is not a random variable of the test run: it is 590 every time (the
    # value pins the hash, so a change to uniform_draw, which would change resumed runs' rewards, fails here).
    assert abs(ones - 600) <= 82
    assert ones == 590
    assert [rand(inp, p=0.3) for inp in inputs] == scores  # the same inputs score the same again
    # p = 0 and p = 1 are never and always; a draw below 0.3 is below 0.5 too (nested events)
    assert {rand(inp, p=0.0) for inp in inputs[:50]} == {0.0} and {rand(inp, p=1.0) for inp in inputs[:50]} == {1.0}
    assert all(rand(inp, p=0.5) >= s for inp, s in zip(inputs, scores, strict=True))
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        rand(inputs[0], p=1.5)


def test_random_draw_depends_on_step_seed_and_row_not_on_the_rest():
    draw = spurious.uniform_draw
    base = RewardInput("<answer>5</answer>", "3", "count", row_id="row-7", step=3, seed=0)
    same = RewardInput("<answer>5</answer>", "3", "count", data_source="x", progress=0.9, num_tokens=4,
                       row_id="row-7", step=3, seed=0)
    assert draw(base) == draw(same)  # progress, source, lengths are not part of it
    others = [RewardInput("<answer>5</answer>", "3", "count", row_id="row-7", step=4, seed=0),
              RewardInput("<answer>5</answer>", "3", "count", row_id="row-7", step=3, seed=1),
              RewardInput("<answer>5</answer>", "3", "count", row_id="row-8", step=3, seed=0)]
    assert len({draw(base), *map(draw, others)}) == 4
    # A new draw every step: over 200 steps the same completion is rewarded about half the time (p = 0.5).
    per_step = [get_reward("random")(RewardInput("<answer>5</answer>", "3", "count", row_id="row-7", step=s, seed=0))
                for s in range(200)]
    assert 70 <= sum(per_step) <= 130  # Binomial(200, 0.5): 100 +- 4.2 sd; fixed inputs: 109 every time
    assert sum(per_step) == 109


def test_random_survives_the_completions_file_round_trip():
    """completions.jsonl keeps id, step and seed, so `vlrl rewards score` redraws what training drew."""
    inp = RewardInput("<answer>5</answer>", "3", "count", row_id="row-7", step=3, seed=11)
    line = input_line(inp, None)
    assert (line["id"], line["step"], line["seed"]) == ("row-7", 3, 11)
    back, _ = parse_line(line, "test")
    assert (back.row_id, back.step, back.seed) == ("row-7", 3, 11)
    assert spurious.uniform_draw(back) == spurious.uniform_draw(inp)


@pytest.mark.parametrize("completion,answer,task,expected", [
    ("<answer>4</answer>", "3", "count", 1.0),  # number verifier rejects 4 for 3
    ("<answer>3</answer>", "3", "count", 0.0),  # accepts
    ("<answer>B</answer>", "A", "mcq", 1.0),  # choice verifier: B is not A
    ("<answer>A</answer>", "A", "mcq", 0.0),
    ("<answer>blue</answer>", "red", "colour", 1.0),  # exact_text (the default route)
    ("<answer> </answer>", "red", "colour", 0.0),  # empty answer: nothing to judge
    ("", "red", "colour", 0.0),  # empty completion
    ("blue", "red", "colour", 1.0),  # untagged: the whole completion is the answer (fallback_to_completion)
])
def test_incorrect_rewards_wrong_present_answers(completion, answer, task, expected):
    assert get_reward("incorrect")(RewardInput(completion, answer, task)) == expected


def test_incorrect_takes_accuracys_params():
    wrong = get_reward("incorrect")
    inp = RewardInput("<answer>101</answer>", "100", "count")
    assert wrong(inp) == 1.0  # 101 != 100 at the default rel_tol 1e-6
    assert wrong(inp, rel_tol=0.02) == 0.0  # within 2%: the verifier accepts, so not incorrect
    # untagged with fallback off: no answer region, 0 (not "wrong")
    assert wrong(RewardInput("blue", "red", "colour"), fallback_to_completion=False) == 0.0
    # routes choose the verifier: count answered "three" read as text, not as a number -> wrong for "3"
    assert wrong(RewardInput("<answer>three</answer>", "3", "count")) == 0.0  # number reads "three" as 3
    assert wrong(RewardInput("<answer>three</answer>", "3", "count"), routes={"count": "exact_text"}) == 1.0
    check_params(wrong, {"rel_tol": 0.1, "routes": {"count": "number"}})
    with pytest.raises(ValueError, match="accepted by none"):
        check_params(wrong, {"no_such_param": 1})


def test_random_draws_for_text_that_is_not_valid_unicode():
    # A lone surrogate (the reward fuzz's hostile text has them) cannot be encoded as UTF-8 strictly: the draw
    # still happens, the same every time, and differs from the text without it.
    odd = RewardInput("red \ud800", "red", "colour", row_id="a", step=1, seed=0)
    plain = RewardInput("red ", "red", "colour", row_id="a", step=1, seed=0)
    assert spurious.uniform_draw(odd) == spurious.uniform_draw(odd) != spurious.uniform_draw(plain)
    assert get_reward("random")(odd, p=1.0) == 1.0
