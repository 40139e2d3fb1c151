"""Rewards given as Python objects, batched rewards and TRL's reward contract (vlrl.rewards.batched)."""

from __future__ import annotations

import doctest
import logging
import math

import pytest

import vlrl.rewards.batched as batched_module
from vlrl.config import RewardConfig
from vlrl.rewards import RewardInput, RewardMixer
from vlrl.rewards.batched import BatchReward, trl_columns, trl_reward
from vlrl.rewards.mixer import importable_spec
from vlrl.rewards.yesno import yes_no


# Written the way TRL's documentation writes reward functions: keyword lists in, a list of floats out.
def trl_exact(completions, solution, **kwargs):
    return [1.0 if c.strip() == s else 0.0 for c, s in zip(completions, solution, strict=True)]


def trl_conversational(prompts, completions, answer, **kwargs):
    contents = [c[0]["content"] for c in completions]
    return [None if p[0]["content"].startswith("skip") else float(a in c)
            for p, c, a in zip(prompts, contents, answer, strict=True)]


def inputs(*pairs, problem="how many?", task="count"):
    return [RewardInput(completion=c, answer=a, task=task, problem=problem) for c, a in pairs]


def test_doctests_of_the_module_pass():
    result = doctest.testmod(batched_module)
    assert result.attempted >= 4 and result.failed == 0


def test_trl_reward_gets_prompts_completions_and_columns():
    seen = {}

    def spy(prompts, completions, **columns):
        seen.update(prompts=prompts, completions=completions, **columns)
        return [0.0] * len(completions)

    rows = [RewardInput("<answer>3</answer>", "3", "count", data_source="shapes", image_sizes=((64, 48),),
                        meta={"level": 1, "solution": "three"}, problem="How many circles?"),
            RewardInput("4", "5", "count", meta={"extra": "x"}, problem="And squares?")]
    trl_reward(spy, columns={"truth": "answer"})(rows)
    assert seen["prompts"] == ["How many circles?", "And squares?"]
    assert seen["completions"] == ["<answer>3</answer>", "4"]
    assert seen["answer"] == ["3", "5"] and seen["truth"] == ["3", "5"]
    assert seen["task"] == ["count", "count"] and seen["data_source"] == ["shapes", ""]
    assert seen["image_sizes"] == [[[64, 48]], []] and seen["images"] == [[], []]
    # meta keys are columns; a key a row lacks is None there
    assert seen["level"] == [1, None] and seen["solution"] == ["three", None] and seen["extra"] == [None, "x"]
    assert "completion_ids" not in seen and "trainer_state" not in seen


def test_trl_columns_refuse_a_missing_source_and_reserved_names():
    with pytest.raises(ValueError, match="no column 'solution'"):
        trl_columns(inputs(("1", "1")), {"gold": "solution"})
    with pytest.raises(ValueError, match="names TRL itself passes"):
        trl_reward(trl_exact, columns={"completions": "answer"})


def test_conversational_format():
    fn = trl_reward(trl_conversational, conversational=True)
    rows = inputs(("it is 3", "3"), ("it is 4", "3")) + inputs(("3", "3"), problem="skip this")
    assert fn(rows) == [1.0, 0.0, None]


def test_a_trl_reward_in_the_mix_is_called_once_per_step_and_weighted():
    calls = []

    def counted(completions, solution, **kwargs):
        calls.append(len(completions))
        return trl_exact(completions, solution)

    def short(inp):
        return 1.0 if len(inp.completion) <= 1 else 0.0

    config = RewardConfig(terms=[{"name": "exact", "weight": 0.5}, {"name": "short", "weight": 1.0}], workers=0)
    mixer = RewardMixer(config, rewards={"exact": trl_reward(counted, columns={"solution": "answer"}),
                                         "short": short})
    scores = mixer.score(inputs(("3", "3"), (" 3 ", "3"), ("4", "3"), ("yes", "yes")))
    assert calls == [4]  # one call for the step's four completions
    assert scores.components["exact"].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert scores.components["short"].tolist() == [1.0, 0.0, 1.0, 0.0]
    # by hand: 0.5 * exact + 1.0 * short
    assert scores.total.tolist() == [1.5, 0.5, 1.0, 0.5]


def test_rows_overriding_params_get_one_call_per_distinct_params():
    calls = []

    def scaled(inputs, scale=1.0):
        calls.append((len(inputs), scale))
        return [scale] * len(inputs)

    mixer = RewardMixer(RewardConfig(terms=[{"name": "s"}], workers=0), rewards={"s": BatchReward(scaled)})
    specs = [None, {"params": {"s": {"scale": 0.25}}}, None]
    scores = mixer.score(inputs(("a", "a"), ("b", "b"), ("c", "c")), specs)
    assert sorted(calls) == [(1, 0.25), (2, 1.0)]
    assert scores.total.tolist() == [1.0, 0.25, 1.0]


@pytest.mark.parametrize("result, failed, not_applicable", [
    (lambda n: [None, 1.0, 0.5][:n], 0, 1),  # None: the term does not apply to that row
    (lambda n: ["x", float("nan"), 1.0][:n], 2, 0),  # not a number / not finite: that entry fails
    (lambda n: [1.0] * (n - 1), 3, 0),  # wrong length: every entry fails
    (lambda n: 1 / 0, 3, 0),  # raises: every entry fails
])
def test_failures_are_counted_per_completion(result, failed, not_applicable, caplog):
    mixer = RewardMixer(RewardConfig(terms=[{"name": "b"}], workers=0),
                        rewards={"b": BatchReward(lambda inputs: result(len(inputs)))})
    with caplog.at_level(logging.WARNING):
        scores = mixer.score(inputs(("a", "a"), ("b", "b"), ("c", "c")))
    assert scores.parse_failures == failed and scores.failures.get("b", 0) == failed
    assert scores.not_applicable.get("b", 0) == not_applicable
    assert not any(math.isnan(v) for v in scores.total.tolist())


def test_rewards_given_as_a_list_are_named_by_their_function_names():
    def my_reward(inp):
        return 1.0 if inp.completion == inp.answer else 0.25

    mixer = RewardMixer(RewardConfig(terms=[{"name": "my_reward"}], workers=0), rewards=[my_reward])
    assert mixer.score(inputs(("a", "a"), ("b", "c"))).total.tolist() == [1.0, 0.25]
    with pytest.raises(ValueError, match="no usable __name__"):
        RewardMixer(RewardConfig(workers=0), rewards=[lambda inp: 1.0])
    with pytest.raises(ValueError, match="without ':'"):
        RewardMixer(RewardConfig(workers=0), rewards={"a:b": my_reward})
    with pytest.raises(ValueError, match="not callable"):
        RewardMixer(RewardConfig(workers=0), rewards={"x": 3})


def test_a_given_reward_no_term_names_is_reported(caplog):
    with caplog.at_level(logging.WARNING, logger="vlrl.rewards.mixer"):
        RewardMixer(RewardConfig(workers=0), rewards={"unused_one": yes_no})
    assert "unused_one" in caplog.text


def test_where_given_rewards_run():
    def local(inp):
        return 1.0

    assert importable_spec(yes_no) == "vlrl.rewards.yesno:yes_no"
    assert importable_spec(local) is None  # a closure: no worker can import it
    assert importable_spec(lambda inp: 1.0) is None
    local.__module__ = "__main__"  # as a function of a script or a notebook
    assert importable_spec(local) is None
    mixer = RewardMixer(RewardConfig(terms=[{"name": "yn"}, {"name": "loc"}, {"name": "b"}], workers=1),
                        rewards={"yn": yes_no, "loc": local, "b": trl_reward(trl_exact, columns={"solution": "answer"})})
    inp = inputs(("yes", "yes"))[0]
    from vlrl.config import RewardTerm

    assert mixer._call(RewardTerm("yn"), inp).fn is None  # importable: goes to a worker by "module:function"
    assert mixer._call(RewardTerm("yn"), inp).name == "vlrl.rewards.yesno:yes_no"
    assert mixer._call(RewardTerm("loc"), inp).fn is local  # in this process
    assert mixer._call(RewardTerm("b"), inp).fn is not None  # batched rewards run in this process
    try:
        scores = mixer.score(inputs(("yes", "yes"), ("no", "yes")))
    finally:
        mixer.close()
    assert scores.components["yn"].tolist() == [1.0, 0.0] and scores.components["loc"].tolist() == [1.0, 1.0]
    assert scores.components["b"].tolist() == [1.0, 0.0]


def test_a_given_reward_takes_precedence_over_the_registry_for_its_mixer_only():
    def always_half(inp):
        return 0.5

    mixer = RewardMixer(RewardConfig(terms=[{"name": "yes_no"}], workers=0), rewards={"yes_no": always_half})
    assert mixer.score(inputs(("yes", "yes"))).total.tolist() == [0.5]
    plain = RewardMixer(RewardConfig(terms=[{"name": "yes_no"}], workers=0))
    assert plain.score(inputs(("yes", "yes"))).total.tolist() == [1.0]


def test_a_registered_function_marked_batched_is_resolved_checked_and_called_once_in_process():
    from vlrl.config import RewardTerm
    from vlrl.rewards import get_reward, register_reward

    calls = []

    def lengths(inputs, unit=10):
        calls.append(len(inputs))
        return [min(1.0, len(i.completion) / unit) for i in inputs]

    lengths.batched = True
    register_reward("test_batched_lengths")(lengths)
    assert get_reward("test_batched_lengths") is lengths
    with pytest.raises(ValueError, match="unknown params"):  # checked against its signature, after the inputs
        RewardMixer(RewardConfig(terms=[{"name": "test_batched_lengths", "params": {"units": 3}}]))
    mixer = RewardMixer(RewardConfig(terms=[{"name": "test_batched_lengths", "params": {"unit": 4}}], workers=2))
    try:
        assert mixer._call(RewardTerm("test_batched_lengths", params={"unit": 4}), inputs(("ab", ""))[0]).fn is lengths
        scores = mixer.score(inputs(("ab", ""), ("abcdef", ""), ("a", "")))
    finally:
        mixer.close()
    assert calls == [3] and mixer._pool is None  # one call for the step, in this process
    assert scores.total.tolist() == [0.5, 1.0, 0.25]  # 2/4, min(1, 6/4), 1/4
