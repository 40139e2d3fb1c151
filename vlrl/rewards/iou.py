"""The ``iou`` reward: intersection over union of one predicted box with the ground-truth box.

The ground truth (``RewardInput.answer``) is JSON text ``[x1, y1, x2, y2]`` in pixels of the *original*
image. Models emit boxes in their own frame, named by the ``box_format`` param:

=============  ==============================================  ==========================================
box_format     model frame                                     conversion to original pixels
=============  ==============================================  ==========================================
``abs``        original-image pixels (default)                 none
``qwen2_5_vl`` absolute pixels of the resized model input      x · orig_w / resized_w, y · orig_h / resized_h
``rel1000``    0–1000 relative (Qwen2-VL, Qwen3-VL)            x · orig_w / 1000, y · orig_h / 1000
``rel1``       0–1 relative                                    x · orig_w, y · orig_h
=============  ==============================================  ==========================================

Sizes come from ``image_sizes[0]`` and ``resized_sizes[0]`` (the first image). A format that needs sizes
the row lacks raises ValueError, which the mixer scores 0.0 and counts as a failure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from vlrl.rewards.base import RewardInput, answer_region, register_reward

Box = tuple[float, float, float, float]  # (x1, y1, x2, y2)

BOX_FORMATS = ("abs", "qwen2_5_vl", "rel1000", "rel1")
_NO_BOX: Box = (0.0, 0.0, 0.0, 0.0)

_N = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_LIST4 = rf"\[\s*({_N})\s*,\s*({_N})\s*,\s*({_N})\s*,\s*({_N})\s*\]"
# The Qwen JSON key is preferred over any earlier list, so '{"label": [..], "bbox_2d": [..]}' reads the box.
_BBOX_KEY_RE = re.compile(rf"[\"']?bbox_2d[\"']?\s*:\s*{_LIST4}")
_LIST4_RE = re.compile(_LIST4)


def parse_box(text: str) -> Box | None:
    """The first box in ``text``: the list after a ``bbox_2d`` key if there is one, else the first
    ``[a, b, c, d]`` list of four numbers (also inside an outer list or JSON object). None when absent or
    not finite. The box is returned as written, not checked for degeneracy.

    >>> parse_box('[{"bbox_2d": [1, 2, 30.5, 40], "label": "cat"}]')
    (1.0, 2.0, 30.5, 40.0)
    """
    match = _BBOX_KEY_RE.search(text) or _LIST4_RE.search(text)
    if match is None:
        return None
    box = tuple(float(v) for v in match.groups())
    return box if all(math.isfinite(v) for v in box) else None  # type: ignore[return-value]


def to_original_pixels(box: Box, box_format: str, image_sizes: Sequence, resized_sizes: Sequence) -> Box:
    """``box`` in the frame named by ``box_format`` converted to original-image pixels (table above).

    Raises ValueError for an unknown format or when the sizes the format needs are missing or zero.
    """
    if box_format == "abs":
        return box
    if box_format not in BOX_FORMATS:
        raise ValueError(f"iou: unknown box_format {box_format!r}; expected one of {BOX_FORMATS}")
    orig_w, orig_h = _first_size(image_sizes, "image_sizes", box_format)
    if box_format == "qwen2_5_vl":
        res_w, res_h = _first_size(resized_sizes, "resized_sizes", box_format)
        sx, sy = orig_w / res_w, orig_h / res_h
    elif box_format == "rel1000":
        sx, sy = orig_w / 1000.0, orig_h / 1000.0
    else:  # rel1
        sx, sy = float(orig_w), float(orig_h)
    x1, y1, x2, y2 = box
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def _first_size(sizes: Sequence, field_name: str, box_format: str) -> tuple[float, float]:
    if not sizes:
        raise ValueError(f"iou: box_format {box_format!r} needs {field_name}, which this row lacks")
    w, h = (float(v) for v in sizes[0])
    if not (w > 0 and h > 0):
        raise ValueError(f"iou: {field_name}[0] = {sizes[0]!r} is not a positive (w, h)")
    return w, h


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes; 0.0 when either has no area.

    >>> round(box_iou((0, 0, 10, 10), (5, 5, 15, 15)), 6)  # 25 / (100 + 100 - 25) = 1/7
    0.142857
    """
    if not (a[2] > a[0] and a[3] > a[1] and b[2] > b[0] and b[3] > b[1]):
        return 0.0
    inter_w = min(a[2], b[2]) - max(a[0], b[0])
    inter_h = min(a[3], b[3]) - max(a[1], b[1])
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@register_reward("iou")
def iou(
    inp: RewardInput,
    box_format: str = "abs",
    threshold: float | None = None,
    fallback_to_completion: bool = True,
) -> float:
    """IoU of the box in the answer region (converted by ``box_format``) with the ground-truth box; with
    ``threshold`` set, 1.0 if IoU >= threshold else 0.0. A missing, malformed or degenerate predicted box
    scores 0.0; a ground truth without a box raises ValueError."""
    truth = parse_box(str(inp.answer))
    if truth is None:
        raise ValueError(f"iou: ground truth {inp.answer!r} holds no [x1, y1, x2, y2] box")
    region = answer_region(inp.completion, fallback_to_completion)
    pred = parse_box(region) if region is not None else None
    # Convert even when there is no prediction, so a row lacking sizes is counted on every call, not only
    # when the model happens to emit a box.
    converted = to_original_pixels(pred or _NO_BOX, box_format, inp.image_sizes, inp.resized_sizes)
    if pred is None:
        return 0.0
    value = box_iou(converted, truth)
    if threshold is not None:
        return 1.0 if value >= threshold else 0.0
    return value
