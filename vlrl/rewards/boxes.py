"""Boxes in model output and ground truth: parsing, frame conversion, IoU and IoU-threshold schedules.

Shared by the ``iou``, ``detection`` and ``map`` rewards.

Parsing
-------
:func:`parse_boxes` reads every box in a text, in order of appearance:

- plain lists of four numbers ``[x1, y1, x2, y2]``, alone, in a JSON list, or in running prose;
- objects such as Qwen2.5-VL's ``{"bbox_2d": [x1, y1, x2, y2], "label": "cat"}`` (keys ``bbox_2d``,
  ``bbox`` or ``box``), in JSON or Python-literal quoting, with an optional ``"confidence"`` or
  ``"score"``, alone or in a list, inside a ```json fence or not.

Model output is untrusted, so parsing is a single left-to-right regex scan whose patterns cannot
backtrack across more than one object: linear time, no recursion, no ``json.loads`` or
``ast.literal_eval`` (deeply nested brackets would make those recurse or crawl). An object is the text
between ``{`` and the next ``}`` with no brace in between; boxes inside objects with nested braces are
still found, as unlabelled plain lists.

Frames
------
Ground truth is in pixels of the *original* image. Models emit boxes in their own frame, named by the
rewards' ``box_format`` param:

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

Thresholds
----------
``threshold="dynamic"`` follows a schedule of ``[progress_upto, threshold]`` pairs over training
progress. The default is V-Triune's (Ma et al., 2025, "One RL to See Them All"): 0.85 while progress
<= 0.1, 0.95 while <= 0.25, then 0.99 — loose early so a weak policy still finds boxes that count, then
strict so the reward keeps separating good boxes from near-misses once most boxes overlap well.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from vlrl.rewards.base import RewardInput, answer_region

XYXY = tuple[float, float, float, float]  # (x1, y1, x2, y2)


class Box(NamedTuple):
    """One box: corners, an optional class label and an optional confidence, as written."""

    xyxy: XYXY
    label: str | None = None
    score: float | None = None


BOX_FORMATS = ("abs", "qwen2_5_vl", "rel1000", "rel1")
DEFAULT_IOU_SCHEDULE = ((0.1, 0.85), (0.25, 0.95), (1.0, 0.99))
DEFAULT_MAX_BOXES = 100

_N = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_LIST4 = rf"\[\s*({_N})\s*,\s*({_N})\s*,\s*({_N})\s*,\s*({_N})\s*\]"
_Q = "[\"']"
_LIST4_RE = re.compile(_LIST4)
_BOX_KEY_RE = re.compile(rf"{_Q}?(?:bbox_2d|bbox|box){_Q}?\s*:\s*{_LIST4}")
# An object, or a plain list: one alternation so the scan visits the text once, in order.
_ITEM_RE = re.compile(rf"(\{{[^{{}}]*\}})|{_LIST4}")
_LABEL_RE = re.compile(rf"""{_Q}label{_Q}\s*:\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")
_SCORE_RE = re.compile(rf"{_Q}(?:confidence|score){_Q}\s*:\s*({_N})")
_EMPTY_RE = re.compile(r"\s*(?:```[A-Za-z]*\s*)?\[\s*\]\s*(?:```)?\s*")


def parse_boxes(text: str, limit: int | None = None) -> list[Box] | None:
    """Every box in ``text`` in order of appearance (see the module docstring for the forms read).

    A box with a non-finite coordinate or confidence is dropped. Scanning stops once ``limit`` boxes are
    found, so a caller that rejects long lists pays only for what it reads. Returns None when the text
    holds no box and is not an explicitly empty list (``[]``, fenced or not): "no boxes" and "no answer"
    stay distinguishable.

    >>> parse_boxes("[{'bbox_2d': [1, 2, 30.5, 40], 'label': 'cat', 'confidence': 0.9}]")
    [Box(xyxy=(1.0, 2.0, 30.5, 40.0), label='cat', score=0.9)]
    """
    boxes: list[Box] = []
    for match in _ITEM_RE.finditer(text):
        if limit is not None and len(boxes) >= limit:
            break
        if match.group(1) is None:
            box = _finite_box(match.groups()[1:], None, None)
            if box is not None:
                boxes.append(box)
        else:
            boxes.extend(_object_boxes(match.group(1)))
    if limit is not None:
        del boxes[limit:]
    if not boxes and _EMPTY_RE.fullmatch(text) is None:
        return None
    return boxes


def _object_boxes(obj: str) -> list[Box]:
    if "[" not in obj:  # cheap exit: floods of box-less objects ("{}" * 50000) stay fast
        return []
    keyed = _BOX_KEY_RE.search(obj)
    if keyed is None:  # not a box object: any plain lists inside still count, unlabelled
        return [b for m in _LIST4_RE.finditer(obj) if (b := _finite_box(m.groups(), None, None))]
    label = _LABEL_RE.search(obj)
    label_text = None
    if label is not None:
        label_text = _unescape(label.group(1) if label.group(1) is not None else label.group(2))
    score = _SCORE_RE.search(obj)
    box = _finite_box(keyed.groups(), label_text, None if score is None else score.group(1))
    return [] if box is None else [box]


def _unescape(text: str) -> str:
    # Only the escapes a label plausibly carries; anything else stays as written.
    return text.replace('\\"', '"').replace("\\'", "'").replace("\\\\", "\\")


def _finite_box(coords: Sequence[str], label: str | None, score: str | None) -> Box | None:
    xyxy = tuple(float(v) for v in coords)
    conf = None if score is None else float(score)
    if not all(math.isfinite(v) for v in xyxy) or (conf is not None and not math.isfinite(conf)):
        return None
    return Box(xyxy, label, conf)  # type: ignore[arg-type]


def parse_box(text: str) -> XYXY | None:
    """The one box of a single-box answer: the list after a box key (``bbox_2d``, ``bbox``, ``box``) if
    there is one, else the first ``[a, b, c, d]`` list. None when absent or not finite. The box is
    returned as written, not checked for degeneracy.

    A keyed list wins over an earlier bare one because models often echo other numbers first (a label
    like ``[9, 9, 9, 9]``, an image size) before the box object itself.

    >>> parse_box('[{"bbox_2d": [1, 2, 30.5, 40], "label": "cat"}]')
    (1.0, 2.0, 30.5, 40.0)
    """
    match = _BOX_KEY_RE.search(text) or _LIST4_RE.search(text)
    if match is None:
        return None
    box = tuple(float(v) for v in match.groups())
    return box if all(math.isfinite(v) for v in box) else None  # type: ignore[return-value]


def normalize_label(label: str | None) -> str | None:
    """Case-folded label with whitespace collapsed; None for a missing or blank label."""
    if label is None:
        return None
    return " ".join(label.casefold().split()) or None


def frame_scale(
    box_format: str, image_sizes: Sequence, resized_sizes: Sequence, who: str = "iou"
) -> tuple[float, float]:
    """``(sx, sy)`` multiplying x and y coordinates in the ``box_format`` frame into original pixels.

    Raises ValueError (message prefixed by the reward name ``who``) for an unknown format or when the
    sizes the format needs are missing or not positive.
    """
    if box_format not in BOX_FORMATS:
        raise ValueError(f"{who}: unknown box_format {box_format!r}; expected one of {BOX_FORMATS}")
    if box_format == "abs":
        return 1.0, 1.0
    orig_w, orig_h = _first_size(image_sizes, "image_sizes", box_format, who)
    if box_format == "qwen2_5_vl":
        res_w, res_h = _first_size(resized_sizes, "resized_sizes", box_format, who)
        return orig_w / res_w, orig_h / res_h
    if box_format == "rel1000":
        return orig_w / 1000.0, orig_h / 1000.0
    return orig_w, orig_h  # rel1


def _first_size(sizes: Sequence, field_name: str, box_format: str, who: str) -> tuple[float, float]:
    if not sizes:
        raise ValueError(f"{who}: box_format {box_format!r} needs {field_name}, which this row lacks")
    w, h = (float(v) for v in sizes[0])
    if not (w > 0 and h > 0 and math.isfinite(w) and math.isfinite(h)):
        raise ValueError(f"{who}: {field_name}[0] = {sizes[0]!r} is not a positive (w, h)")
    return w, h


def to_original_pixels(box: XYXY, box_format: str, image_sizes: Sequence, resized_sizes: Sequence) -> XYXY:
    """``box`` in the frame named by ``box_format`` converted to original-image pixels (table above).

    Raises ValueError for an unknown format or when the sizes the format needs are missing or zero.
    """
    sx, sy = frame_scale(box_format, image_sizes, resized_sizes)
    x1, y1, x2, y2 = box
    return (x1 * sx, y1 * sy, x2 * sx, y2 * sy)


def box_iou(a: XYXY, b: XYXY) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes; 0.0 when either has no area, and 0.0
    when the arithmetic leaves the floats (areas that overflow to inf or underflow to 0).

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
    if not (union > 0 and math.isfinite(union)):
        return 0.0
    value = inter / union
    return value if 0.0 <= value <= 1.0 else 0.0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [N, 4], b [M, 4] (x1, y1, x2, y2) -> IoU [N, M] float64, with :func:`box_iou`'s conventions."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        wa, ha = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        wb, hb = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        inter_w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
        inter_h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
        inter = inter_w * inter_h
        union = (wa * ha)[:, None] + (wb * hb)[None, :] - inter
        iou = inter / union
        ok = ((wa > 0) & (ha > 0))[:, None] & ((wb > 0) & (hb > 0))[None, :]
        ok &= (inter_w > 0) & (inter_h > 0) & (union > 0) & np.isfinite(union) & (iou >= 0) & (iou <= 1)
    return np.where(ok, iou, 0.0)


def resolve_threshold(
    threshold: float | str | None, schedule: Sequence, progress: float, who: str
) -> float | None:
    """The IoU threshold in force: ``threshold`` itself, or for ``"dynamic"`` the first ``[upto, t]`` pair
    of ``schedule`` with ``progress <= upto`` (the last pair's ``t`` past the end). Raises ValueError for
    any other string, a threshold outside [0, 1] or a malformed schedule."""
    if threshold is None:
        return None
    if isinstance(threshold, str):
        if threshold != "dynamic":
            raise ValueError(f"{who}: threshold must be a number in [0, 1] or 'dynamic', got {threshold!r}")
        return scheduled_threshold(progress, schedule, who)
    value = float(threshold)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{who}: IoU threshold {threshold!r} is outside [0, 1]")
    return value


def scheduled_threshold(
    progress: float, schedule: Sequence = DEFAULT_IOU_SCHEDULE, who: str = "iou"
) -> float:
    """The threshold ``schedule`` (``[[progress_upto, threshold], ...]``, ``progress_upto`` increasing)
    gives at training ``progress``.

    >>> [scheduled_threshold(p) for p in (0.05, 0.2, 0.5)]
    [0.85, 0.95, 0.99]
    """
    pairs = [tuple(pair) for pair in schedule]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise ValueError(f"{who}: iou_schedule must be a non-empty list of [progress_upto, threshold] pairs")
    uptos = [float(u) for u, _ in pairs]
    if uptos != sorted(uptos) or not all(0.0 <= float(t) <= 1.0 for _, t in pairs):
        raise ValueError(
            f"{who}: iou_schedule {schedule!r} needs increasing progress and thresholds in [0, 1]"
        )
    for upto, value in pairs:
        if progress <= float(upto):
            return float(value)
    return float(pairs[-1][1])


def read_boxes(
    inp: RewardInput, who: str, box_format: str, max_boxes: int, fallback_to_completion: bool
) -> tuple[list[Box] | None, list[Box]]:
    """``(predictions, truths)`` of a multi-box row, both in original-image pixels.

    Predictions are None when the completion has no answer region or more than ``max_boxes`` boxes
    (spam: a policy must not be able to carpet the image with boxes and collect matches); an empty list
    when the region holds no box. Raises ValueError when the ground truth holds no boxes and is not an
    empty list, when ``max_boxes`` is not a positive integer, or when ``box_format`` needs sizes the row
    lacks (checked on every call, box or not, so the failure count does not depend on the model).
    """
    if isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 1:
        raise ValueError(f"{who}: max_boxes must be a positive integer, got {max_boxes!r}")
    truths = parse_boxes(str(inp.answer))
    if truths is None:
        raise ValueError(f"{who}: ground truth {str(inp.answer)[:200]!r} holds no boxes (use [] for none)")
    sx, sy = frame_scale(box_format, inp.image_sizes, inp.resized_sizes, who)
    region = answer_region(inp.completion, fallback_to_completion)
    if region is None:
        return None, truths
    preds = parse_boxes(region, limit=max_boxes + 1) or []
    if len(preds) > max_boxes:
        return None, truths
    if (sx, sy) != (1.0, 1.0):
        preds = [b._replace(xyxy=(b.xyxy[0] * sx, b.xyxy[1] * sy, b.xyxy[2] * sx, b.xyxy[3] * sy))
                 for b in preds]
    return preds, truths
