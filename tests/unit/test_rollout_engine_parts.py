"""Pieces of the `engine` rollout backend that need no model: batch-size buckets, the CPU fallback switch, and
stop-string bookkeeping (on a word-level tokenizer, where expected cuts can be read off by hand)."""

from __future__ import annotations

import torch

from data_pipelines.synthetic.shapes import WORDS
from vlrl.config import RolloutConfig
from vlrl.models.tiny import build_tiny_tokenizer
from vlrl.rollout.engine import bucket_for, buckets, use_cuda_graphs
from vlrl.rollout.stopping import StopChecker, cut_after_stop, scan_stops


def test_buckets_are_the_batch_then_powers_of_two():
    assert buckets(24) == [24, 16, 8, 4, 2, 1]
    assert buckets(16) == [16, 8, 4, 2, 1]
    assert buckets(1) == [1]
    assert [bucket_for(a, buckets(24)) for a in (24, 17, 16, 9, 5, 1)] == [24, 24, 16, 16, 8, 1]


def test_cuda_graphs_only_on_cuda():
    assert RolloutConfig().cuda_graphs
    assert not use_cuda_graphs(RolloutConfig(), torch.device("cpu"))
    assert use_cuda_graphs(RolloutConfig(), torch.device("cuda"))
    assert not use_cuda_graphs(RolloutConfig(cuda_graphs=False), torch.device("cuda"))


def test_cut_after_stop_takes_the_earliest_end():
    assert cut_after_stop("a red square </answer> more", ["</answer>"]) == "a red square </answer>"
    # "is red" ends at 6, "red" at 6 too, "square" later: the cut is at 6 either way.
    assert cut_after_stop("is red square", ["square", "red", "is red"]) == "is red"
    assert cut_after_stop("no stop here", ["</answer>"]) == "no stop here"


def test_stop_checker_sees_strings_spanning_tokens():
    tok = build_tiny_tokenizer(WORDS)
    ids = tok.convert_tokens_to_ids
    # Row 0: "what colour is red" -> "is red" completes at its 4th token. Row 1: "red" alone, never "is red".
    rows = [[ids(w) for w in "what colour is red".split()], [ids(w) for w in "red red red red".split()]]
    checker = StopChecker(tok, ["is red"], num_rows=2)
    live, hits_at = [0, 1], {}
    for t in range(4):
        for r in checker.update(live, [rows[r][t] for r in live]):
            hits_at[r] = t
        live = [r for r in live if r not in hits_at]
    assert hits_at == {0: 3} and checker.stop_at.tolist() == [4, 0]
    # The post-hoc scan (reference backend) agrees, and an EOS before the stop string wins.
    eos = ids("<|im_end|>")
    tokens = torch.tensor(rows + [[ids("is"), eos, ids("red"), ids("red")]])
    assert scan_stops(tok, tokens, [eos], ["is red"]).tolist() == [4, 0, 0]


def test_stop_strings_wait_for_min_new_tokens():
    """rollout.min_new_tokens: a row is tested for stop strings only once it holds that many tokens. "is red"
    completes at token 2 of row 0 ("is red blue red"); with a minimum of 3 the row ends at token 3 instead, and the
    post-hoc scan agrees. Row 1 ("red is red red") completes it at token 3, which the minimum does not move."""
    tok = build_tiny_tokenizer(WORDS)
    ids = tok.convert_tokens_to_ids
    tokens = torch.tensor([[ids(w) for w in "is red blue red".split()], [ids(w) for w in "red is red red".split()]])
    eos = ids("<|im_end|>")
    assert scan_stops(tok, tokens, [eos], ["is red"]).tolist() == [2, 3]
    assert scan_stops(tok, tokens, [eos], ["is red"], min_tokens=3).tolist() == [3, 3]
    checker = StopChecker(tok, ["is red"], num_rows=2, min_tokens=3)
    assert checker.update([0, 1], tokens[:, 0].tolist()) == [] and checker.update([0, 1], tokens[:, 1].tolist()) == []
    assert checker.update([0, 1], tokens[:, 2].tolist()) == [0, 1] and checker.stop_at.tolist() == [3, 3]


def test_eos_is_banned_before_min_new_tokens():
    from vlrl.rollout.sampling import banned_at

    banned, eos = torch.tensor([7, 8]), torch.tensor([1, 2])
    assert banned_at(0, banned, eos, 2).tolist() == [7, 8, 1, 2]
    assert banned_at(1, banned, eos, 2).tolist() == [7, 8, 1, 2]
    assert banned_at(2, banned, eos, 2).tolist() == [7, 8]
    assert banned_at(0, banned, eos, 0).tolist() == [7, 8]
