"""pass@k, mean@k and the greedy eval metrics (vlrl.evaluation) on fixed scores, against hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from vlrl.evaluation import greedy_metrics, pass_at_k, sampled_metrics
from vlrl.rewards.mixer import Scores

nan = math.nan


def _scores(accuracy: list[float], sources: list[str], total: list[float] | None = None) -> Scores:
    acc = torch.tensor(accuracy, dtype=torch.float32)
    tot = torch.tensor(total if total is not None else [0.0 if math.isnan(a) else a for a in accuracy])
    return Scores(total=tot, components={"accuracy": acc}, data_sources=sources)


def test_pass_at_k_by_hand():
    # 1 - C(n-c, k) / C(n, k)
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)  # C(2,2)=1, C(4,2)=6
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # C(3,2)=3
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)  # C(7,5)=21, C(10,5)=252
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)  # pass@1 = c / n
    assert pass_at_k(4, 0, 3) == 0.0
    assert pass_at_k(4, 2, 3) == 1.0  # n - c = 2 < k: every 3 of the 4 samples hold a correct one
    assert pass_at_k(3, 3, 3) == 1.0
    for n, c, k in [(4, 1, 5), (4, 5, 2), (4, 1, 0)]:
        with pytest.raises(ValueError, match="pass@k needs"):
            pass_at_k(n, c, k)


# Three rows of n = 4 samples: row A (source a) 2 correct, row B (a) none, row C (b) one correct, one half right
# (an OCR-style partial credit, not a pass at threshold 1) and one where accuracy did not apply (NaN counts 0).
ACC = [1, 0, 0, 1,  0, 0, 0, 0,  1, 0.5, 0, nan]
SOURCES = ["a"] * 8 + ["b"] * 4


def test_pass_and_mean_at_k_by_hand():
    m = sampled_metrics(_scores(ACC, SOURCES), group_size=4, k=2)
    # pass@2 per row: A 1 - C(2,2)/C(4,2) = 5/6, B 0, C 1 - C(3,2)/C(4,2) = 1/2
    # mean per row:   A 2/4 = 0.5, B 0, C (1 + 0.5 + 0 + 0) / 4 = 0.375
    assert m["eval/pass@2"] == pytest.approx((5 / 6 + 0 + 1 / 2) / 3)  # 4/9
    assert m["eval/mean@2"] == pytest.approx((0.5 + 0 + 0.375) / 3)
    assert m["eval/pass@2/a"] == pytest.approx(5 / 12)
    assert m["eval/mean@2/a"] == pytest.approx(0.25)
    assert m["eval/pass@2/b"] == pytest.approx(0.5)
    assert m["eval/mean@2/b"] == pytest.approx(0.375)


def test_threshold_and_other_k():
    # At threshold 0.5 row C's half-right sample passes: c = 2, pass@2 = 5/6.
    m = sampled_metrics(_scores(ACC, SOURCES), group_size=4, k=2, threshold=0.5)
    assert m["eval/pass@2/b"] == pytest.approx(5 / 6)
    # pass@1 is the fraction correct: A 2/4, B 0, C 1/4; pass@4 with n = 4: any correct sample.
    one = sampled_metrics(_scores(ACC, SOURCES), group_size=4, k=1)
    assert one["eval/pass@1"] == pytest.approx((0.5 + 0 + 0.25) / 3)
    four = sampled_metrics(_scores(ACC, SOURCES), group_size=4, k=4)
    assert four["eval/pass@4/a"] == pytest.approx(0.5) and four["eval/pass@4/b"] == 1.0


def test_greedy_metrics_are_the_trainers():
    m = greedy_metrics(_scores([1, 0, nan, 1], ["a", "a", "b", "b"], total=[1.5, 0.5, 0.25, 1.0]))
    assert m == pytest.approx({"eval/accuracy": 0.5, "eval/reward": 3.25 / 4,
                               "eval/accuracy/a": 0.5, "eval/reward/a": 1.0,
                               "eval/accuracy/b": 0.5, "eval/reward/b": 0.625})
    # Without an accuracy term the total counts as the accuracy.
    plain = Scores(total=torch.tensor([0.2, 0.6]), components={}, data_sources=["a", "a"])
    assert greedy_metrics(plain)["eval/accuracy"] == pytest.approx(0.4)
    assert greedy_metrics(Scores(total=torch.zeros(0), components={}, data_sources=[])) == {}


def test_accuracy_term_names_the_component_evaluations_report():
    # Two rows: the judge says 1 and 0.25, the mix's total is 1.5 and 0.5 (a judge with weight 1 + format 0.5 / 0.25).
    scores = Scores(total=torch.tensor([1.5, 0.5]),
                    components={"judge": torch.tensor([1.0, 0.25]), "format": torch.tensor([1.0, 1.0])},
                    data_sources=["s", "s"])
    assert greedy_metrics(scores, term="judge")["eval/accuracy"] == pytest.approx((1.0 + 0.25) / 2)
    assert greedy_metrics(scores)["eval/accuracy"] == pytest.approx(1.0)  # no `accuracy` term: the total
    # pass@1 over one row of two samples at threshold 1: the judge's 1.0 passes, 0.25 does not -> 1/2
    assert sampled_metrics(scores, 2, 1, term="judge")["eval/pass@1"] == pytest.approx(0.5)
    assert sampled_metrics(scores, 2, 1, term="judge")["eval/mean@1"] == pytest.approx(0.625)
