"""KL estimators, aggregation and the clipped policy loss; expected numbers are derived by hand in comments.

Tests run in float64 so hand values can be checked tightly. Unless a test says otherwise clip_low = 0.2 and
clip_high = 0.28, so the clip range of the ratio is [0.8, 1.28].
"""

import math

import pytest
import torch

from vlrl.algorithms.kl import KL_ESTIMATORS, kl_penalty
from vlrl.algorithms.loss import AGGREGATIONS, LossStats, aggregate, policy_loss

D = torch.float64
CLIP = dict(clip_low=0.2, clip_high=0.28)
LOG2 = math.log(2.0)


def t(x):
    return torch.tensor(x, dtype=D)


# ---------------------------------------------------------------------------------------------- KL estimators


def test_kl_estimators_by_hand():
    # logp = log 0.5, ref = log 0.25: logp - ref = log 2 = 0.693147
    #   k1 = log 2 = 0.693147
    #   k2 = 0.5 * (log 2)^2 = 0.5 * 0.480453 = 0.240227
    #   k3 = exp(ref - logp) - (ref - logp) - 1 = 0.5 + 0.693147 - 1 = 0.193147
    # swapped, logp = log 0.25, ref = log 0.5: logp - ref = -log 2
    #   k1 = -0.693147 (negative: k1 alone is not a divergence per token)
    #   k2 = 0.240227 (symmetric)
    #   k3 = exp(log 2) - log 2 - 1 = 2 - 0.693147 - 1 = 0.306853
    logp = t([math.log(0.5), math.log(0.25)])
    ref = t([math.log(0.25), math.log(0.5)])
    torch.testing.assert_close(kl_penalty(logp, ref, "k1"), t([LOG2, -LOG2]))
    torch.testing.assert_close(kl_penalty(logp, ref, "k2"), t([0.5 * LOG2**2, 0.5 * LOG2**2]))
    torch.testing.assert_close(kl_penalty(logp, ref, "k3"), t([0.5 + LOG2 - 1, 2 - LOG2 - 1]))


def test_kl_k3_nonnegative_and_zero_at_equal():
    g = torch.Generator().manual_seed(0)
    logp, ref = torch.randn(64, 8, generator=g, dtype=D), torch.randn(64, 8, generator=g, dtype=D)
    assert (kl_penalty(logp, ref, "k3") >= 0).all()
    assert (kl_penalty(logp, ref, "k2") >= 0).all()
    # k1's sign follows logp - ref
    assert torch.equal(kl_penalty(logp, ref, "k1") > 0, logp > ref)
    for name in KL_ESTIMATORS:
        assert torch.equal(kl_penalty(logp, logp, name), torch.zeros_like(logp))


def test_kl_unknown_estimator():
    with pytest.raises(ValueError, match="k1.*k2.*k3"):
        kl_penalty(t(0.0), t(0.0), "k4")


# ------------------------------------------------------------------------------------------------ aggregation

# values [[1, 2, nan], [4, inf, nan]] with mask [[1, 1, 0], [1, 0, 0]]: garbage only where masked
RAGGED_VALUES = t([[1.0, 2.0, float("nan")], [4.0, float("inf"), float("nan")]])
RAGGED_MASK = torch.tensor([[True, True, False], [True, False, False]])


@pytest.mark.parametrize("float_mask", [False, True])
def test_aggregate_modes_by_hand(float_mask):
    mask = RAGGED_MASK.to(D) if float_mask else RAGGED_MASK
    # token_mean: (1 + 2 + 4) / 3 tokens = 7/3
    torch.testing.assert_close(aggregate(RAGGED_VALUES, mask, "token_mean"), t(7 / 3))
    # seq_mean_token_mean: ((1 + 2) / 2 + 4 / 1) / 2 seqs = (1.5 + 4) / 2 = 2.75
    torch.testing.assert_close(aggregate(RAGGED_VALUES, mask, "seq_mean_token_mean"), t(2.75))
    # seq_mean_token_sum_norm: (1 + 2 + 4) / (2 seqs * max_len 3) = 7/6
    torch.testing.assert_close(aggregate(RAGGED_VALUES, mask, "seq_mean_token_sum_norm", max_len=3), t(7 / 6))
    # explicit totals replace the defaults: 7 / 10, (1.5 + 4) / 4, 7 / (4 * 5)
    torch.testing.assert_close(aggregate(RAGGED_VALUES, mask, "token_mean", num_tokens=10), t(0.7))
    torch.testing.assert_close(aggregate(RAGGED_VALUES, mask, "seq_mean_token_mean", num_seqs=4), t(5.5 / 4))
    torch.testing.assert_close(
        aggregate(RAGGED_VALUES, mask, "seq_mean_token_sum_norm", num_seqs=4, max_len=5), t(7 / 20)
    )


def test_aggregate_errors():
    with pytest.raises(ValueError, match="max_len"):
        aggregate(RAGGED_VALUES, RAGGED_MASK, "seq_mean_token_sum_norm")
    with pytest.raises(ValueError, match="seq_mean_token_mean.*seq_mean_token_sum_norm.*token_mean"):
        aggregate(RAGGED_VALUES, RAGGED_MASK, "mean")


def _random_batch(n=8, seq_len=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([5, 1, 3, 0, 4, 2, 5, 3])[:n]  # ragged, one empty row
    mask = torch.arange(seq_len).unsqueeze(0) < lengths.unsqueeze(1)
    old = -torch.rand(n, seq_len, generator=g, dtype=D) * 3
    logp = old + 0.3 * torch.randn(n, seq_len, generator=g, dtype=D)
    ref = old + 0.3 * torch.randn(n, seq_len, generator=g, dtype=D)
    entropy = torch.rand(n, seq_len, generator=g, dtype=D) * 2
    adv = torch.randn(n, generator=g, dtype=D)
    return logp, old, ref, entropy, adv, mask


@pytest.mark.parametrize("mode", sorted(AGGREGATIONS))
def test_micro_batches_sum_to_full_batch(mode):
    logp, old, ref, entropy, adv, mask = _random_batch()
    kwargs = dict(CLIP, aggregation=mode, kl_coef=0.05, entropy_coef=0.01, max_len=5)

    full_logp = logp.clone().requires_grad_()
    full, _ = policy_loss(full_logp, old, adv, mask, ref_logp=ref, entropy=entropy, **kwargs)
    full.backward()

    micro_logp = logp.clone().requires_grad_()
    totals = dict(num_tokens=mask.sum(), num_seqs=mask.shape[0])
    summed = 0.0
    for rows in (slice(0, 3), slice(3, 6), slice(6, 8)):
        part, _ = policy_loss(
            micro_logp[rows],
            old[rows],
            adv[rows],
            mask[rows],
            ref_logp=ref[rows],
            entropy=entropy[rows],
            **totals,
            **kwargs,
        )
        part.backward()
        summed = summed + part.detach()
    torch.testing.assert_close(summed, full.detach())
    torch.testing.assert_close(micro_logp.grad, full_logp.grad)
    # and the totals matter: without them the micro-batch sum is not the full-batch loss
    local = sum(aggregate(logp[r], mask[r], mode, max_len=5) for r in (slice(0, 3), slice(3, 6), slice(6, 8)))
    assert not torch.allclose(local, aggregate(logp, mask, mode, max_len=5))


# ------------------------------------------------------------------------------------------- clipped surrogate


def _clip_cases():
    # One token per row; logp = log r, old = 0 so the ratio is r. Clip range [0.8, 1.28].
    #   A=+1 r=1.1 (inside):  -min(1.1, 1.1)        = -1.1   not clipped, d/dlogp = -A r = -1.1
    #   A=+1 r=1.5 (above):   -min(1.5, 1.28)       = -1.28  clipped,     d/dlogp = 0
    #   A=+1 r=0.5 (below):   -min(0.5, 0.8)        = -0.5   not clipped, d/dlogp = -0.5
    #   A=-1 r=1.1 (inside):  -min(-1.1, -1.1)      =  1.1   not clipped, d/dlogp = +1.1
    #   A=-1 r=1.5 (above):   -min(-1.5, -1.28)     =  1.5   not clipped, d/dlogp = +1.5
    #   A=-1 r=0.5 (below):   -min(-0.5, -0.8)      =  0.8   clipped,     d/dlogp = 0
    ratios = t([[1.1], [1.5], [0.5], [1.1], [1.5], [0.5]])
    adv = t([1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    per_token = t([-1.1, -1.28, -0.5, 1.1, 1.5, 0.8])
    grad = t([[-1.1], [0.0], [-0.5], [1.1], [1.5], [0.0]])
    return ratios.log(), torch.zeros_like(ratios), adv, per_token, grad


@pytest.mark.parametrize("case", range(6))
def test_clip_each_case_alone(case):
    logp, old, adv, per_token, grad = _clip_cases()
    logp = logp[case : case + 1].clone().requires_grad_()
    loss, stats = policy_loss(logp, old[case : case + 1], adv[case : case + 1], torch.ones(1, 1), **CLIP)
    loss.backward()
    torch.testing.assert_close(loss.detach(), per_token[case])
    torch.testing.assert_close(logp.grad, grad[case : case + 1])
    assert stats.clip_frac == (1.0 if case in (1, 5) else 0.0)


def test_clip_batch_stats_and_grad():
    logp, old, adv, per_token, grad = _clip_cases()
    logp.requires_grad_()
    loss, stats = policy_loss(logp, old, adv, torch.ones(6, 1, dtype=torch.bool), **CLIP)
    loss.backward()
    # token_mean: (-1.1 - 1.28 - 0.5 + 1.1 + 1.5 + 0.8) / 6 = 0.52 / 6 = 0.0866667
    torch.testing.assert_close(loss.detach(), t(0.52 / 6))
    torch.testing.assert_close(loss.detach(), per_token.mean())
    # unclipped tokens: d loss / d logp = -A * r / num_tokens; clipped tokens: 0
    torch.testing.assert_close(logp.grad, grad / 6)
    assert stats.clip_frac == pytest.approx(2 / 6)
    # ratio_mean: (1.1 + 1.5 + 0.5) * 2 / 6 = 1.033333
    assert stats.ratio_mean == pytest.approx(6.2 / 6)
    # approx_kl: 0.5 * mean(log r ^ 2) = 0.5 * 2 * (log^2 1.1 + log^2 1.5 + log^2 0.5) / 6
    expected = (math.log(1.1) ** 2 + math.log(1.5) ** 2 + math.log(0.5) ** 2) / 6
    assert stats.approx_kl == pytest.approx(expected)
    assert stats.loss == pytest.approx(0.52 / 6) and stats.pg_loss == stats.loss
    assert stats.kl == 0.0 and stats.entropy == 0.0


def test_unclipped_token_gradient_matches_formula():
    # ratios within [0.8, 1.28] everywhere, so d loss / d logp_t = -A_i * r_t / num_tokens at masked-in tokens
    logp, old, _, _, adv, mask = _random_batch()
    logp = (old + 0.05 * torch.tanh(logp - old)).detach().requires_grad_()  # |log r| <= 0.05
    loss, stats = policy_loss(logp, old, adv, mask, **CLIP)
    loss.backward()
    ratio = torch.exp(logp.detach() - old)
    expected = torch.where(mask, -adv[:, None] * ratio / mask.sum(), torch.zeros_like(ratio))
    torch.testing.assert_close(logp.grad, expected)
    assert stats.clip_frac == 0.0


def test_asymmetric_clip_uses_clip_high_above():
    # A=+1, r=1.25: inside [0.8, 1.28] -> -1.25; with symmetric 0.2 it would clip to -1.2
    logp, old, mask = t([[math.log(1.25)]]), t([[0.0]]), torch.ones(1, 1)
    loss, _ = policy_loss(logp, old, t([1.0]), mask, **CLIP)
    torch.testing.assert_close(loss, t(-1.25))
    loss, _ = policy_loss(logp, old, t([1.0]), mask, clip_low=0.2, clip_high=0.2)
    torch.testing.assert_close(loss, t(-1.2))


# ---------------------------------------------------------------------------------------- KL and entropy terms


def test_kl_term_added_with_its_coefficient():
    # ratio 1 (logp = old = log 0.5), A = 0 -> pg = 0. ref = log 0.25 -> k3 = 0.193147 at each token (above);
    # loss = 0.1 * mean k3 = 0.0193147; with k1: 0.1 * log 2 = 0.0693147
    logp = torch.full((2, 3), math.log(0.5), dtype=D)
    ref = torch.full((2, 3), math.log(0.25), dtype=D)
    mask = torch.ones(2, 3, dtype=torch.bool)
    adv = t([0.0, 0.0])
    loss, stats = policy_loss(logp, logp, adv, mask, **CLIP, ref_logp=ref, kl_coef=0.1)
    torch.testing.assert_close(loss, t(0.1 * (LOG2 - 0.5)))
    assert stats.kl == pytest.approx(LOG2 - 0.5)
    loss, _ = policy_loss(logp, logp, adv, mask, **CLIP, ref_logp=ref, kl_coef=0.1, kl_estimator="k1")
    torch.testing.assert_close(loss, t(0.1 * LOG2))
    # logged but not added when kl_coef = 0
    loss, stats = policy_loss(logp, logp, adv, mask, **CLIP, ref_logp=ref)
    assert loss.item() == 0.0 and stats.kl == pytest.approx(LOG2 - 0.5)
    with pytest.raises(ValueError, match="ref_logp"):
        policy_loss(logp, logp, adv, mask, **CLIP, kl_coef=0.1)


def test_entropy_bonus_lowers_loss_and_pushes_entropy_up():
    # pg = 0 (A = 0); entropy 1.5 at each token; loss = -0.1 * 1.5 = -0.15
    logp = torch.zeros(2, 3, dtype=D)
    entropy = torch.full((2, 3), 1.5, dtype=D, requires_grad=True)
    mask = torch.ones(2, 3, dtype=torch.bool)
    loss, stats = policy_loss(logp, logp, t([0.0, 0.0]), mask, **CLIP, entropy=entropy, entropy_coef=0.1)
    torch.testing.assert_close(loss.detach(), t(-0.15))
    assert stats.entropy == pytest.approx(1.5)
    loss.backward()
    # gradient descent on the loss raises entropy: d loss / d entropy = -0.1 / 6 < 0
    torch.testing.assert_close(entropy.grad, torch.full((2, 3), -0.1 / 6, dtype=D))
    with pytest.raises(ValueError, match="entropy"):
        policy_loss(logp, logp, t([0.0, 0.0]), mask, **CLIP, entropy_coef=0.1)


# ------------------------------------------------------------------------------------- GSPO sequence-level ratio


def test_sequence_ratio_by_hand():
    # row 0: log ratios [0.1, 0.3, (masked nan)] -> mean 0.2 -> s0 = exp(0.2) = 1.221403 (inside), A0 = +1
    # row 1: log ratios [0.2, -0.4, 0.5]        -> mean 0.1 -> s1 = exp(0.1) = 1.105171 (inside), A1 = -1
    # per-token pg: row 0 -s0 twice, row 1 +s1 three times; token_mean over 5 tokens:
    #   (-2 * 1.221403 + 3 * 1.105171) / 5 = (-2.442806 + 3.315513) / 5 = 0.174541
    # GSPO-token gradient: d/dlogp_t = -A_i * s_i / 5 at every token of row i (sg[s_i] * grad logp_t)
    old = torch.zeros(2, 3, dtype=D)
    logp = t([[0.1, 0.3, float("nan")], [0.2, -0.4, 0.5]]).requires_grad_()
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    loss, stats = policy_loss(logp, old, t([1.0, -1.0]), mask, **CLIP, ratio_level="sequence")
    loss.backward()
    s0, s1 = math.exp(0.2), math.exp(0.1)
    torch.testing.assert_close(loss.detach(), t((-2 * s0 + 3 * s1) / 5))
    assert loss.item() == pytest.approx(0.174541, abs=1e-6)
    torch.testing.assert_close(logp.grad, t([[-s0 / 5, -s0 / 5, 0.0], [s1 / 5, s1 / 5, s1 / 5]]))
    assert stats.ratio_mean == pytest.approx((2 * s0 + 3 * s1) / 5)
    assert stats.clip_frac == 0.0


def test_sequence_ratio_clips_whole_sequence():
    # log ratios [0.0, 1.0] -> mean 0.5 -> s = exp(0.5) = 1.648721 > 1.28, A = +1: every token clipped,
    # loss = -1.28, no gradient — although token 0 alone (r = 1) is inside the range.
    # At token level instead: token 0 unclipped (-1), token 1 r = e > 1.28 clipped (-1.28): mean -1.14
    old = torch.zeros(1, 2, dtype=D)
    mask = torch.ones(1, 2, dtype=torch.bool)
    logp = t([[0.0, 1.0]]).requires_grad_()
    loss, stats = policy_loss(logp, old, t([1.0]), mask, **CLIP, ratio_level="sequence")
    loss.backward()
    torch.testing.assert_close(loss.detach(), t(-1.28))
    torch.testing.assert_close(logp.grad, torch.zeros(1, 2, dtype=D))
    assert stats.clip_frac == 1.0
    loss, stats = policy_loss(logp, old, t([1.0]), mask, **CLIP, ratio_level="token")
    torch.testing.assert_close(loss.detach(), t(-1.14))
    assert stats.clip_frac == 0.5


@pytest.mark.parametrize("mode", sorted(AGGREGATIONS))
def test_token_and_sequence_ratio_coincide_for_one_token(mode):
    # ratios on both sides of the clip range, advantages of both signs: rows 0 (A<0, r=0.5) and 3 (A>0, r=1.5)
    # are clipped, the rest are not
    old = -torch.linspace(0.1, 2.0, 7, dtype=D).unsqueeze(1)
    logp0 = old + t([[0.5], [0.9], [1.1], [1.5], [0.6], [1.4], [1.0]]).log()
    adv = t([-0.7, 1.2, -0.3, 2.0, 0.4, -1.5, 0.9])
    mask = torch.ones(7, 1, dtype=torch.bool)
    results = {}
    for level in ("token", "sequence"):
        logp = logp0.clone().requires_grad_()
        loss, stats = policy_loss(
            logp, old, adv, mask, **CLIP, aggregation=mode, ratio_level=level, max_len=1
        )
        loss.backward()
        results[level] = (loss.detach(), logp.grad, stats)
    torch.testing.assert_close(results["token"][0], results["sequence"][0])
    torch.testing.assert_close(results["token"][1], results["sequence"][1])
    assert results["token"][2].clip_frac == results["sequence"][2].clip_frac == pytest.approx(2 / 7)


# --------------------------------------------------------------------------------------------- masked garbage


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("mode", sorted(AGGREGATIONS))
def test_masked_garbage_leaves_loss_and_grads_finite(level, mode):
    logp, old, ref, entropy, adv, mask = _random_batch()
    clean_loss, _ = policy_loss(
        logp,
        old,
        adv,
        mask,
        **CLIP,
        aggregation=mode,
        ratio_level=level,
        ref_logp=ref,
        kl_coef=0.1,
        entropy=entropy,
        entropy_coef=0.01,
        max_len=5,
    )
    garbage = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=D)
    fill = garbage[torch.arange(mask.numel()) % 3].reshape(mask.shape)
    dirty = [torch.where(mask, x, fill) for x in (logp, old, ref, entropy)]
    logp_d = dirty[0].clone().requires_grad_()
    entropy_d = dirty[3].clone().requires_grad_()
    loss, stats = policy_loss(
        logp_d,
        dirty[1],
        adv,
        mask.to(D),
        **CLIP,
        aggregation=mode,
        ratio_level=level,
        ref_logp=dirty[2],
        kl_coef=0.1,
        entropy=entropy_d,
        entropy_coef=0.01,
        max_len=5,
    )
    loss.backward()
    torch.testing.assert_close(loss.detach(), clean_loss)
    assert torch.isfinite(logp_d.grad).all() and torch.isfinite(entropy_d.grad).all()
    assert (logp_d.grad[~mask] == 0).all() and (entropy_d.grad[~mask] == 0).all()
    assert all(math.isfinite(v) for v in stats.metrics().values())


# ------------------------------------------------------------------------------------------------------ misc


def test_stats_metrics_names():
    stats = LossStats(
        loss=1.0, pg_loss=2.0, kl=3.0, entropy=4.0, clip_frac=0.5, clip_low_frac=0.2, clip_high_frac=0.3,
        ratio_mean=1.0, approx_kl=0.1
    )
    assert stats.metrics() == {
        "loss/loss": 1.0,
        "loss/pg_loss": 2.0,
        "loss/kl": 3.0,
        "loss/entropy": 4.0,
        "loss/clip_frac": 0.5,
        "loss/clip_low_frac": 0.2,
        "loss/clip_high_frac": 0.3,
        "loss/ratio_mean": 1.0,
        "loss/approx_kl": 0.1,
    }


def test_policy_loss_errors():
    x, mask = torch.zeros(2, 3), torch.ones(2, 3)
    with pytest.raises(ValueError, match="'sequence', 'token'|'token', 'sequence'"):
        policy_loss(x, x, torch.zeros(2), mask, **CLIP, ratio_level="seq")
    with pytest.raises(ValueError, match="token_mean"):
        policy_loss(x, x, torch.zeros(2), mask, **CLIP, aggregation="sum")
    with pytest.raises(ValueError, match=r"\[N\]=2"):
        policy_loss(x, x, torch.zeros(2, 1), mask, **CLIP)


def test_clip_fractions_and_ratio_mean_by_hand():
    # Two completions, clip_low 0.2 / clip_high 0.28 (the band is [0.8, 1.28]); old log-probs 0, so ratio = exp(logp).
    #   row 0, A = +1, ratios [0.5, 1.0, 1.5]: 1.5 > 1.28 with A > 0 -> clipped high (its gradient is 0);
    #          0.5 < 0.8 but A > 0: min(r*A, clip(r)*A) is the unclipped 0.5, so not clipped.
    #   row 1, A = -1, ratios [0.5, 2.0, (masked 9.0)]: 0.5 < 0.8 with A < 0 -> clipped low;
    #          2.0 > 1.28 but A < 0: the unclipped -2.0 is the min, so not clipped. The masked token counts nowhere.
    # Five tokens: clip_low_frac 1/5, clip_high_frac 1/5, clip_frac 2/5;
    # ratio_mean (0.5 + 1.0 + 1.5 + 0.5 + 2.0) / 5 = 5.5 / 5 = 1.1.
    ratios = torch.tensor([[0.5, 1.0, 1.5], [0.5, 2.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    _, stats = policy_loss(ratios.log(), torch.zeros(2, 3), torch.tensor([1.0, -1.0]), mask, clip_low=0.2,
                           clip_high=0.28)
    assert stats.clip_low_frac == pytest.approx(0.2)
    assert stats.clip_high_frac == pytest.approx(0.2)
    assert stats.clip_frac == pytest.approx(0.4)
    assert stats.ratio_mean == pytest.approx(1.1)
    names = stats.metrics()
    assert {"loss/clip_low_frac", "loss/clip_high_frac", "loss/clip_frac", "loss/ratio_mean"} <= set(names)
    # Decoupled bounds are read separately: widening clip_high to 0.6 (band top 1.6) unclips row 0's 1.5 only.
    _, wide = policy_loss(ratios.log(), torch.zeros(2, 3), torch.tensor([1.0, -1.0]), mask, clip_low=0.2,
                          clip_high=0.6)
    assert (wide.clip_low_frac, wide.clip_high_frac) == (pytest.approx(0.2), 0.0)
