"""Spurious-reward controls: rewards that carry no (or the wrong) information about the answer, to measure how
much of a run's gain comes from the reward's signal at all.

Follows "Spurious Rewards: Rethinking Training Signals in RLVR" (Shao et al., 2025, arXiv 2506.10947), which
trained with a random reward (each rollout rewarded with probability p, whatever it says) and an incorrect reward
(only wrong answers rewarded), next to format-only rewards, and found that some models gain on benchmarks even
so. Two terms here:

- ``random``: 1 with probability ``p``, else 0. Departure from the paper: the draw is not a fresh random number
  but a function of the completion and where it was produced (:func:`uniform_draw`), so a run reproduces, a
  resumed run scores as the uninterrupted one would, and ``vlrl rewards score`` on ``completions.jsonl`` gives
  the training scores back. Identical completions of one row at one step therefore share their draw.
- ``incorrect``: 1 when the task's verifier (the ``accuracy`` router's choice, same params) rejects a present
  answer, 0 when it accepts; for a graded verifier (``ocr``, ``iou``) 1 minus its score.

A format-only control needs no code: a mix holding the ``format`` term alone (README, "Spurious-reward
controls").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from vlrl.rewards.accuracy import accuracy
from vlrl.rewards.base import RewardInput, answer_region, register_reward


def uniform_draw(inp: RewardInput) -> float:
    """A number in [0, 1) fixed by (trainer seed, train step, row id, task, ground truth, completion text).

    Each of these is the same in every process and after a resume (the seed and step come from the trainer, the
    row id from the data, the text from the rollout, which is seeded per prompt), and so is SHA-256 — unlike
    Python's ``hash``, which is salted per process. Different steps, rows, seeds or texts give independent
    draws; the same completion of the same row at the same step gets the same one.

    >>> uniform_draw(RewardInput("x", "1", "count", row_id="a", step=1, seed=0)) == uniform_draw(
    ...     RewardInput("x", "1", "count", row_id="a", step=1, seed=0, progress=0.5))
    True
    """
    key = json.dumps([inp.seed, inp.step, inp.row_id, inp.task, str(inp.answer), inp.completion], ensure_ascii=False)
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@register_reward("random")
def random_reward(inp: RewardInput, p: float = 0.5) -> float:
    """1.0 with probability ``p`` (Bernoulli(p)), else 0.0, whatever the completion says; the draw is
    :func:`uniform_draw` of the input, so fixed inputs always score the same."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"random: p must be in [0, 1], got {p}")
    return 1.0 if uniform_draw(inp) < p else 0.0


@register_reward("incorrect")
def incorrect(inp: RewardInput, routes: Mapping[str, str] | None = None, **params: Any) -> float | None:
    """1 minus what the task's verifier gives the answer (``accuracy``'s routing and params), so 1.0 for a wrong
    answer and 0.0 for a right one; 0.0 when there is no answer to judge (an empty answer region: no
    ``<answer>`` tags and ``fallback_to_completion=False``, or empty tags or completion). None where the verifier
    does not apply.

    >>> [incorrect(RewardInput(f"<answer>{n}</answer>", "3", "count")) for n in (4, 3)]
    [1.0, 0.0]
    """
    region = answer_region(inp.completion, params.get("fallback_to_completion", True))
    if not region:
        return 0.0
    score = accuracy(inp, routes=routes, **params)
    return None if score is None else 1.0 - float(score)


incorrect.check_params = accuracy.check_params  # the same params as accuracy, checked the same way
