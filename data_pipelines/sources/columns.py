"""Column-mapped records (a CSV/JSONL annotation file, any HF dataset) turned into schema-v1 rows.

A user names which of their columns holds each schema field (``{"image": "file_name", "problem":
"question", "answer": "gt"}``); ``task`` and ``data_source`` may be columns or constants. Each record
becomes one row or one drop naming the record id, the field and the column: a record is never skipped
silently and never fails the whole source.

Image cells hold one image or several: a list, a JSON list in a string (``'["a.jpg", "b.jpg"]'``), or paths
joined by ``image_sep`` (";" by default). Non-string answers (numbers, box lists) are written as JSON.

A mapped column may be a path into nested values (``conversations[1].value``, ``solution.bbox``; see
``column_paths``). The answer of a ``grounding`` or ``detection`` row is read as boxes in the source's
``box_format`` and rewritten as ``[x1, y1, x2, y2]`` in original pixels (``box_cells``); a row whose answer
holds no usable box is a drop.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from data_pipelines.records import SourceResult
from data_pipelines.sources.annotations import SourceError
from data_pipelines.sources.answer_boxes import BOX_FORMATS, BOX_TASKS, DEFAULT_TOLERANCE, BoxProblem
from data_pipelines.sources.box_cells import box_answer_text
from data_pipelines.sources.column_paths import MISSING, lookup, root_column
from data_pipelines.sources.images import ImageProblem
from data_pipelines.sources.params import param
from data_pipelines.sources.rows import RowIds, new_row

REQUIRED = ("image", "problem", "answer")


@dataclass(frozen=True)
class Columns:
    """Which input column holds each schema field (the keys of a source's ``columns`` param); None: the field
    has no column."""

    image: str = param(
        "column of the row's images (schema field `images`; the key `images` is accepted too): a path relative to "
        "image_root, an image, or several as a list, a JSON list or paths joined by image_sep")
    problem: str = param("column of the question (`problem`); `<image>` in it marks where the images go")
    answer: str = param("column of the ground truth (`answer`); numbers and box lists are written as JSON text")
    id: str | None = param("column of a record id; row ids are '<source name>:<id>' (default: the record's index)",
                           None)
    task: str | None = param(
        "column of the task, which routes the rewards (count, mcq, yes_no, grounding, ...); an empty cell takes the "
        "source's `task` param", None)
    data_source: str | None = param(
        "column of the data_source (metrics and sampling weights per source); an empty cell takes the "
        "`data_source` param", None)
    reasoning: str | None = param("column of a reasoning chain shipped with the data (`reasoning`)", None)
    reward: str | None = param("column of a per-row reward override, a JSON object (`reward`)", None)
    # None copies every column not mapped above (provenance is cheap).
    meta: tuple[str, ...] | None = param("columns copied into the row's `meta`; default: every column not mapped "
                                         "above", None)

    def mapped(self) -> list[str]:
        out = [getattr(self, f.name) for f in fields(self) if f.name != "meta"]
        return [c for c in out if c] + list(self.meta or ())


def columns_from_mapping(mapping: Mapping[str, Any] | Columns, where: str) -> Columns:
    """:class:`Columns` from a config mapping; :class:`SourceError` naming ``where`` for an unknown field
    or a missing required one (image, problem, answer)."""
    if isinstance(mapping, Columns):
        return mapping
    if not isinstance(mapping, Mapping):
        raise SourceError(f"{where}: 'columns' must be a mapping of schema field -> column name")
    valid = [f.name for f in fields(Columns)]
    if "images" in mapping:  # the schema field's own name, as a user reading the schema would write it
        if "image" in mapping:
            raise SourceError(f"{where}: the column mapping names both 'image' and 'images'; keep one")
        mapping = {("image" if k == "images" else k): v for k, v in mapping.items()}
    unknown = sorted(set(mapping) - set(valid))
    if unknown:
        raise SourceError(f"{where}: unknown column mapping keys {unknown}; valid keys: {valid}")
    missing = [k for k in REQUIRED if not mapping.get(k)]
    if missing:
        raise SourceError(f"{where}: the column mapping must name the input column for {missing}")
    values = dict(mapping)
    if values.get("meta") is not None:
        values["meta"] = tuple([values["meta"]] if isinstance(values["meta"], str) else values["meta"])
    return Columns(**values)


def check_columns_present(columns: Columns, available: Iterable[str], where: str) -> None:
    """Every mapped column must exist in the input (a typo would otherwise drop every single row)."""
    have = set(available)
    absent = []
    for column in columns.mapped():
        try:
            if root_column(column, have) not in have:
                absent.append(column)
        except ValueError as exc:
            raise SourceError(f"{where}: {exc}") from exc
    if absent:
        raise SourceError(
            f"{where}: mapped columns {absent} are not in the input; its columns are {sorted(have)}"
        )


@dataclass(frozen=True)
class RowDefaults:
    """Constants used where a record's column is absent or empty."""

    name: str  # the source's name: id prefix and drop step
    task: str | None  # task when no task column (or an empty cell)
    data_source: str  # data_source when no data_source column (or an empty cell)
    image_sep: str = ";"
    allow_no_image: bool = False  # text-only rows are valid schema v1, but usually a broken record
    box_format: str = "xyxy"  # how grounding/detection answers write their boxes (answer_boxes.BOX_FORMATS)
    box_tolerance: float = DEFAULT_TOLERANCE

    @classmethod
    def of(cls, options, name: str) -> RowDefaults:
        """The defaults a column-mapped source's options (folder, hf) give."""
        if options.box_format not in BOX_FORMATS:
            raise SourceError(f"source {name!r}: box_format must be one of {list(BOX_FORMATS)}, "
                              f"got {options.box_format!r}")
        return cls(name=name, task=options.task, data_source=options.data_source or name,
                   image_sep=options.image_sep, allow_no_image=options.allow_no_image,
                   box_format=options.box_format, box_tolerance=options.box_tolerance)


ImageLoader = Callable[[Any, str], Any]  # (cell value, where) -> RGB PIL image, or raises ImageProblem


def add_record(
    result: SourceResult,
    ids: RowIds,
    record: Mapping,
    index: int,
    columns: Columns,
    defaults: RowDefaults,
    load: ImageLoader,
) -> None:
    """Append ``record`` to ``result`` as a row, or record why it was dropped."""
    local = _cell(record, columns.id) if columns.id else None
    row_id = f"{defaults.name}:{local if local not in (None, '') else index}"
    if "__invalid__" in record:
        return result.drop(
            row_id, "invalid_record", f"record {index} is not an object: {record['__invalid__']}"
        )
    try:
        row = _row(record, index, row_id, columns, defaults, load)
    except _Dropped as dropped:
        return result.drop(row_id, dropped.reason, dropped.detail)
    ids.add(result, row)


class _Dropped(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _row(record: Mapping, index: int, row_id: str, columns: Columns, defaults: RowDefaults, load) -> dict:
    texts = {}
    for field, reason in (("problem", "missing_question"), ("answer", "missing_answer")):
        column = getattr(columns, field)
        value = _text(_cell(record, column))
        if not value:
            raise _Dropped(reason, f"record {index}: empty or missing column {column!r} ({field})")
        texts[field] = value
    task = (_text(_cell(record, columns.task)) if columns.task else "") or defaults.task
    if not task:
        raise _Dropped("missing_task", f"record {index}: empty column {columns.task!r} and no default task")
    try:
        images = [
            load(v, f"record {index}, column {columns.image!r}")
            for v in split_images(_cell(record, columns.image), defaults.image_sep)
        ]
        reward = _json_cell(_cell(record, columns.reward), "reward") if columns.reward else ""
    except ImageProblem as problem:
        raise _Dropped(problem.reason, problem.detail) from problem
    except ValueError as exc:
        raise _Dropped("bad_reward", f"record {index}, column {columns.reward!r}: {exc}") from exc
    if not images and not defaults.allow_no_image:
        raise _Dropped("missing_image", f"record {index}: empty column {columns.image!r}")
    if task in BOX_TASKS:
        texts["answer"] = _box_answer(record, index, columns.answer, task, images, defaults)
    meta = {c: plain_value(record[c]) for c in _meta_columns(record, columns)}
    data_source = _text(_cell(record, columns.data_source)) if columns.data_source else ""
    return new_row(
        row_id,
        images,
        texts["problem"],
        texts["answer"],
        task,
        data_source or defaults.data_source,
        reward=reward,
        reasoning=_text(_cell(record, columns.reasoning)) if columns.reasoning else "",
        meta=meta,
    )


def _box_answer(record: Mapping, index: int, column: str, task: str, images: list, defaults: RowDefaults) -> str:
    """A grounding/detection answer in original pixels of the first image, converted from the source's
    ``box_format``; a record without a usable box is dropped (it could only ever score 0)."""
    if not images:
        raise _Dropped("missing_image", f"record {index}: a {task} answer needs the image its boxes are on")
    try:
        return box_answer_text(_cell(record, column), task, defaults.box_format, images[0].size,
                               defaults.box_tolerance)
    except BoxProblem as problem:
        raise _Dropped(problem.reason, f"record {index}, column {column!r}: {problem.detail}") from problem


def split_images(value: Any, sep: str) -> list:
    """One cell's images: a list as it is, a JSON-list string parsed, a ``sep``-joined string split."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v for v in value if v is not None and v != ""]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
                if isinstance(parsed, list):
                    return [v for v in parsed if v]
            except json.JSONDecodeError:
                pass
        return [p.strip() for p in text.split(sep) if p.strip()] if sep else ([text] if text else [])
    return [value]


def _cell(record: Mapping, column: str | None) -> Any:
    value = lookup(record, column)
    return None if value is MISSING else value


def _text(value: Any) -> str:
    """A cell as answer/problem text: strings stripped, numbers and lists as JSON, None as ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value != value:  # NaN: pandas' empty cell
        return ""
    return json.dumps(plain_value(value))


def _json_cell(value: Any, field: str) -> dict | str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = json.loads(value)  # JSONDecodeError is a ValueError
    if not isinstance(value, Mapping):
        raise ValueError(f"{field} must be a JSON object, got {type(value).__name__}")
    return dict(value)


def _meta_columns(record: Mapping, columns: Columns) -> list[str]:
    if columns.meta is not None:
        return [c for c in columns.meta if c in record]
    used = {root_column(c, set(record)) for c in columns.mapped()}
    return [c for c in record if c not in used and not _is_binary(record[c])]


def _is_binary(value: Any) -> bool:
    return isinstance(value, (bytes, bytearray)) or (isinstance(value, Mapping) and "bytes" in value)


def plain_value(value: Any) -> Any:
    """A value as JSON can hold it (numpy scalars and arrays from parquet, tuples)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
