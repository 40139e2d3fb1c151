"""Reading the boxes of a grounding or detection answer as a release writes them, into this package's answer.

Published sets write a box answer in many shapes: a list of four numbers (a parquet ``bbox`` column), a JSON
or Python-literal string of one (``"[10, 20, 30, 40]"``, VLM-R1's conversation replies), a list of
``{"bbox_2d": [...], "label": ...}`` objects (Qwen2.5-VL / V-Triune detection), such a list inside
``<answer>…</answer>`` or a Markdown ```` ```json ```` fence, or one object with a ``bbox``/``box`` key.
:func:`box_items` reads every one of them; :func:`box_answer_text` converts the boxes from the source's
``box_format`` to ``[x1, y1, x2, y2]`` in original pixels, checks them against the image, and writes the
answer text the IoU and detection rewards read.

A grounding or detection row whose answer holds no usable box is a drop (``missing_box``, ``bad_box``,
``not_one_box``, ``box_outside_image``, ``degenerate_box``): such a row could only ever score 0, and a
question whose "answer" is text would teach the policy nothing about boxes.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from data_pipelines.sources.answer_boxes import BoxProblem, box_answer, checked_box, detection_answer, to_xyxy

_BOX_KEYS = ("bbox_2d", "bbox", "box")
_LABEL_KEYS = ("label", "category", "name")
_WRAPPERS = (re.compile(r"<answer>(.*?)</answer>", re.DOTALL), re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL))
_FOUR_NUMBERS = re.compile(r"\[\s*(-?[\d.]+(?:e-?\d+)?\s*,\s*){3}-?[\d.]+(?:e-?\d+)?\s*\]")


def box_items(value: Any) -> list[tuple[Sequence, str | None]]:
    """``[(raw box, label or None), ...]`` from an answer cell in any shape above; ``BoxProblem``
    (``missing_box``) when it holds none."""
    parsed = _parsed(value)
    if _is_box(parsed):
        return [(parsed, None)]
    items = [parsed] if isinstance(parsed, Mapping) else parsed
    if isinstance(items, (list, tuple)) and items:
        out = [_item(item) for item in items]
        if all(box is not None for box, _ in out):
            return out  # type: ignore[return-value]
    if isinstance(value, str):  # free text around boxes: "the box is [1, 2, 3, 4]."
        found = [json.loads(m.group(0)) for m in _FOUR_NUMBERS.finditer(value)]
        if found:
            return [(box, None) for box in found]
    raise BoxProblem("missing_box", f"no box in the answer {str(value)[:120]!r}")


def box_answer_text(
    value: Any, task: str, box_format: str, size: tuple[int, int], tolerance: float
) -> str:
    """The answer text of a ``grounding`` row (``"[x1, y1, x2, y2]"``, exactly one box) or a ``detection``
    row (a JSON list of ``{"bbox_2d", "label"}``) from a cell holding boxes in ``box_format`` on an image of
    ``size``; ``BoxProblem`` naming the reason otherwise."""
    items = box_items(value)
    boxes = [(checked_box(to_xyxy(raw, box_format, size), size, tolerance), label) for raw, label in items]
    if task == "grounding":
        if len(boxes) != 1:
            raise BoxProblem("not_one_box", f"a grounding answer needs one box, got {len(boxes)}")
        return box_answer(boxes[0][0])
    return detection_answer(boxes)


def _parsed(value: Any) -> Any:
    """A string cell read as JSON or a Python literal (after unwrapping ``<answer>`` / code fences)."""
    if hasattr(value, "tolist"):  # numpy arrays from parquet
        value = value.tolist()
    if not isinstance(value, str):
        return value
    text = value.strip()
    for wrapper in _WRAPPERS:
        match = wrapper.search(text)
        if match:
            text = match.group(1).strip()
    for parse in (json.loads, ast.literal_eval):  # literal_eval evaluates no code: literals only
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def _item(item: Any) -> tuple[Sequence | None, str | None]:
    if hasattr(item, "tolist"):
        item = item.tolist()
    if _is_box(item):
        return item, None
    if isinstance(item, Mapping):
        box = next((item[k] for k in _BOX_KEYS if item.get(k) is not None), None)
        box = box.tolist() if hasattr(box, "tolist") else box
        label = next((str(item[k]) for k in _LABEL_KEYS if item.get(k) not in (None, "")), None)
        return box, label  # a malformed box is to_xyxy's bad_box, not "no box"
    return None, None


def _is_box(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
