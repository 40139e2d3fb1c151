"""The reward contract: extract_answer, the registry, and loading rewards by spec."""

import pytest

from vlrl.rewards import RewardInput, extract_answer, get_reward, register_reward, registered_rewards
from vlrl.rewards.base import answer_region, check_params

EXTRACT_CASES = [
    ("<answer>red</answer>", "red"),
    ("<answer>  red \n</answer>", "red"),  # stripped
    ("<think>maybe <answer>blue</answer>?</think><answer>red</answer>", "red"),  # the last pair
    ("<answer>a <answer>b</answer>", "b"),  # the opening tag nearest the final close
    ("<answer></answer>", ""),  # present but empty is not absent
    ("<answer>red", None),  # unclosed
    ("red</answer>", None),  # no opening tag
    ("</answer> red <answer>", None),  # reversed
    ("red", None),
    ("<answer>x</answer> <answer>y", "x"),  # an unclosed trailing tag does not hide the last pair
]


@pytest.mark.parametrize("text,expected", EXTRACT_CASES)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_answer_region_fallback():
    assert answer_region("  red ", fallback_to_completion=True) == "red"
    assert answer_region("  red ", fallback_to_completion=False) is None
    assert answer_region("x <answer>red</answer>", fallback_to_completion=True) == "red"


def test_builtins_are_registered():
    assert {"format", "exact_text", "number", "choice", "accuracy", "iou"} <= set(registered_rewards())
    assert registered_rewards() == sorted(registered_rewards())


def test_unknown_name_lists_registered():
    with pytest.raises(ValueError, match="unknown reward 'nope'.*exact_text"):
        get_reward("nope")


def test_register_and_get():
    @register_reward("test_base_const")
    def const(inp, value=0.5):
        return value

    assert get_reward("test_base_const") is const
    assert "test_base_const" in registered_rewards()
    assert const(RewardInput("c", "a", "t")) == 0.5


def test_register_rejects_a_second_function_and_bad_names():
    @register_reward("test_base_taken")
    def first(inp):
        return 1.0

    with pytest.raises(ValueError, match="already registered"):
        @register_reward("test_base_taken")
        def second(inp):
            return 0.0

    with pytest.raises(ValueError, match="no ':'"):
        register_reward("mod:fn")
    with pytest.raises(ValueError, match="non-empty"):
        register_reward("")


def test_get_reward_from_module():
    from vlrl.rewards.accuracy import exact_text

    assert get_reward("vlrl.rewards.accuracy:exact_text") is exact_text
    with pytest.raises(ValueError, match="cannot import"):
        get_reward("no_such_pkg_xyz.mod:fn")
    with pytest.raises(ValueError, match="no callable 'missing'"):
        get_reward("vlrl.rewards.accuracy:missing")
    with pytest.raises(ValueError, match="no callable 'DEFAULT_VERIFIER'"):
        get_reward("vlrl.rewards.accuracy:DEFAULT_VERIFIER")  # a string, not a function


USER_FILE = '''
CALLS = []

def length_penalty(inp, limit=10):
    CALLS.append(inp.completion)
    return 1.0 if len(inp.completion) <= limit else 0.0
'''


def test_get_reward_from_file(tmp_path, monkeypatch):
    (tmp_path / "rewards").mkdir()
    path = tmp_path / "rewards" / "user_reward.py"
    path.write_text(USER_FILE)
    monkeypatch.chdir(tmp_path)
    fn = get_reward("rewards/user_reward.py:length_penalty")  # relative to the working directory
    assert fn(RewardInput("short", "", "t")) == 1.0
    assert fn(RewardInput("far too long for it", "", "t"), limit=100) == 1.0
    assert fn(RewardInput("far too long for it", "", "t")) == 0.0
    # The file runs once: the absolute spelling resolves to the same module and function.
    assert get_reward(f"{path}:length_penalty") is fn
    with pytest.raises(ValueError, match="does not exist"):
        get_reward("rewards/missing.py:fn")
    with pytest.raises(ValueError, match="no callable 'nope'"):
        get_reward("rewards/user_reward.py:nope")


def test_get_reward_bad_spec():
    with pytest.raises(ValueError, match="must look like"):
        get_reward("module:")
    with pytest.raises(ValueError, match="must look like"):
        get_reward(":fn")


def test_check_params():
    def fn(inp, a=1, *, b=2):
        return 0.0

    check_params(fn, {"a": 3, "b": 4})
    with pytest.raises(ValueError, match=r"unknown params \['c'\]"):
        check_params(fn, {"c": 1})
    with pytest.raises(ValueError, match="unknown params"):
        check_params(fn, {"inp": 1})  # the input itself is not a param

    def open_fn(inp, **params):
        return 0.0

    check_params(open_fn, {"anything": 1})


def test_reward_input_defaults_are_independent():
    a, b = RewardInput("c", "a", "t"), RewardInput("c", "a", "t")
    assert a.meta == {} and a.meta is not b.meta
    assert a.image_sizes == () and a.progress == 0.0
    with pytest.raises(AttributeError):
        a.completion = "x"  # frozen
