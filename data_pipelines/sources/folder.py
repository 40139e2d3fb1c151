"""Source ``folder``: a folder of images plus one JSONL, JSON or CSV annotation file.

The most common shape of a home-made dataset. ``columns`` maps schema fields to annotation columns
(:class:`~data_pipelines.sources.columns.Columns`); image paths are relative to ``image_root`` (default:
the folder holding the annotation file). ``task`` is a constant for datasets of one task, or use a
``task`` column. A config section::

    {kind: folder, name: my_counts, params: {annotations: /data/counts/qa.csv, task: count,
                                             columns: {image: file_name, problem: question, answer: gt}}}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_pipelines.records import SourceResult
from data_pipelines.sources.annotations import SourceError, existing_path, progress, read_records
from data_pipelines.sources.answer_boxes import DEFAULT_TOLERANCE
from data_pipelines.sources.columns import (
    Columns,
    RowDefaults,
    add_record,
    check_columns_present,
    columns_from_mapping,
)
from data_pipelines.sources.images import load_image
from data_pipelines.sources.params import param
from data_pipelines.sources.rows import RowIds


@dataclass(frozen=True)
class FolderOptions:
    annotations: str = param("the .jsonl / .json / .csv annotation file, one record per row")
    columns: Mapping[str, Any] = param(
        "schema field -> column of the annotation file, e.g. {image: file_name, problem: question, answer: gt}; "
        "image, problem and answer are required", keys=Columns)
    image_root: str | None = param("folder the image paths are relative to; default: the annotation file's folder",
                                   None)
    task: str | None = param("constant task when there is no task column (or its cell is empty)", None)
    data_source: str | None = param("constant data_source; default: the source's name", None)
    image_sep: str = param("separator of several image paths in one string cell", ";")
    allow_no_image: bool = param("keep records with an empty image cell as text-only rows (else dropped)", False)
    box_format: str = param(
        "how grounding/detection answers write boxes: 'xyxy' or 'xywh' (pixels of the original image), 'rel1' "
        "(corners on a 0-1 scale of width and height) or 'rel1000' (0-1000); converted to xyxy pixels", "xyxy")
    box_tolerance: float = param("pixels a box may overrun the image before it is dropped", DEFAULT_TOLERANCE)


def load_folder(options: FolderOptions, name: str = "folder") -> SourceResult:
    """Rows from an annotation file and its image folder; every unusable record is a drop naming it.

    Raises :class:`SourceError` when the annotation file or image folder is missing or unreadable, the
    mapping lacks image/problem/answer, a mapped column is absent from the whole file, or there is no task.
    """
    where = f"source {name!r} ({options.annotations})"
    columns = columns_from_mapping(options.columns, where)
    path = existing_path(options.annotations, f"{where}: annotation file", "file")
    root = (
        existing_path(options.image_root, f"{where}: image_root", "dir")
        if options.image_root
        else path.parent
    )
    records = read_records(path)
    if not records:
        raise SourceError(f"{path}: the annotation file holds no records")
    check_columns_present(columns, {key for record in records for key in record}, str(path))
    _require_task(columns.task, options.task, where)
    defaults = RowDefaults.of(options, name)
    result, ids = SourceResult(name), RowIds()
    for index, record in enumerate(progress(records, name)):
        add_record(result, ids, record, index, columns, defaults, lambda v, w: load_image(v, Path(root), w))
    return result


def _require_task(column: str | None, constant: str | None, where: str) -> None:
    if not column and not constant:
        raise SourceError(f"{where}: give a constant 'task' or map a 'task' column (tasks route the rewards)")
