"""The ``iou`` reward: intersection over union of one predicted box with the ground-truth box.

The ground truth (``RewardInput.answer``) is JSON text ``[x1, y1, x2, y2]`` in pixels of the *original*
image; the model's box is read from its answer region by :func:`~vlrl.rewards.boxes.parse_box` and
converted from the frame named by ``box_format`` (``abs``, ``qwen2_5_vl``, ``rel1000``, ``rel1``; table in
:mod:`vlrl.rewards.boxes`). A format that needs sizes the row lacks raises ValueError, which the mixer
scores 0.0 and counts as a failure.

With ``threshold`` unset the score is the IoU itself; with a number it is 1.0 when IoU >= threshold, else
0.0; with ``"dynamic"`` the number comes from ``iou_schedule`` at the row's training progress (V-Triune's
0.85 / 0.95 / 0.99 by default).

The box helpers live in :mod:`vlrl.rewards.boxes`; their names are re-exported here for code that
imported them from this module.
"""

from __future__ import annotations

from collections.abc import Sequence

from vlrl.rewards.base import RewardInput, answer_region, register_reward
from vlrl.rewards.boxes import (
    BOX_FORMATS,
    DEFAULT_IOU_SCHEDULE,
    XYXY,
    box_iou,
    frame_scale,
    parse_box,
    resolve_threshold,
    to_original_pixels,
)

# Before boxes.py this module's ``Box`` was the bare corner tuple; the name keeps that meaning here.
Box = XYXY

__all__ = ["BOX_FORMATS", "Box", "box_iou", "iou", "parse_box", "to_original_pixels"]


@register_reward("iou")
def iou(
    inp: RewardInput,
    box_format: str = "abs",
    threshold: float | str | None = None,
    iou_schedule: Sequence = DEFAULT_IOU_SCHEDULE,
    fallback_to_completion: bool = True,
) -> float:
    """IoU of the box in the answer region (converted by ``box_format``) with the ground-truth box; with
    ``threshold`` set (a number, or ``"dynamic"`` for ``iou_schedule`` at ``inp.progress``), 1.0 if
    IoU >= threshold else 0.0. A missing, malformed or degenerate predicted box scores 0.0; a ground truth
    without a box raises ValueError."""
    truth = parse_box(str(inp.answer))
    if truth is None:
        raise ValueError(f"iou: ground truth {inp.answer!r} holds no [x1, y1, x2, y2] box")
    cutoff = resolve_threshold(threshold, iou_schedule, inp.progress, "iou")
    # Resolve the frame even when there is no prediction, so a row lacking sizes is counted on every call,
    # not only when the model happens to emit a box.
    sx, sy = frame_scale(box_format, inp.image_sizes, inp.resized_sizes, "iou")
    region = answer_region(inp.completion, fallback_to_completion)
    pred = parse_box(region) if region is not None else None
    if pred is None:
        return 0.0
    value = box_iou((pred[0] * sx, pred[1] * sy, pred[2] * sx, pred[3] * sy), truth)
    if cutoff is not None:
        return 1.0 if value >= cutoff else 0.0
    return value
