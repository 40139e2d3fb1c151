"""Data-parallel bookkeeping without processes: loss denominators, the prompt split, gathered scores."""

from __future__ import annotations

import math

import pytest
import torch

from vlrl.algorithms import policy_loss
from vlrl.rewards.mixer import Scores
from vlrl.trainer import prompts_per_rank
from vlrl.update import LossTotals, loss_totals

LENGTHS = [5, 3, 1, 4, 2, 5]  # completion tokens of 6 sequences, T = 5: 20 tokens in all
RANKS = [slice(0, 2), slice(2, 6)]  # rank 0: 8 tokens in 2 sequences; rank 1: 12 tokens in 4 sequences


class TwoRanks:
    """Stands in for accelerate: two processes whose summed (tokens, sequences) are (20, 6)."""

    num_processes = 2

    def __init__(self, expect_local):
        self.expect_local = expect_local

    def reduce(self, tensor, reduction):
        assert reduction == "sum" and tensor.tolist() == self.expect_local
        return torch.tensor([20.0, 6.0], dtype=tensor.dtype)


def _mask() -> torch.Tensor:
    return (torch.arange(5).unsqueeze(0) < torch.tensor(LENGTHS).unsqueeze(1)).float()  # [6, 5]


def test_loss_totals_are_global_counts_over_the_world_size():
    mask = _mask()
    assert loss_totals(TwoRanks([8.0, 2.0]), mask[RANKS[0]], 5) == LossTotals(num_tokens=10.0, num_seqs=3.0, max_len=5)
    assert loss_totals(TwoRanks([12.0, 4.0]), mask[RANKS[1]], 5) == LossTotals(num_tokens=10.0, num_seqs=3.0, max_len=5)


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_averaged_rank_gradients_equal_the_whole_batch_gradient(aggregation):
    """DDP averages the ranks' gradients; with LossTotals each rank's loss is scaled so that this average is the
    gradient of the loss over all 6 sequences, though the ranks hold unequal tokens and sequences."""
    g = torch.Generator().manual_seed(0)
    D = torch.float64
    logp0 = -torch.rand(6, 5, generator=g, dtype=D) * 3
    old = logp0 + 0.2 * torch.randn(6, 5, generator=g, dtype=D)
    entropy = torch.rand(6, 5, generator=g, dtype=D)
    adv = torch.randn(6, generator=g, dtype=D)
    mask = _mask()
    kw = dict(clip_low=0.2, clip_high=0.28, aggregation=aggregation, entropy_coef=0.1, max_len=5)

    def grad(rows, **totals):
        logp = logp0.clone().requires_grad_(True)
        loss, _ = policy_loss(logp[rows], old[rows], adv[rows], mask[rows], entropy=entropy[rows] * logp[rows].exp(),
                              **kw, **totals)
        loss.backward()
        return logp.grad

    whole = grad(slice(0, 6))  # one process: its own totals, 20 tokens and 6 sequences
    totals = dict(num_tokens=10.0, num_seqs=3.0)  # 20 / 2, 6 / 2
    averaged = (grad(RANKS[0], **totals) + grad(RANKS[1], **totals)) / 2
    torch.testing.assert_close(averaged, whole, rtol=1e-12, atol=1e-12)
    # local denominators (each rank normalising by its own counts) would weigh rank 0's tokens differently
    local = (grad(RANKS[0], num_tokens=8.0, num_seqs=2.0) + grad(RANKS[1], num_tokens=12.0, num_seqs=4.0)) / 2
    assert not torch.allclose(local, whole)


def test_prompts_per_step_must_split_evenly_across_processes():
    assert prompts_per_rank(32, 8) == 4 and prompts_per_rank(5, 1) == 5
    with pytest.raises(ValueError, match=r"prompts_per_step=30 .* num_processes=8.*prompts_per_step=32 or 24"):
        prompts_per_rank(30, 8)
    with pytest.raises(ValueError, match=r"prompts_per_step=4 .* num_processes=8.*prompts_per_step=8"):
        prompts_per_rank(4, 8)


def test_scores_concat_keeps_rank_order_and_fills_missing_components():
    a = Scores(total=torch.tensor([1.0, 0.0]), components={"accuracy": torch.tensor([1.0, 0.0])},
               data_sources=["x", "x"], parse_failures=1, failures={"accuracy": 1})
    b = Scores(total=torch.tensor([0.5]), components={"iou": torch.tensor([0.5])}, data_sources=["y"], timeouts=2,
               timeout_counts={"iou": 2})
    c = Scores.concat([a, b])
    assert c.total.tolist() == [1.0, 0.0, 0.5] and c.data_sources == ["x", "x", "y"]
    assert c.components["accuracy"][:2].tolist() == [1.0, 0.0] and math.isnan(c.components["accuracy"][2])
    assert math.isnan(c.components["iou"][0]) and c.components["iou"][2] == 0.5
    assert (c.parse_failures, c.failures, c.timeouts, c.timeout_counts) == (1, {"accuracy": 1}, 2, {"iou": 2})
    m = c.metrics()
    assert m["reward/mean"] == pytest.approx(0.5) and m["reward/x/accuracy"] == 0.5 and m["reward/y/iou"] == 0.5
