"""Token selection: top-k / top-p / banned tokens by hand, and the behaviour log-prob convention."""

from __future__ import annotations

import math

import torch

from vlrl.rollout.sampling import filter_logits, sample_next

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
