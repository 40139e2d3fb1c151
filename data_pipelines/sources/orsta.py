"""Source ``orsta``: V-Triune / Orsta parquet data (Ma et al. 2025, "One RL to See Them All").

Columns read: ``prompt`` (chat messages ``{role, content}``; the last user message is the question, its
``<image>`` marks kept), ``images`` (a list of ``{bytes, path}`` structs, bytes or paths), ``reward_model``
(``ground_truth``, ``verifier``, ``verifier_parm``, ``accuracy_ratio``, ``format_ratio``), ``data_source``,
and the optional ``ability`` and ``extra_info``.

- ``reward``: the ``reward_model`` object as it is; ``vlrl.rewards.vtriune`` translates it at training time.
  It is checked here the way training will read it (every key of the released schema, the verifier's
  params): a spec training would reject is a drop (``bad_reward``) naming the row and the key.
- ``answer``: ``reward_model.ground_truth`` without a wrapping ``<answer>…</answer>``. For the ``detection``
  verifier its boxes are rewritten as this package's ground truth — ``[{"bbox_2d": [x1, y1, x2, y2],
  "label": ...}]`` in original pixels of the first image. V-Triune writes them 0–1000 normalised when
  ``verifier_parm.det_verifier_normalized`` is true (``gt_box_frame: auto``); ``rel1000`` or ``abs``
  forces a reading.
- ``task``: from the verifier (``mathverify`` -> ``math``, ``detection`` -> ``detection``; ``task_by_verifier``
  adds or overrides), else the ``ability`` column, else ``open``.
- ``meta``: ``ability``, ``extra_info`` and the system prompt when there is one.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_pipelines.records import SourceResult
from data_pipelines.sources.annotations import (
    SourceError,
    existing_path,
    iter_parquet_records,
    parquet_columns,
    parquet_files,
    progress,
)
from data_pipelines.sources.answer_boxes import (
    DEFAULT_TOLERANCE,
    BoxProblem,
    checked_box,
    detection_answer,
    to_xyxy,
)
from data_pipelines.sources.columns import plain_value
from data_pipelines.sources.images import ImageProblem, load_image
from data_pipelines.sources.params import param
from data_pipelines.sources.rows import RowIds, new_row

REQUIRED_COLUMNS = ("prompt", "images", "reward_model")
DEFAULT_TASKS = {"mathverify": "math", "detection": "detection"}
GT_FRAMES = ("auto", "rel1000", "abs")
_ANSWER_TAG_RE = re.compile(r"^\s*<answer>(.*)</answer>\s*$", re.DOTALL)


@dataclass(frozen=True)
class OrstaOptions:
    path: str = param("a parquet file or a folder of them")
    split: str | None = param("in a folder, only files named for (or under a folder named) this split", None)
    gt_box_frame: str = param("detection ground truth: 'auto', 'rel1000' (0-1000 normalised) or 'abs'", "auto")
    task_by_verifier: Mapping[str, str] | None = param("verifier -> task, over the default routing", None)
    data_source: str | None = param("constant data_source; default: the data_source column, else the name", None)
    image_root: str | None = param("folder that relative image paths are under (images stored as paths)", None)
    box_tolerance: float = param("pixels a box may overrun the image before it is dropped", DEFAULT_TOLERANCE)
    limit: int | None = param("read at most this many rows", None)


def load_orsta(options: OrstaOptions, name: str = "orsta") -> SourceResult:
    """Rows from V-Triune/Orsta parquet; each unusable row is a drop naming its index and field."""
    if options.gt_box_frame not in GT_FRAMES:
        raise SourceError(
            f"source {name!r}: gt_box_frame must be one of {GT_FRAMES}, got {options.gt_box_frame!r}"
        )
    files = parquet_files(options.path, options.split, f"source {name!r}: path")
    missing = [c for c in REQUIRED_COLUMNS if c not in parquet_columns(files)]
    if missing:
        raise SourceError(f"{files[0]}: not V-Triune/Orsta data, missing columns {missing}")
    root = (
        existing_path(options.image_root, f"source {name!r}: image_root", "dir")
        if options.image_root
        else None
    )
    tasks = {**DEFAULT_TASKS, **(options.task_by_verifier or {})}
    result, ids = SourceResult(name), RowIds()
    for index, record in enumerate(progress(iter_parquet_records(files), name)):
        if options.limit is not None and index >= options.limit:
            break
        row = _row(record, index, options, tasks, root, result, name)
        if row is not None:
            ids.add(result, row)
    return result


def _row(
    record: dict,
    index: int,
    options: OrstaOptions,
    tasks: Mapping[str, str],
    root: Path | None,
    result: SourceResult,
    name: str,
):
    row_id = f"{name}:{index}"
    question, system = _question(_maybe_json(record.get("prompt")))
    if not question:
        return result.drop(row_id, "missing_question", f"row {index}: no user message in column 'prompt'")
    reward = _maybe_json(record.get("reward_model"))
    if not isinstance(reward, Mapping) or not reward.get("verifier"):
        return result.drop(row_id, "bad_reward", f"row {index}: column 'reward_model' has no verifier")
    reward = plain_value(reward)
    from vlrl.rewards.vtriune import check_vtriune  # here: the rewards package loads torch, sources need not

    try:  # every key of the released schema and the verifier's params, checked now rather than mid-training
        check_vtriune(reward)
    except ValueError as err:
        return result.drop(row_id, "bad_reward", f"row {index}, column 'reward_model': {err}")
    truth = _ground_truth(reward.get("ground_truth"))
    if not truth:
        return result.drop(row_id, "missing_answer", f"row {index}: empty 'reward_model.ground_truth'")
    try:
        images = [
            load_image(v, root, f"row {index}, column 'images'") for v in _image_list(record.get("images"))
        ]
        if reward["verifier"] == "detection":
            truth = _detection_truth(
                truth, images, _frame(options.gt_box_frame, reward), options.box_tolerance
            )
    except ImageProblem as problem:
        return result.drop(row_id, problem.reason, problem.detail)
    except BoxProblem as problem:
        return result.drop(
            row_id, problem.reason, f"row {index}, field 'reward_model.ground_truth': {problem.detail}"
        )
    ability = record.get("ability")
    meta = {
        k: plain_value(v)
        for k, v in (
            ("ability", ability),
            ("extra_info", record.get("extra_info")),
            ("system_prompt", system),
        )
        if v not in (None, "", {})
    }
    task = tasks.get(reward["verifier"]) or (ability if isinstance(ability, str) and ability else "open")
    data_source = options.data_source or record.get("data_source") or name
    return new_row(row_id, images, question, truth, task, str(data_source), reward=reward, meta=meta)


def _question(messages: Any) -> tuple[str, str]:
    """(last user message's text, system message's text); image parts become ``<image>``."""
    if isinstance(messages, str):
        return messages.strip(), ""
    if not isinstance(messages, list):
        return "", ""
    by_role: dict[str, str] = {}
    for message in messages:
        if isinstance(message, Mapping) and isinstance(message.get("role"), str):
            by_role[message["role"]] = _content_text(message.get("content"))
    return by_role.get("user", "").strip(), by_role.get("system", "").strip()


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI-style parts
        parts = [
            p.get("text", "") if p.get("type") == "text" else "<image>" if p.get("type") == "image" else ""
            for p in content
            if isinstance(p, Mapping)
        ]
        return "".join(parts)
    return ""


def _ground_truth(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(plain_value(value))
    tagged = _ANSWER_TAG_RE.match(text)
    return (tagged.group(1) if tagged else text).strip()


def _frame(option: str, reward: Mapping) -> str:
    if option != "auto":
        return option
    params = reward.get("verifier_parm") or {}
    return "rel1000" if isinstance(params, Mapping) and params.get("det_verifier_normalized") else "abs"


def _detection_truth(truth: str, images: list, frame: str, tolerance: float) -> str:
    """V-Triune's box list as ``[{"bbox_2d": [...], "label": ...}]`` in original pixels of the first image."""
    if not images:
        raise BoxProblem("missing_image", "detection ground truth needs an image to scale its boxes to")
    items = _literal(truth)
    if not isinstance(items, list):
        items = [items]
    width, height = images[0].size
    sx, sy = (width / 1000.0, height / 1000.0) if frame == "rel1000" else (1.0, 1.0)
    boxes = []
    for item in items:
        raw = item.get("bbox_2d", item.get("bbox")) if isinstance(item, Mapping) else item
        x1, y1, x2, y2 = to_xyxy(raw, "xyxy")
        xyxy = checked_box((x1 * sx, y1 * sy, x2 * sx, y2 * sy), (width, height), tolerance)
        boxes.append((xyxy, item.get("label") if isinstance(item, Mapping) else None))
    return detection_answer(boxes)


def _literal(text: str) -> Any:
    """Ground truth written as JSON or as a Python literal (single quotes) — trusted data, not model output."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError) as exc:
            raise BoxProblem("bad_box", f"cannot read boxes from {text[:120]!r}") from exc


def _image_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
