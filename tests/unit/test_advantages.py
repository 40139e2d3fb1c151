"""Advantage estimators; every expected number is worked out by hand in the comment beside it."""

import math

import pytest
import torch

from vlrl.algorithms.advantages import (
    ADVANTAGE_ESTIMATORS,
    batch_baseline,
    compute_advantages,
    groups_with_signal,
    split_duplicates,
    weight_negatives,
)

REWARDS_1001 = torch.tensor([1.0, 0.0, 0.0, 1.0])


def test_grpo_by_hand_uses_unbiased_std():
    # mean = 0.5; deviations +-0.5; sum of squares = 4 * 0.25 = 1
    # unbiased var = 1 / (4 - 1) = 1/3, std = sqrt(1/3) = 0.57735
    # advantage = 0.5 / 0.57735 = sqrt(3) / 2 = 0.866025  (a population std, 0.5, would give 1.0)
    adv = compute_advantages(REWARDS_1001, group_size=4, method="grpo", eps=0.0)
    a = math.sqrt(3) / 2
    torch.testing.assert_close(adv, torch.tensor([a, -a, -a, a]))


def test_grpo_eps_enters_denominator():
    # rewards [2, 0]: mean 1, deviations +-1, unbiased var = 2 / 1 = 2, std = sqrt(2)
    # eps = 1: 1 / (sqrt(2) + 1) = 0.414214
    adv = compute_advantages(torch.tensor([2.0, 0.0]), group_size=2, method="grpo", eps=1.0)
    a = 1 / (math.sqrt(2) + 1)
    torch.testing.assert_close(adv, torch.tensor([a, -a]))


def test_drgrpo_by_hand():
    # r - mean: 1 - 0.5 = 0.5, 0 - 0.5 = -0.5
    adv = compute_advantages(REWARDS_1001, group_size=4, method="drgrpo")
    torch.testing.assert_close(adv, torch.tensor([0.5, -0.5, -0.5, 0.5]))


def test_rloo_by_hand():
    # i=0: others [0, 0, 1], mean 1/3 -> 1 - 1/3 = 2/3
    # i=1: others [1, 0, 1], mean 2/3 -> 0 - 2/3 = -2/3   (= 4/3 * (r - 0.5) as the identity says)
    adv = compute_advantages(REWARDS_1001, group_size=4, method="rloo")
    torch.testing.assert_close(adv, torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3]))


def test_rloo_uneven_group_by_hand():
    # rewards [3, 1, 2]: i=0 others mean 1.5 -> 1.5; i=1 others mean 2.5 -> -1.5; i=2 others mean 2 -> 0
    adv = compute_advantages(torch.tensor([3.0, 1.0, 2.0]), group_size=3, method="rloo")
    torch.testing.assert_close(adv, torch.tensor([1.5, -1.5, 0.0]))


@pytest.mark.parametrize("method", sorted(ADVANTAGE_ESTIMATORS))
def test_all_equal_group_gets_zero(method):
    adv = compute_advantages(torch.full((4,), 0.7), group_size=4, method=method)
    assert torch.equal(adv, torch.zeros(4))


def test_groups_are_independent():
    # group 0 = [1, 0, 0, 1] as above; group 1 = [5, 5, 5, 9]: mean 6, r - mean = [-1, -1, -1, 3]
    rewards = torch.cat([REWARDS_1001, torch.tensor([5.0, 5.0, 5.0, 9.0])])
    adv = compute_advantages(rewards, group_size=4, method="drgrpo")
    torch.testing.assert_close(adv, torch.tensor([0.5, -0.5, -0.5, 0.5, -1.0, -1.0, -1.0, 3.0]))
    # each group's result equals that group computed alone, for every method
    for method in ADVANTAGE_ESTIMATORS:
        both = compute_advantages(rewards, 4, method)
        torch.testing.assert_close(both[:4], compute_advantages(rewards[:4], 4, method))
        torch.testing.assert_close(both[4:], compute_advantages(rewards[4:], 4, method))


def test_integer_rewards_become_float():
    adv = compute_advantages(torch.tensor([1, 0]), group_size=2, method="drgrpo")
    assert adv.dtype == torch.float32
    torch.testing.assert_close(adv, torch.tensor([0.5, -0.5]))


def test_errors_name_the_numbers():
    with pytest.raises(ValueError, match="N=5.*group_size=4"):
        compute_advantages(torch.zeros(5), group_size=4, method="grpo")
    with pytest.raises(ValueError, match="group_size=1"):
        compute_advantages(torch.zeros(3), group_size=1, method="rloo")
    with pytest.raises(ValueError, match="drgrpo.*grpo.*rloo"):
        compute_advantages(torch.zeros(4), group_size=4, method="ppo")
    with pytest.raises(ValueError, match="1-D"):
        compute_advantages(torch.zeros(2, 2), group_size=2, method="grpo")


def test_drgrpo_allows_group_of_one():
    assert torch.equal(compute_advantages(torch.tensor([3.0, 1.0]), 1, "drgrpo"), torch.zeros(2))


def test_groups_with_signal():
    # groups: [1,0,0,1] varies; [0.5]*4 flat; [1, 1, 1, 1 + 1e-8] flat within atol; [0, 0, 0, 1e-3] varies
    rewards = torch.tensor(
        [1, 0, 0, 1, 0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1 + 1e-8, 0, 0, 0, 1e-3], dtype=torch.float64
    )
    mask = groups_with_signal(rewards, group_size=4)
    assert mask.dtype == torch.bool
    assert mask.tolist() == [True, False, False, True]
    assert groups_with_signal(rewards, group_size=4, atol=1e-2).tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="N=16.*group_size=5"):
        groups_with_signal(rewards, group_size=5)


def test_split_duplicates_by_hand():
    # group 0: rows 0, 1, 3 are the same completion [5, 6] (3 copies), row 2 is [7] -> divide by 3, 3, 1, 3
    #   [0.3, 0.3, -0.9, 0.3] -> [0.1, 0.1, -0.9, 0.1]
    # group 1: [5, 6] and [5, 6, 9] differ (the third token is real in one, padding in the other); the two [8, 8]
    #   rows differ from each other only at a masked position, so they count as 2 copies: [1, -1, 0.5, 0.5] ->
    #   [1, -1, 0.25, 0.25]
    ids = torch.tensor([[5, 6, 0], [5, 6, 0], [7, 0, 0], [5, 6, 0],
                        [5, 6, 0], [5, 6, 9], [8, 8, 1], [8, 8, 2]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0], [1, 0, 0], [1, 1, 0],
                         [1, 1, 0], [1, 1, 1], [1, 1, 0], [1, 1, 0]])
    adv = torch.tensor([0.3, 0.3, -0.9, 0.3, 1.0, -1.0, 0.5, 0.5])
    out = split_duplicates(adv, ids, mask, group_size=4)
    torch.testing.assert_close(out, torch.tensor([0.1, 0.1, -0.9, 0.1, 1.0, -1.0, 0.25, 0.25]))


def test_weight_negatives_by_hand():
    # drgrpo advantages of a group [1.5, 0.5, 0.5, 0.5]: mean 0.75 -> [0.75, -0.25, -0.25, -0.25]
    adv = compute_advantages(torch.tensor([1.5, 0.5, 0.5, 0.5]), 4, "drgrpo")
    out = weight_negatives(adv, 0.5)
    assert out.tolist() == pytest.approx([0.75, -0.125, -0.125, -0.125])
    assert weight_negatives(torch.tensor([0.0, -1.0, 2.0]), 0.0).tolist() == [0.0, 0.0, 2.0]
    assert weight_negatives(adv, 1.0) is adv  # plain GRPO: untouched
    with pytest.raises(ValueError, match="negative_weight must be in"):
        weight_negatives(adv, 1.5)


def test_batch_baseline_by_hand():
    # Two tasks. Task 0: rewards 1, 0, 0, 1.5 -> mean 0.625; task 1: 0.5, 0.5 -> mean 0.5.
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.0, 1.5, 0.5])
    keys = torch.tensor([0, 0, 1, 0, 0, 1])
    got = batch_baseline(rewards, keys, rewards, keys)
    assert torch.allclose(got, torch.tensor([0.375, -0.625, 0.0, -0.625, 0.875, 0.0]))
    # an all-wrong group no longer gets zero: 0 - 0.625
    assert got[1] != 0


def test_batch_baseline_uses_the_whole_step():
    # A process holding rows 0-2 of the step above gets the advantages the whole step gives those rows.
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.0, 1.5, 0.5])
    keys = torch.tensor([0, 0, 1, 0, 0, 1])
    part = batch_baseline(rewards[:3], keys[:3], rewards, keys)
    assert torch.allclose(part, torch.tensor([0.375, -0.625, 0.0]))
    with pytest.raises(ValueError, match="no completion"):
        batch_baseline(torch.tensor([1.0]), torch.tensor([2]), rewards, keys)


# Two groups of G = 3 (a prompt answered right once, a prompt always right) for algorithm.scale_rewards.
# group 0: [1, 0, 0]  mean 1/3, centred [2/3, -1/3, -1/3]; sum of squares 4/9 + 1/9 + 1/9 = 6/9,
#          unbiased var (6/9) / 2 = 1/3, std_g = 0.577350
# group 1: [1, 1, 1]  mean 1, centred [0, 0, 0], std_g = 0
REWARDS_TWO_GROUPS = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
CENTRED_TWO_GROUPS = torch.tensor([2 / 3, -1 / 3, -1 / 3, 0.0, 0.0, 0.0])


def test_scale_rewards_table_by_hand():
    from vlrl.algorithms.advantages import scale_advantages

    centred = compute_advantages(REWARDS_TWO_GROUPS, 3, "group")
    torch.testing.assert_close(centred, CENTRED_TWO_GROUPS)
    # none (Dr.GRPO): no division.
    torch.testing.assert_close(scale_advantages(centred, REWARDS_TWO_GROUPS, 3, "none"), CENTRED_TWO_GROUPS)
    # group: / (std_g + eps), eps 0 -> group 0: (2/3) / 0.577350 = 1.154701, (-1/3) / 0.577350 = -0.577350;
    # group 1: 0 / (0 + eps) = 0 (with eps = 0 it would be 0/0, so use the default 1e-6 there).
    got = scale_advantages(centred, REWARDS_TWO_GROUPS, 3, "group", eps=1e-6)
    assert got.tolist() == pytest.approx([1.154699, -0.577349, -0.577349, 0.0, 0.0, 0.0], abs=1e-5)
    # and it is exactly the old grpo estimator
    assert torch.equal(got, compute_advantages(REWARDS_TWO_GROUPS, 3, "grpo"))
    # batch: all six rewards [1, 0, 0, 1, 1, 1]: mean 4/6 = 2/3; deviations [1/3, -2/3, -2/3, 1/3, 1/3, 1/3];
    # sum of squares 4 * 1/9 + 2 * 4/9 = 12/9 = 4/3; unbiased var (4/3) / 5 = 4/15, std = 0.516398
    # -> group 0: (2/3) / 0.516398 = 1.290994, (-1/3) / 0.516398 = -0.645497; group 1 stays 0.
    got = scale_advantages(centred, REWARDS_TWO_GROUPS, 3, "batch", eps=0.0, step_rewards=REWARDS_TWO_GROUPS)
    assert got.tolist() == pytest.approx([1.290994, -0.645497, -0.645497, 0.0, 0.0, 0.0], abs=1e-6)


def test_batch_scale_reads_the_whole_step_not_this_processes_share():
    from vlrl.algorithms.advantages import scale_advantages

    # Two processes, one group each: process 0 holds group 0 of the table above. Its divisor is the std of the
    # whole step's six rewards (0.516398), not of its own three (0.577350): -> (2/3) / 0.516398 = 1.290994.
    mine = REWARDS_TWO_GROUPS[:3]
    got = scale_advantages(compute_advantages(mine, 3, "group"), mine, 3, "batch", eps=0.0,
                           step_rewards=REWARDS_TWO_GROUPS)
    assert got.tolist() == pytest.approx([1.290994, -0.645497, -0.645497], abs=1e-6)
    with pytest.raises(ValueError, match="step_rewards"):
        scale_advantages(mine, mine, 3, "batch")
    with pytest.raises(ValueError, match="group_size >= 2"):
        scale_advantages(mine, mine, 1, "group")


def test_advantage_aliases_resolve_and_contradictions_raise():
    from vlrl.algorithms.advantages import advantage_setting

    assert advantage_setting("grpo", "none") == ("group", "group")  # grpo with the default scale
    assert advantage_setting("grpo", "group") == ("group", "group")
    assert advantage_setting("drgrpo", "none") == ("group", "none")
    assert advantage_setting("rloo", "batch") == ("rloo", "batch")
    with pytest.raises(ValueError, match="contradicts scale_rewards=batch"):
        advantage_setting("grpo", "batch")
    with pytest.raises(ValueError, match="contradicts scale_rewards=group"):
        advantage_setting("drgrpo", "group")
    with pytest.raises(ValueError, match="unknown algorithm.advantage"):
        advantage_setting("ppo", "none")
