"""The ``ocr`` reward (ANLS-style similarity) and its edit distance."""

import doctest
import random

import pytest

from vlrl.rewards import RewardInput, get_reward, ocr
from vlrl.rewards.ocr import ground_truth_texts, levenshtein, similarity


def run(completion: str, answer: str, **params):
    return get_reward("ocr")(RewardInput(completion=completion, answer=answer, task="ocr"), **params)


# Expected scores by hand: 1 - edits / max(len(pred), len(truth)) on the normalised texts, 0 below 0.5.
OCR_CASES = [
    ("<answer>STOP</answer>", "stop", {}, 1.0),  # case folded
    ("<answer>  stop   sign </answer>", "Stop Sign", {}, 1.0),  # whitespace collapsed
    ("<answer>\uff33\uff34\uff2f\uff30</answer>", "stop", {}, 1.0),  # full-width letters under NFKC
    ("<answer>stop sigm</answer>", "stop sign", {}, 1 - 1 / 9),  # one substitution in 9 characters
    ("<answer>stop sig</answer>", "stop sign", {}, 1 - 1 / 9),  # one deletion
    ("<answer>stop</answer>", "stop sign", {}, 0.0),  # 5 deletions: 4/9 < 0.5
    ("<answer>kitten</answer>", "sitting", {}, 1 - 3 / 7),
    ("<answer>abcd</answer>", "abef", {}, 0.5),  # exactly the threshold is kept (ANLS would zero it)
    ("<answer>abcd</answer>", "abef", {"threshold": 0.6}, 0.0),
    # Exact boundaries with float error in (1 - threshold) * length: 1 edit in 5 at 0.8, 1 in 10 at 0.9.
    ("<answer>abcdx</answer>", "abcde", {"threshold": 0.8}, 0.8),
    ("<answer>abcdefghix</answer>", "abcdefghij", {"threshold": 0.9}, 0.9),
    ("<answer>abcd</answer>", "abxy", {"threshold": 0.0}, 0.5),  # no threshold: plain similarity
    ("<answer>abC</answer>", "abc", {"normalize": False}, 1 - 1 / 3),  # case counts without normalising
    ("<answer>STOP.</answer>", "stop", {}, 1 - 1 / 5),  # punctuation is part of the reading
    ("<answer>hello world</answer>", '["hello world!", "hi"]', {}, 1 - 1 / 12),  # best of several answers
    ("<answer>hi</answer>", '["hello world!", "hi"]', {}, 1.0),
    ("<answer>12,34</answer>", "[1234]", {}, 1 - 1 / 5),  # JSON list items need not be strings
    ("<answer>[sic] text</answer>", "[sic] text", {}, 1.0),  # "[" that starts no JSON list is text
    ("<answer></answer>", "abc", {}, 0.0),
    ("<answer>   </answer>", "abc", {}, 0.0),
    ("abc", "abc", {}, 1.0),  # no tags: the whole completion
    ("abc", "abc", {"fallback_to_completion": False}, 0.0),
    ("<answer>" + "a" * 1000 + "</answer>", "a" * 1000, {}, 1.0),
    ("<answer>" + "a" * 1001 + "</answer>", "a" * 1001, {}, 0.0),  # over max_chars: unread
    ("<answer>abcdef</answer>", "abcdef", {"max_chars": 5}, 0.0),
]


@pytest.mark.parametrize("completion,answer,params,expected", OCR_CASES)
def test_ocr(completion, answer, params, expected):
    assert run(completion, answer, **params) == pytest.approx(expected)


@pytest.mark.parametrize("answer", ["", "   ", "[]", '["", null]'])
def test_ocr_empty_ground_truth_raises(answer):
    with pytest.raises(ValueError, match="ground truth"):
        run("<answer>abc</answer>", answer)


def test_ground_truth_texts():
    assert ground_truth_texts("Stop") == ["stop"]
    assert ground_truth_texts(["A", "b "], normalize=False) == ["A", "b "]
    assert ground_truth_texts("[not json") == ["[not json"]


LEVENSHTEIN_CASES = [
    ("", "", 0),
    ("a", "", 1),
    ("", "abc", 3),
    ("abc", "abc", 0),
    ("kitten", "sitting", 3),  # k->s, e->i, +g
    ("flaw", "lawn", 2),  # -f, +n
    ("intention", "execution", 5),
    ("ab", "ba", 2),  # no transpositions
    ("héllo", "hello", 1),
    ("aaaa", "aa", 2),  # shared prefix and suffix overlap
]


@pytest.mark.parametrize("a,b,expected", LEVENSHTEIN_CASES)
def test_levenshtein(a, b, expected):
    assert levenshtein(a, b) == expected
    assert levenshtein(b, a) == expected


def _full_matrix_distance(a: str, b: str) -> int:
    table = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return table[-1][-1]


def test_levenshtein_matches_full_matrix_and_limit():
    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choice("abc") for _ in range(rng.randint(0, 9)))
        b = "".join(rng.choice("abc") for _ in range(rng.randint(0, 9)))
        expected = _full_matrix_distance(a, b)
        assert levenshtein(a, b) == expected
        limit = rng.randint(0, 5)
        assert levenshtein(a, b, limit) == min(expected, limit + 1)


def test_similarity():
    assert similarity("", "") == 1.0
    assert similarity("abc", "") == 0.0
    assert similarity("abcd", "wxyz", threshold=0.5) == 0.0  # stopped early, below the threshold


def test_docstring_examples():
    assert doctest.testmod(ocr).failed == 0
