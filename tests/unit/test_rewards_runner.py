"""Reward calls under time limits and in worker processes: results in order, hangs and crashes contained."""

import os
import signal
import time

import pytest

from vlrl.config import RewardConfig
from vlrl.rewards import RewardInput, RewardMixer, register_reward
from vlrl.rewards.runner import FAILED, OK, TIMEOUT, RewardCall, RewardPool, run_call, run_inline

TIMEOUT_S, GRACE_S = 0.3, 0.3
# The rewards below sleep 30 s: a call that ends well before that was cut by the limit. The bound is far from
# the limit itself so that a loaded machine cannot fail these tests.
CUT_S = 20.0


@register_reward("test_runner_echo")
def echo(inp, scale=1.0):
    return float(inp.answer) * scale


@register_reward("test_runner_sleepy")
def sleepy(inp):
    time.sleep(30)  # interruptible: the soft timeout's SIGALRM lands here
    return 1.0


@register_reward("test_runner_stuck")
def stuck(inp):
    # Stands for work that Python signals cannot interrupt (a long C call): the alarm is ignored, so only
    # the parent's hard timeout can end it.
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    time.sleep(30)
    return 1.0


@register_reward("test_runner_crash")
def crash(inp):
    os._exit(3)  # a segfaulting extension, as far as the parent can tell


@register_reward("test_runner_swallow")
def swallow(inp):
    # A reward that catches every Exception must still be stopped by the soft timeout.
    while True:
        try:
            time.sleep(30)
        except Exception:
            pass


def calls(name, values, **params):
    return [RewardCall(name, RewardInput("c", str(v), "t"), params, module=__name__) for v in values]


def test_inline_soft_timeout_and_values():
    out = run_inline(calls("test_runner_echo", [1, 2], scale=0.5) + calls("test_runner_sleepy", [0]), TIMEOUT_S)
    assert [o.value for o in out] == [0.5, 1.0, 0.0]
    assert [o.status for o in out] == [OK, OK, TIMEOUT]
    assert out[2].seconds < CUT_S


def test_soft_timeout_is_not_swallowed_by_except_exception():
    start = time.perf_counter()
    outcome = run_call(calls("test_runner_swallow", [0])[0], TIMEOUT_S)
    assert outcome.status == TIMEOUT and time.perf_counter() - start < CUT_S


def test_failures_are_outcomes():
    out = run_inline([RewardCall("no_such_reward", RewardInput("c", "1", "t"))]
                     + calls("test_runner_echo", ["not a number"]), None)
    assert [(o.value, o.status) for o in out] == [(0.0, FAILED), (0.0, FAILED)]


def test_pool_matches_inline_in_order():
    batch = calls("test_runner_echo", range(50), scale=2.0)
    with RewardPool(2, TIMEOUT_S, grace=GRACE_S) as pool:
        out = pool.run(batch)
        again = pool.run(batch[:3])  # the pool is reusable
    assert [o.value for o in out] == [2.0 * v for v in range(50)]
    assert [o.value for o in again] == [0.0, 2.0, 4.0]


def test_pool_hard_timeout_kills_and_continues():
    # One worker, so the stuck call shares its chunk with the calls after it: those must still be scored.
    batch = calls("test_runner_echo", [1]) + calls("test_runner_stuck", [0]) + calls("test_runner_echo", [2, 3])
    with RewardPool(1, TIMEOUT_S, grace=GRACE_S) as pool:
        pool.run(calls("test_runner_echo", [0]))  # start the worker before timing
        start = time.perf_counter()
        out = pool.run(batch)
        elapsed = time.perf_counter() - start
        assert pool.killed == 1
    assert [(o.value, o.status) for o in out] == [(1.0, OK), (0.0, TIMEOUT), (2.0, OK), (3.0, OK)]
    # Killed at timeout + grace, not before; and long before the stuck call's 30 s would have ended it.
    assert TIMEOUT_S + GRACE_S <= elapsed < CUT_S


def test_pool_soft_timeout_needs_no_kill():
    with RewardPool(1, TIMEOUT_S, grace=5.0) as pool:  # a long grace: only a failed soft timeout kills
        out = pool.run(calls("test_runner_sleepy", [0]) + calls("test_runner_echo", [5]))
        assert pool.killed == 0
    assert [(o.value, o.status) for o in out] == [(0.0, TIMEOUT), (5.0, OK)]


def test_pool_survives_a_crashing_worker():
    batch = calls("test_runner_echo", [1]) + calls("test_runner_crash", [0]) + calls("test_runner_echo", [2])
    with RewardPool(1, TIMEOUT_S, grace=GRACE_S) as pool:
        out = pool.run(batch)
    assert [(o.value, o.status) for o in out] == [(1.0, OK), (0.0, FAILED), (2.0, OK)]


def test_pool_resolves_file_specs(tmp_path):
    path = tmp_path / "my_reward.py"
    path.write_text("def half(inp):\n    return 0.5\n")
    call = RewardCall(f"{path}:half", RewardInput("c", "1", "t"))
    with RewardPool(1, TIMEOUT_S) as pool:
        assert pool.run([call])[0].value == 0.5


def test_pool_needs_a_worker():
    with pytest.raises(ValueError, match="at least one worker"):
        RewardPool(0, 1.0)


@pytest.mark.parametrize("workers", [0, 2])
def test_mixer_counts_timeouts(workers):
    config = RewardConfig(terms=[{"name": "test_runner_echo", "weight": 1.0},
                                 {"name": "test_runner_sleepy", "weight": 1.0}],
                          workers=workers, timeout_s=TIMEOUT_S)
    mixer = RewardMixer(config)
    try:
        scores = mixer.score([RewardInput("c", "1", "t"), RewardInput("c", "0.5", "t")])
    finally:
        mixer.close()
    assert scores.total.tolist() == [1.0, 0.5]  # the timed-out term scores 0
    assert scores.timeouts == 2 and scores.timeout_counts == {"test_runner_sleepy": 2}
    assert scores.metrics()["reward/timeouts"] == 2.0 and scores.parse_failures == 0


def test_mixer_rejects_negative_settings():
    with pytest.raises(ValueError, match="reward.workers"):
        RewardMixer(RewardConfig(workers=-1))


def test_rewards_defined_in_main_run_in_process():
    # A worker cannot import the parent's __main__ (a script, a notebook): such rewards score in process.
    def main_reward(inp):
        return 0.75

    main_reward.__module__ = "__main__"
    register_reward("test_runner_main")(main_reward)
    config = RewardConfig(terms=[{"name": "test_runner_main"}, {"name": "test_runner_echo"}], workers=2,
                          timeout_s=TIMEOUT_S)
    mixer = RewardMixer(config)
    try:
        scores = mixer.score([RewardInput("c", "0.5", "t")])
    finally:
        mixer.close()
    assert scores.components["test_runner_main"].tolist() == [0.75] and scores.parse_failures == 0
    assert scores.total.tolist() == [1.25]


def test_soft_timeouts_leave_nothing_armed():
    from vlrl.rewards import runner

    for _ in range(200):
        run_call(calls("test_runner_sleepy", [0])[0], 0.001)
    assert runner._ARMED == []
