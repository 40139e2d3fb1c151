"""Source ``refcoco``: referring expressions with one box each (RefCOCO, RefCOCO+, RefCOCOg and the like),
turned into grounding rows.

``annotations`` is any of (the format follows the path):

- the refer toolkit's ``refs(unc).p`` / ``refs(umd).p`` / ``refs(google).p`` pickle, read safely and joined
  with ``instances.json`` (``instances``, default: beside the pickle) — see ``refer_layout``;
- a parquet file or folder of a re-release (an ``image`` struct or ``image_path``, ``bbox``, the expressions);
- a JSON list or JSONL of records.

Each record's fields are looked up under the names below (first present wins):

- image: ``image``, ``image_path``, ``img_path``, ``file_name`` (a parquet re-release's ``file_name`` may carry
  the ref's annotation suffix, so it comes last)
- expressions: ``expression``, ``expressions``, ``sentences`` (strings, or ``{"sent": ...}`` / ``{"raw": ...}``
  objects as the refs pickles hold), ``sentence``, ``ref``, ``caption``, ``captions``, ``answer`` (the list of
  expressions of the lmms-lab re-release, whose ``question`` is a fixed prompt)
- box: ``bbox``, ``box``;  id: ``id``, ``ref_id``, ``question_id``, ``ann_id`` (else the record index)

``box_format`` says how boxes are written: ``xywh`` (COCO, the refer toolkit and lmms-lab), ``xyxy``
(jxu124's re-release), ``rel1`` or ``rel1000``. Each expression becomes one row (``one_row_per_expression``) or
only the first is used. The ref's own ``split`` is kept in ``meta.split``: refs of ``exclude_splits`` are
drops (``excluded_split``), refs of ``heldout_splits`` go to the held-out ``test`` set whatever
``eval_fraction`` draws (``meta.heldout``), so a published test ref is never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data_pipelines.records import SourceResult
from data_pipelines.sources.annotations import (
    SourceError,
    annotations_and_root,
    existing_path,
    progress,
    read_records,
)
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
from data_pipelines.sources.refer_layout import HELD_OUT_SPLITS, parquet_refs, refer_records
from data_pipelines.sources.rows import RowIds, new_row

IMAGE_KEYS = ("image", "image_path", "img_path", "file_name")
EXPRESSION_KEYS = ("expression", "expressions", "sentences", "sentence", "ref", "caption", "captions", "answer")
BOX_KEYS = ("bbox", "box")
ID_KEYS = ("id", "ref_id", "question_id", "ann_id")
DEFAULT_TEMPLATE = 'Locate "{expression}" in the image and output its bounding box as [x1, y1, x2, y2].'


@dataclass(frozen=True)
class RefCocoOptions:
    annotations: str = param("refs(unc).p pickle (refer layout), parquet file or folder, or JSON/JSONL records")
    instances: str | None = param("refer layout: instances.json; default: beside the pickle", None)
    image_root: str | None = param("folder image paths are relative to; default: the annotation file's folder",
                                   None)
    box_format: str = param("'xywh' (COCO-style, RefCOCO's own), 'xyxy', 'rel1' or 'rel1000'", "xywh")
    heldout_splits: tuple[str, ...] = param("refs of these published splits go to the held-out test set",
                                            HELD_OUT_SPLITS)
    exclude_splits: tuple[str, ...] = param("refs of these published splits are left out (drops: excluded_split)",
                                            ())
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
    path, root = annotations_and_root_any(options.annotations, options.image_root, name)
    result, ids = SourceResult(name), RowIds()
    for index, record in enumerate(progress(_records(path, options, name), name)):
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
    if "__missing__" in record:
        result.drop(row_id, "unknown_annotation", record["__missing__"])
        return []
    split = record.get("split")
    if split in options.exclude_splits:
        result.drop(row_id, "excluded_split", f"record {index}: split {split!r} is in exclude_splits")
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
        xyxy = checked_box(to_xyxy(_plain(box), options.box_format, image.size), image.size, options.box_tolerance)
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
    if split in options.heldout_splits:
        meta["heldout"] = True
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
    if isinstance(value, dict):  # an image struct {bytes, path} is pixels, not provenance
        return "bytes" not in value and all(_jsonable(v) for v in value.values())
    if isinstance(value, list):
        return all(_jsonable(v) for v in value)
    return isinstance(value, (str, int, float, bool)) or value is None


def _plain(value):
    return value.tolist() if hasattr(value, "tolist") else value


def annotations_and_root_any(annotations: str, image_root: str | None, name: str) -> tuple[Path, Path]:
    """As ``annotations_and_root``, but the annotations may be a folder (of parquet files)."""
    path = existing_path(annotations, f"source {name!r}: annotations")
    if path.is_file():
        return annotations_and_root(annotations, image_root, name)
    root = existing_path(image_root, f"source {name!r}: image_root", "dir") if image_root else path
    return path, Path(root)


def _records(path: Path, options: RefCocoOptions, name: str) -> list[dict]:
    """The records of whichever layout ``path`` is (module docstring)."""
    if path.is_dir() or path.suffix == ".parquet":
        return parquet_refs(path, name)
    if path.suffix in (".p", ".pkl", ".pickle"):
        instances = existing_path(options.instances, f"source {name!r}: instances", "file") if options.instances \
            else None
        return refer_records(path, instances, name)
    return read_records(path)
