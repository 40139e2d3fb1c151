"""Length and repetition penalties: values derived by hand."""

import pytest

from vlrl.rewards import RewardInput, get_reward

overlong, repetition = get_reward("overlong"), get_reward("repetition")


def inp(text="", tokens=None, limit=None):
    return RewardInput(completion=text, answer="", task="t", num_tokens=tokens, max_tokens=limit)


@pytest.mark.parametrize("tokens, limit, params, expected", [
    # limit 100, default buffer = 0.2 * 100 = 20: no penalty up to 80 tokens, linear to 1 at 100.
    (10, 100, {}, 0.0),
    (80, 100, {}, 0.0),
    (81, 100, {}, 1 / 20),
    (90, 100, {}, 0.5),  # (90 - 80) / 20
    (99, 100, {}, 19 / 20),
    (100, 100, {}, 1.0),  # truncated at the rollout's cap: full penalty
    (150, 100, {}, 1.0),  # beyond the limit (scored offline): capped at 1
    # Explicit buffer 50 under limit 100: the ramp starts at 50.
    (75, 100, {"buffer": 50}, 0.5),  # (75 - 50) / 50
    # The param limit overrides the row's: limit 200, buffer 40 -> ramp from 160.
    (170, 100, {"max_tokens": 200}, 0.25),  # (170 - 160) / 40
    (170, None, {"max_tokens": 200, "buffer": 100}, 0.7),  # (170 - 100) / 100
    # buffer == limit: the ramp covers everything.
    (1, 4, {"buffer": 4}, 0.25),
    # Default buffer rounds: limit 4 -> round(0.8) = 1, ramp from 3.
    (3, 4, {}, 0.0),
    (4, 4, {}, 1.0),
    (0, 10, {}, 0.0),
    (10, 10, {"buffer": 5}, 1.0),
])
def test_overlong(tokens, limit, params, expected):
    assert overlong(inp(tokens=tokens, limit=limit), **params) == pytest.approx(expected)


def test_overlong_not_applicable_without_lengths():
    assert overlong(inp(tokens=None, limit=100)) is None
    assert overlong(inp(tokens=5, limit=None)) is None


@pytest.mark.parametrize("params", [{"buffer": 0}, {"buffer": 200}, {"max_tokens": 0}])
def test_overlong_rejects_bad_params(params):
    with pytest.raises(ValueError):
        overlong(inp(tokens=5, limit=100), **params)


@pytest.mark.parametrize("text, params, expected", [
    ("", {}, 0.0),
    ("short answer", {}, 0.0),  # under min_words
    ("one two three four five six seven eight", {}, 0.0),  # 5 distinct 4-grams
    # 8 words, 4-grams: (a b c d) (b c d a) (c d a b) (d a b c) (a b c d)=repeat -> 1 of 5.
    ("a b c d a b c d", {}, 1 / 5),
    # 12 x "so": 9 four-grams, all but the first repeat -> 8/9.
    ("so " * 12, {}, 8 / 9),
    # bigrams of "a b a b a b a b": 7, of which 5 repeat.
    ("a b a b a b a b", {"ngram": 2, "min_words": 2}, 5 / 7),
    # unigrams of "x y x": 3, one repeat.
    ("x y x", {"ngram": 1, "min_words": 1}, 1 / 3),
    # Whitespace of any kind separates words.
    ("x\ny\tx", {"ngram": 1, "min_words": 1}, 1 / 3),
    # min_words larger than the text: 0.
    ("x x x x", {"ngram": 1, "min_words": 5}, 0.0),
    # max_words reads a prefix: first 4 words "x y z x": unigrams 4, 1 repeat.
    ("x y z x x x x x x", {"ngram": 1, "min_words": 1, "max_words": 4}, 1 / 4),
    # ngram longer than the text: 0.
    ("a b", {"ngram": 3, "min_words": 1}, 0.0),
    # Case matters: "A" and "a" are different words (a loop repeats itself exactly).
    ("A a A a", {"ngram": 1, "min_words": 1}, 2 / 4),
    # Tags count as words like any other: 4 trigrams, only the last (<answer> 3 </answer>) repeats.
    ("<answer> 3 </answer> <answer> 3 </answer>", {"ngram": 3, "min_words": 1}, 1 / 4),
    # All distinct: 0.
    ("one two three four five six seven eight nine ten", {"ngram": 2}, 0.0),
    # Every window after the first repeats: "z" x 20, ngram 4 -> 17 windows, 16 repeats.
    ("z " * 20, {}, 16 / 17),
])
def test_repetition(text, params, expected):
    assert repetition(inp(text), **params) == pytest.approx(expected)


def test_repetition_is_bounded_on_huge_output():
    assert repetition(inp("loop " * 1_000_000)) == pytest.approx((20_000 - 4) / (20_000 - 3))
