"""Source ``refcoco``: referring expressions with one box each (RefCOCO, RefCOCO+, RefCOCOg and the like),
turned into grounding rows.

Input is a JSON list or JSONL of records holding an image path, one or more expressions and a box. The
field names vary between releases, so each is looked up under the names below (first present wins):

- image: ``image``, ``file_name``, ``image_path``, ``img_path``
- expressions: ``expression``, ``expressions``, ``sentences`` (strings, or ``{"sent": ...}`` /
  ``{"raw": ...}`` objects as the original ``refs`` pickles hold), ``sentence``, ``ref``, ``caption``
- box: ``bbox``, ``box``
- id: ``id``, ``ref_id``, ``ann_id`` (else the record index)

``box_format`` says how the boxes are written: ``xywh`` (COCO, the RefCOCO default) or ``xyxy``. Each
expression becomes one row (``one_row_per_expression``) or only the first is used, so a record's several
phrasings are not all drawn into one batch unless you want them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data_pipelines.records import SourceResult
from data_pipelines.sources.annotations import SourceError, annotations_and_root, progress, read_records
from data_pipelines.sources.answer_boxes import (
    BOX_FORMATS,
    DEFAULT_TOLERANCE,
    BoxProblem,
    box_answer,
    checked_box,
    to_xyxy,
)
from data_pipelines.sources.images import ImageProblem, load_image
from data_pipelines.sources.params import param
from data_pipelines.sources.rows import RowIds, new_row

IMAGE_KEYS = ("image", "file_name", "image_path", "img_path")
EXPRESSION_KEYS = ("expression", "expressions", "sentences", "sentence", "ref", "caption")
BOX_KEYS = ("bbox", "box")
ID_KEYS = ("id", "ref_id", "ann_id")
DEFAULT_TEMPLATE = 'Locate "{expression}" in the image and output its bounding box as [x1, y1, x2, y2].'


@dataclass(frozen=True)
class RefCocoOptions:
    annotations: str = param("JSON list or JSONL of referring-expression records")
    image_root: str | None = param("folder image paths are relative to; default: the annotation file's folder",
                                   None)
    box_format: str = param("'xywh' (COCO-style, RefCOCO's own) or 'xyxy'", "xywh")
    one_row_per_expression: bool = param("one row per expression; false: only the first expression of each "
                                         "record", True)
    box_tolerance: float = param("pixels a box may overrun the image before it is dropped", DEFAULT_TOLERANCE)
    data_source: str | None = param("constant data_source; default: the source's name", None)
    template: str = param("the question; {expression} is replaced", DEFAULT_TEMPLATE)


def load_refcoco(options: RefCocoOptions, name: str = "refcoco") -> SourceResult:
    """Grounding rows, ``[x1, y1, x2, y2]`` answers in original pixels; bad records dropped with a reason."""
    if options.box_format not in BOX_FORMATS:
        raise SourceError(
            f"source {name!r}: box_format must be one of {BOX_FORMATS}, got {options.box_format!r}"
        )
    path, root = annotations_and_root(options.annotations, options.image_root, name)
    result, ids = SourceResult(name), RowIds()
    for index, record in enumerate(progress(read_records(path), name)):
        local = _first(record, ID_KEYS)
        row_id = f"{name}:{local if local not in (None, '') else index}"
        for n, row in enumerate(_rows(record, index, row_id, Path(root), options, result, name)):
            row["id"] = row_id if n == 0 else f"{row_id}:{n}"
            ids.add(result, row)
    return result


def _rows(
    record: dict,
    index: int,
    row_id: str,
    root: Path,
    options: RefCocoOptions,
    result: SourceResult,
    name: str,
) -> list[dict]:
    """The record's rows (one per kept expression), or [] after recording why it was dropped."""
    if "__invalid__" in record:
        result.drop(row_id, "invalid_record", f"record {index} is not an object")
        return []
    expressions = _expressions(_first(record, EXPRESSION_KEYS))
    if not expressions:
        result.drop(
            row_id, "missing_question", f"record {index}: no expression in any of {list(EXPRESSION_KEYS)}"
        )
        return []
    box = _first(record, BOX_KEYS)
    if box is None:
        result.drop(row_id, "missing_answer", f"record {index}: no box in any of {list(BOX_KEYS)}")
        return []
    try:
        image = load_image(_first(record, IMAGE_KEYS), root, f"record {index}, field 'image'")
        xyxy = checked_box(to_xyxy(box, options.box_format), image.size, options.box_tolerance)
    except (ImageProblem, BoxProblem) as problem:
        result.drop(
            row_id,
            problem.reason,
            f"record {index}, field 'bbox': {problem.detail}"
            if isinstance(problem, BoxProblem)
            else problem.detail,
        )
        return []
    kept = expressions if options.one_row_per_expression else expressions[:1]
    if len(kept) < len(expressions):  # counted, so the card says how many phrasings were left out
        result.drop(row_id, "extra_expression",
                    f"record {index}: {len(expressions) - 1} more expressions (one_row_per_expression=false)")
    meta = {k: v for k, v in record.items() if k not in (*EXPRESSION_KEYS, *BOX_KEYS) and _jsonable(v)}
    meta["image_size"] = list(image.size)
    return [
        new_row(
            row_id,
            [image],
            options.template.format(expression=e),
            box_answer(xyxy),
            "grounding",
            options.data_source or name,
            meta={**meta, "expression": e},
        )
        for e in kept
    ]


def _first(record: dict, keys: tuple[str, ...]):
    return next((record[k] for k in keys if record.get(k) not in (None, "", [])), None)


def _expressions(value) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        text = item.get("sent") or item.get("raw") if isinstance(item, dict) else item
        if isinstance(text, str) and text.strip():
            out.append(text.strip())
    return list(dict.fromkeys(out))  # RefCOCO repeats identical sentences; one row each is enough


def _jsonable(value) -> bool:
    return isinstance(value, (str, int, float, bool, list, dict)) or value is None
