"""Micro-batches by sequence count and token budget (`vlrl.update.split_rows`), expectations worked by hand."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from vlrl.update import split_rows

# 3 prompts with 3, 5 and 2 real tokens (left-padded to 5), 2 samples each: rollout rows 0..5 have prompt
# lengths 3, 3, 5, 5, 2, 2.
BATCH = SimpleNamespace(group_size=2, attention_mask=torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 1, 1]]))
T = 2  # completion length


def plan(rows, size, max_tokens=0):
    return [x.tolist() for x in split_rows(BATCH, torch.tensor(rows), T, size, max_tokens)]


def test_count_only():
    assert plan(range(6), size=4) == [[0, 1, 2, 3], [4, 5]]
    assert plan(range(6), size=6) == [list(range(6))]


def test_token_budget():
    # rows 0,1: 2 x (3 + 2) = 10 <= 14; adding row 2 makes 3 x (5 + 2) = 21. Rows 2,3: 2 x 7 = 14. Rows 4,5: 8.
    assert plan(range(6), size=10, max_tokens=14) == [[0, 1], [2, 3], [4, 5]]
    # A budget of 6 fits one sequence of 3 + 2; a 5 + 2 sequence exceeds it and still goes, alone.
    assert plan(range(6), size=10, max_tokens=6) == [[0], [1], [2], [3], [4], [5]]
    # The count limit still applies under a generous budget.
    assert plan(range(6), size=4, max_tokens=1000) == [[0, 1, 2, 3], [4, 5]]


def test_positions_refer_to_the_given_rows():
    # rows 1, 4, 5 have prompt lengths 3, 2, 2: the first two cost 2 x 5 = 10, all three 3 x 5 = 15 > 12.
    assert plan([1, 4, 5], size=10, max_tokens=12) == [[0, 1], [2]]
