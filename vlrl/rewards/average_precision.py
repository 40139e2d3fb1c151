"""The ``map`` reward: COCO-style mean average precision of one image's predicted boxes.

Follows the COCO evaluation protocol for a single image:

- classes are the labels present in the ground truth (normalised: case folded, whitespace collapsed);
  unlabelled truths form one class of their own. When no truth has a label, prediction labels are
  ignored and everything is one class, so a model that names what it boxes is not punished on
  label-free data. An unlabelled prediction competes in every class (as in ``detection``, where a missing
  label matches any), so a model that boxes without naming is scored on its boxes;
- predictions are ranked by confidence when every prediction gives one, else by output order (a
  generated list is usually most-confident-first; the sort is stable either way);
- at each IoU threshold t (default 0.50:0.05:0.95) each prediction, in rank order, takes the
  still-unmatched truth of its class with the highest IoU >= t (a true positive) or none (a false
  positive);
- AP is the mean over the 101 recall points 0, 0.01, ..., 1 of the interpolated precision (the best
  precision at any recall >= that point, 0 past the largest recall reached);
- the score is the mean AP over thresholds and classes, in [0, 1].

Departures: one image at a time rather than a dataset; no area ranges, crowd regions or per-image
detection limit (``max_boxes`` instead scores spam 0.0). Predictions whose class is not in the ground
truth are ignored, as in COCO where a class absent from an image has no AP there; pair ``map`` with a
count-sensitive term (``detection``, whose count penalty sees every box) when that matters. An empty
ground-truth list scores 1.0 for no predictions, else 0.0, as in ``detection``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlrl.rewards.base import RewardInput, register_reward
from vlrl.rewards.boxes import DEFAULT_MAX_BOXES, Box, iou_matrix, normalize_label, read_boxes

# Written out so each threshold is the exact double of its decimal (0.5 + 0.05 * 4 is not 0.7).
COCO_IOU_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
_RECALL_POINTS = np.arange(101) / 100.0  # exact multiples of 0.01, as decimal fractions


def interpolated_ap(hits: Sequence[bool], n_truth: int) -> float:
    """101-point interpolated average precision of a ranked list of hits (True = true positive) against
    ``n_truth`` truths.

    >>> interpolated_ap([False, True], 1)  # precision 0 then 1/2; envelope 1/2 at every recall point
    0.5
    """
    if n_truth <= 0 or len(hits) == 0:
        return 0.0
    hit = np.asarray(hits, dtype=bool)
    tp = np.cumsum(hit)
    fp = np.cumsum(~hit)
    recall = tp / n_truth
    precision = tp / (tp + fp)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    first = np.searchsorted(recall, _RECALL_POINTS, side="left")  # first rank reaching each recall point
    reached = first < len(hit)
    return float(envelope[first[reached]].sum() / len(_RECALL_POINTS))


def ranked_hits(ious: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """COCO greedy matching of ranked predictions at every threshold at once.

    ious [P, G] with rows in rank order -> hits [T, P] bool: at threshold t, prediction p (in rank order)
    takes the still-unmatched truth with the highest IoU >= t (ties: the lower truth index).
    """
    t = np.asarray(thresholds, dtype=np.float64)[:, None]  # [T, 1]
    free = np.ones((len(t), ious.shape[1]), dtype=bool)  # [T, G]
    hits = np.zeros((len(t), ious.shape[0]), dtype=bool)  # [T, P]
    floor = max(float(t.min()), 0.0)
    for p, row in enumerate(ious):
        if not (row > 0).any() or row.max() < floor:  # matches nothing at any threshold: skip the work
            continue
        candidates = np.where(free & (row >= t) & (row > 0), row, -1.0)  # [T, G]
        best = candidates.argmax(axis=1)  # [T]
        hit = candidates[np.arange(len(t)), best] >= 0
        free[np.nonzero(hit)[0], best[hit]] = False
        hits[:, p] = hit
    return hits


def mean_average_precision(
    preds: Sequence[Box], truths: Sequence[Box], thresholds: Sequence[float] = COCO_IOU_THRESHOLDS
) -> float:
    """Mean AP over ``thresholds`` and the ground truth's classes (module docstring); boxes in one frame."""
    if not truths:
        return 0.0 if preds else 1.0
    if not preds:
        return 0.0
    order = _rank(preds)
    truth_classes = [normalize_label(b.label) for b in truths]
    labelled = any(c is not None for c in truth_classes)
    pred_classes = [normalize_label(preds[i].label) if labelled else None for i in order]
    ious = iou_matrix(np.array([preds[i].xyxy for i in order]), np.array([b.xyxy for b in truths]))
    total = 0.0
    classes = list(dict.fromkeys(truth_classes))
    for cls in classes:
        rows = [k for k, c in enumerate(pred_classes) if c == cls or c is None]
        cols = [j for j, c in enumerate(truth_classes) if c == cls]
        for hits in ranked_hits(ious[np.ix_(rows, cols)], thresholds):
            total += interpolated_ap(hits, len(cols))
    return total / (len(classes) * len(thresholds))


def _rank(preds: Sequence[Box]) -> list[int]:
    if all(b.score is not None for b in preds):
        return sorted(range(len(preds)), key=lambda i: -preds[i].score)  # type: ignore[operator]
    return list(range(len(preds)))


@register_reward("map")
def map_reward(
    inp: RewardInput,
    box_format: str = "abs",
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
    max_boxes: int = DEFAULT_MAX_BOXES,
    fallback_to_completion: bool = True,
) -> float:
    """COCO-style mAP of the boxes in the answer region against the ground-truth boxes.

    Ground truth and ``box_format`` as in ``detection``. Malformed or missing predictions score 0.0;
    empty or out-of-range ``iou_thresholds``, a ground truth without boxes, or sizes ``box_format``
    needs but the row lacks raise ValueError.
    """
    thresholds = [float(t) for t in iou_thresholds]
    if not thresholds or not all(0.0 <= t <= 1.0 for t in thresholds):
        raise ValueError(f"map: iou_thresholds must be a non-empty list of numbers in [0, 1], "
                         f"got {iou_thresholds!r}")
    preds, truths = read_boxes(inp, "map", box_format, max_boxes, fallback_to_completion)
    if preds is None:
        return 0.0
    return mean_average_precision(preds, truths, thresholds)
