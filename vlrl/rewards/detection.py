"""The ``detection`` reward: how well a set of predicted boxes matches a set of ground-truth boxes.

Follows V-Triune's detection score (Ma et al., 2025, "One RL to See Them All", MiniMax-AI's reward
server): one-to-one matching at an IoU threshold, then

    score = [(1 - cw) · Σ matched IoU / n_gt  +  cw · completeness] · b^|n_pred - n_gt|
    completeness = 1 - (miss_rate + false_alarm_rate) / 2
    miss_rate = unmatched truths / n_gt,  false_alarm_rate = unmatched predictions / n_pred

Departures from V-Triune:

- Matching defaults to the *optimal* assignment (maximum total IoU, Hungarian algorithm) rather than
  greedy highest-IoU-first; greedy stays available as ``match="greedy"``. Greedy can consume the wrong
  truth and leave a correct second box unmatched (see the tests), so a correct answer could score below
  a worse one; at <= ``max_boxes`` boxes the optimal assignment costs well under a millisecond.
- The fixed threshold defaults to 0.5 (the PASCAL/COCO convention) instead of V-Triune's training
  setting ``"dynamic"``. The matched-IoU term already pays for tighter boxes continuously, so the
  threshold only decides what counts as a detection; ``iou_threshold="dynamic"`` follows
  ``iou_schedule`` (V-Triune's 0.85 / 0.95 / 0.99 by default, see :mod:`vlrl.rewards.boxes`).
- V-Triune leaves the completeness weight to its config; the default here is 0.5. The IoU term is blind
  to false alarms (it divides by n_gt), so the completeness term is the only part of the score that
  penalises extra boxes once ``count_penalty`` is set to 1; weighting the two halves equally makes a
  missed object and a spurious box cost about the same and keeps localisation quality worth half.
- A pair matches only when IoU > 0 as well as >= threshold (so threshold 0 does not pair disjoint
  boxes), and, when both boxes carry labels, the labels agree after case folding and whitespace collapse.
- More than ``max_boxes`` predicted boxes scores 0.0 (treated as spam). An empty ground-truth list is
  answered correctly by predicting no box (1.0); any predicted box on it scores 0.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from vlrl.rewards.base import RewardInput, register_reward
from vlrl.rewards.boxes import (
    DEFAULT_IOU_SCHEDULE,
    DEFAULT_MAX_BOXES,
    Box,
    iou_matrix,
    normalize_label,
    read_boxes,
    resolve_threshold,
)

MATCH_STRATEGIES = ("greedy", "optimal")


class Match(NamedTuple):
    """One matched pair: indices into the prediction and truth lists, and their IoU."""

    pred: int
    truth: int
    iou: float


def pair_ious(preds: Sequence[Box], truths: Sequence[Box], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """IoU [P, G] of every prediction with every truth, and the mask [P, G] of pairs allowed to match:
    IoU >= threshold, IoU > 0, and equal normalised labels where both boxes have one."""
    ious = iou_matrix(np.array([b.xyxy for b in preds]), np.array([b.xyxy for b in truths]))
    allowed = (ious >= threshold) & (ious > 0)
    pred_codes, truth_codes = _label_codes(preds, truths)
    pc, tc = pred_codes[:, None], truth_codes[None, :]
    allowed &= (pc < 0) | (tc < 0) | (pc == tc)
    return ious, allowed


def match_greedy(preds: Sequence[Box], truths: Sequence[Box], threshold: float) -> list[Match]:
    """One-to-one matches taken highest IoU first (ties: lower prediction index, then lower truth index),
    skipping pairs whose prediction or truth is already taken."""
    if not preds or not truths:
        return []
    ious, allowed = pair_ious(preds, truths, threshold)
    pi, ti = np.nonzero(allowed)
    order = np.lexsort((ti, pi, -ious[pi, ti]))  # the last key sorts first
    used_p, used_t, matches = set(), set(), []
    most = min(len(preds), len(truths))
    for k in order:
        p, t = int(pi[k]), int(ti[k])
        if p not in used_p and t not in used_t:
            used_p.add(p)
            used_t.add(t)
            matches.append(Match(p, t, float(ious[p, t])))
            if len(matches) == most:  # nothing left to pair: skip the tail of a long pair list
                break
    return matches


def match_optimal(preds: Sequence[Box], truths: Sequence[Box], threshold: float) -> list[Match]:
    """One-to-one matches maximising the total IoU over allowed pairs (Hungarian algorithm)."""
    if not preds or not truths:
        return []
    # Imported here: scipy.optimize costs a noticeable fraction of a second, paid only by runs using it.
    from scipy.optimize import linear_sum_assignment

    ious, allowed = pair_ious(preds, truths, threshold)
    # Disallowed pairs weigh 0, so the best full assignment restricted to allowed pairs is the best
    # matching among allowed pairs.
    rows, cols = linear_sum_assignment(np.where(allowed, ious, 0.0), maximize=True)
    pairs = zip(rows, cols, strict=True)
    return [Match(int(p), int(t), float(ious[p, t])) for p, t in pairs if allowed[p, t]]


def _label_codes(preds: Sequence[Box], truths: Sequence[Box]) -> tuple[np.ndarray, np.ndarray]:
    """[P], [G] int64: one code per distinct normalised label, -1 for a box without one."""
    codes: dict[str, int] = {}

    def encode(boxes: Sequence[Box]) -> np.ndarray:
        labels = (normalize_label(b.label) for b in boxes)
        return np.array([-1 if lab is None else codes.setdefault(lab, len(codes)) for lab in labels],
                        dtype=np.int64)

    return encode(preds), encode(truths)


_MATCHERS = {"greedy": match_greedy, "optimal": match_optimal}


def detection_score(
    preds: Sequence[Box],
    truths: Sequence[Box],
    threshold: float,
    match: str = "optimal",
    completeness_weight: float = 0.5,
    count_penalty: float = 0.6,
) -> float:
    """The score in the module docstring for boxes already in one frame; in [0, 1].

    No predictions score 0.0; an empty ``truths`` scores 1.0 for no predictions, else 0.0.
    """
    if not truths:
        return 0.0 if preds else 1.0
    if not preds:
        return 0.0
    matches = _MATCHERS[match](preds, truths, threshold)
    n_pred, n_gt, n_match = len(preds), len(truths), len(matches)
    iou_term = sum(m.iou for m in matches) / n_gt
    miss_rate = (n_gt - n_match) / n_gt
    false_alarm_rate = (n_pred - n_match) / n_pred
    completeness = 1.0 - (miss_rate + false_alarm_rate) / 2.0
    base = (1.0 - completeness_weight) * iou_term + completeness_weight * completeness
    return base * count_penalty ** abs(n_pred - n_gt)


@register_reward("detection")
def detection(
    inp: RewardInput,
    box_format: str = "abs",
    match: str = "optimal",
    iou_threshold: float | str = 0.5,
    iou_schedule: Sequence = DEFAULT_IOU_SCHEDULE,
    completeness_weight: float = 0.5,
    count_penalty: float = 0.6,
    max_boxes: int = DEFAULT_MAX_BOXES,
    fallback_to_completion: bool = True,
) -> float:
    """Detection score of the boxes in the answer region against the ground-truth boxes.

    The ground truth is box JSON in original-image pixels (``[]`` for an image with nothing to find);
    predictions are converted from ``box_format``. ``count_penalty`` is the base b of b^|n_pred - n_gt|
    (1 disables it). Malformed or missing predictions score 0.0; bad params, a ground truth without
    boxes, or sizes ``box_format`` needs but the row lacks raise ValueError.
    """
    if match not in _MATCHERS:
        raise ValueError(f"detection: match must be one of {MATCH_STRATEGIES}, got {match!r}")
    if not 0.0 <= completeness_weight <= 1.0:
        raise ValueError(f"detection: completeness_weight {completeness_weight!r} is outside [0, 1]")
    if not 0.0 < count_penalty <= 1.0:
        raise ValueError(f"detection: count_penalty {count_penalty!r} is outside (0, 1]")
    threshold = resolve_threshold(iou_threshold, iou_schedule, inp.progress, "detection")
    if threshold is None:
        raise ValueError("detection: iou_threshold may not be None")
    preds, truths = read_boxes(inp, "detection", box_format, max_boxes, fallback_to_completion)
    if preds is None:
        return 0.0
    return detection_score(preds, truths, threshold, match, completeness_weight, count_penalty)
