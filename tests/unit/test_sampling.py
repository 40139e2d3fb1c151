"""Token selection: top-k / top-p / banned tokens by hand, and the behaviour log-prob convention."""

from __future__ import annotations

import math

import torch

from vlrl.rollout.sampling import filter_logits, group_uniforms, inverse_cdf, prompt_seed, sample_next

# probabilities 0.5, 0.25, 0.125, 0.125 -> logits are their logs
LOGITS = torch.tensor([[math.log(0.5), math.log(0.25), math.log(0.125), math.log(0.125)]])


def kept(logits):
    return torch.isfinite(logits[0]).tolist()


def test_top_k_keeps_the_k_largest():
    assert kept(filter_logits(LOGITS, top_k=2)) == [True, True, False, False]


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    # cumulative mass before each token: 0, 0.5, 0.75, 0.875 -> with p=0.7 tokens 0 and 1 stay (0.5 < 0.7),
    # token 2 goes (0.75 >= 0.7).
    assert kept(filter_logits(LOGITS, top_p=0.7)) == [True, True, False, False]
    # p=0.5: the mass before token 1 is 0.5 >= 0.5, so only the top token stays.
    assert kept(filter_logits(LOGITS, top_p=0.5)) == [True, False, False, False]
    # a tiny p never removes the most likely token
    assert kept(filter_logits(LOGITS, top_p=1e-6)) == [True, False, False, False]


def test_banned_tokens_are_never_chosen_even_when_most_likely():
    banned = torch.tensor([0])
    tokens, _ = sample_next(LOGITS.repeat(500, 1), 1.0, banned=banned, generator=torch.Generator().manual_seed(0))
    assert (tokens != 0).all()
    greedy, _ = sample_next(LOGITS, 0.0, banned=banned)
    assert greedy.item() == 1


def test_logprob_is_under_the_tempered_full_distribution():
    tokens, logp = sample_next(LOGITS, 0.5, top_k=2, generator=torch.Generator().manual_seed(0))
    # At T=0.5 probabilities are p^2 renormalised: 0.25, 0.0625, 0.015625, 0.015625 over a sum of 0.34375;
    # the log-prob ignores the top-k truncation (the update recomputes the untruncated distribution).
    expected = {0: math.log(0.25 / 0.34375), 1: math.log(0.0625 / 0.34375)}[tokens.item()]
    assert abs(logp.item() - expected) < 1e-6


def test_sampling_frequencies_follow_the_distribution():
    tokens, _ = sample_next(LOGITS.repeat(20000, 1), 1.0, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens, minlength=4).float() / 20000
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.25, 0.125, 0.125]), atol=0.015, rtol=0)


def test_inverse_cdf_by_hand_and_never_a_zero_probability_token():
    # cumulative: 0.5, 0.75, 0.75, 1.0 -> u < 0.5 picks 0, [0.5, 0.75) picks 1, [0.75, 1) picks 3 (token 2 has no mass)
    probs = torch.tensor([[0.5, 0.25, 0.0, 0.25]]).repeat(6, 1)
    u = torch.tensor([0.0, 0.49, 0.5, 0.74, 0.75, 1.0 - 1e-12])
    assert inverse_cdf(probs, u).tolist() == [0, 0, 1, 1, 3, 3]
    # u * total rounding up to the total itself still lands on a token with mass
    assert inverse_cdf(torch.tensor([[0.5, 0.5, 0.0]]), torch.tensor([1.0])).tolist() == [1]


def test_sampling_with_uniforms_follows_the_distribution():
    u = group_uniforms([11], 20000, 1)[:, 0]
    tokens, _ = sample_next(LOGITS.repeat(20000, 1), 1.0, uniform=u)
    freq = torch.bincount(tokens, minlength=4).float() / 20000
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.25, 0.125, 0.125]), atol=0.015, rtol=0)


def test_a_prompts_uniforms_depend_on_its_seed_alone():
    seeds = [prompt_seed(0, 5, j) for j in range(4)]
    assert len(set(seeds)) == 4 and seeds[2] == prompt_seed(0, 5, 2) != prompt_seed(0, 6, 2) != prompt_seed(1, 5, 2)
    together = group_uniforms(seeds, 3, 7)  # [4 * 3, 7]
    for j, seed in enumerate(seeds):  # alone, or batched in another order: the same rows
        torch.testing.assert_close(group_uniforms([seed], 3, 7), together[3 * j:3 * j + 3], rtol=0, atol=0)
    assert together[0:3].unique().numel() == 21  # the G samples of a prompt get different numbers
