"""Boxes as sources write them into answers: ``[x1, y1, x2, y2]`` in pixels of the original image.

Checked here once for every source, because a bad ground-truth box poisons the IoU reward silently: a box
outside the image can never be matched and a degenerate one (no area) scores IoU 0 against anything.
Annotations often overrun the image edge by a fraction of a pixel (rounding in the annotation tool), so a
box that leaves the image by at most ``tolerance`` pixels is clipped to it; further out is an error.

The answer texts are what ``vlrl.rewards.boxes`` reads back: a grounding answer is the JSON list
``[x1, y1, x2, y2]`` (``parse_box``), a detection answer a JSON list of ``{"bbox_2d": [...], "label": ...}``
objects (``parse_boxes``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

# How a source writes its boxes: corners or corner + size in pixels of the original image, or corners
# relative to the image's width and height on a 0-1 or 0-1000 scale (Qwen2-VL-style releases).
BOX_FORMATS = ("xyxy", "xywh", "rel1", "rel1000")
BOX_TASKS = ("grounding", "detection")  # tasks whose answer is boxes
DEFAULT_TOLERANCE = 1.0  # pixels a box may overrun the image edge before it counts as outside
_SCALE = {"rel1": 1.0, "rel1000": 1000.0}


class BoxProblem(Exception):
    """A ground-truth box that cannot be used; ``reason`` is a drop reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def to_xyxy(
    box: object, box_format: str, size: tuple[int, int] | None = None
) -> tuple[float, float, float, float]:
    """Four finite numbers in ``box_format`` as ``(x1, y1, x2, y2)`` in pixels of the original image.

    "xywh" is COCO's ``[x, y, w, h]``; "rel1" / "rel1000" are corners on a 0-1 / 0-1000 scale of the
    ``(width, height)`` image ``size``, which they need.

    >>> to_xyxy([100, 250, 500, 750], "rel1000", (200, 40))
    (20.0, 10.0, 100.0, 30.0)
    """
    if box_format not in BOX_FORMATS:
        raise ValueError(f"unknown box format {box_format!r}; expected one of {BOX_FORMATS}")
    if not isinstance(box, Sequence) or isinstance(box, str) or len(box) != 4:
        raise BoxProblem("bad_box", f"expected 4 numbers, got {str(box)[:80]}")
    try:
        a, b, c, d = (float(v) for v in box)
    except (TypeError, ValueError) as exc:
        raise BoxProblem("bad_box", f"non-numeric box {str(box)[:80]}") from exc
    if not all(math.isfinite(v) for v in (a, b, c, d)):
        raise BoxProblem("bad_box", f"non-finite box {box}")
    if box_format == "xywh":
        return (a, b, a + c, b + d)
    if box_format in _SCALE:
        if size is None:
            raise ValueError(f"box format {box_format!r} needs the image size")
        sx, sy = size[0] / _SCALE[box_format], size[1] / _SCALE[box_format]
        return (a * sx, b * sy, c * sx, d * sy)
    return (a, b, c, d)


def checked_box(
    xyxy: tuple[float, float, float, float], size: tuple[int, int], tolerance: float = DEFAULT_TOLERANCE
) -> tuple[float, float, float, float]:
    """``xyxy`` clipped to the ``(width, height)`` image; :class:`BoxProblem` when it is degenerate
    (``degenerate_box``: x2 <= x1 or y2 <= y1) or leaves the image by more than ``tolerance`` pixels
    (``box_outside_image``)."""
    x1, y1, x2, y2 = xyxy
    w, h = size
    if x2 <= x1 or y2 <= y1:
        raise BoxProblem("degenerate_box", f"box {_fmt(xyxy)} has no area")
    if x1 < -tolerance or y1 < -tolerance or x2 > w + tolerance or y2 > h + tolerance:
        raise BoxProblem("box_outside_image", f"box {_fmt(xyxy)} leaves the {w}x{h} image")
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h)))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise BoxProblem("degenerate_box", f"box {_fmt(xyxy)} has no area inside the {w}x{h} image")
    return clipped


def box_answer(xyxy: Sequence[float]) -> str:
    """The grounding answer text: ``"[x1, y1, x2, y2]"`` with at most two decimals."""
    return json.dumps([_number(v) for v in xyxy])


def detection_answer(boxes: Sequence[tuple[Sequence[float], str | None]]) -> str:
    """The detection answer text: a JSON list of ``{"bbox_2d": [x1, y1, x2, y2], "label": label}`` (no
    ``label`` key for an unlabelled box)."""
    items = []
    for xyxy, label in boxes:
        item: dict = {"bbox_2d": [_number(v) for v in xyxy]}
        if label is not None:
            item["label"] = str(label)
        items.append(item)
    return json.dumps(items)


def _number(v: float) -> float | int:
    # Two decimals are far below annotation noise; integral values print without ".0".
    r = round(float(v), 2)
    return int(r) if r == int(r) else r


def _fmt(xyxy: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in xyxy) + "]"
