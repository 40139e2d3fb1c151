"""Sources ``shapes`` and ``digits``: the generated tasks of ``data_pipelines.synthetic`` as sources, so a
pipeline config can mix them with real data (as warm-up tasks, or as checks that training works).

Generators never drop a row: their answers are exact by construction. Ids get the source name as prefix
like every other source's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from data_pipelines.records import SourceResult
from data_pipelines.sources.annotations import SourceError
from data_pipelines.sources.params import param
from data_pipelines.sources.rows import RowIds
from data_pipelines.synthetic import digits, shapes


@dataclass(frozen=True)
class ShapesOptions:
    tasks: tuple[str, ...] = param("shapes tasks to generate: colour, count", ("colour", "count"))
    rows_per_task: int = param("rows generated per task (answers balanced)", 1000)
    seed: int = param("seed of the scenes", 0)
    split: str = param("part of the random stream and of the ids", "train")
    image_size: int = param("image side in pixels", 56)


@dataclass(frozen=True)
class DigitsOptions:
    tasks: tuple[str, ...] = param("digits tasks to generate: sum, grounding", ("sum", "grounding"))
    rows_per_task: int = param("rows generated per task", 1000)
    seed: int = param("seed of the canvases", 0)
    split: str = param("'train' or 'test': which scikit-learn scans are used (disjoint)", "train")
    canvas_size: int = param("canvas side in pixels", 112)
    scale: int = param("each 8x8 scan becomes (8*scale)^2 pixels", 4)
    test_fraction: float = param("share of the scans kept for the test split", 0.2)


def load_shapes(options: ShapesOptions, name: str = "shapes") -> SourceResult:
    """The shapes tasks (colour, count) as a source."""
    _check_tasks(options.tasks, shapes.TASKS, name)
    result, ids = SourceResult(name), RowIds()
    for task in options.tasks:
        for row in shapes.shape_rows(
            task, options.rows_per_task, options.seed, options.image_size, options.split
        ):
            ids.add(result, {**row, "id": f"{name}:{row['id']}", "meta": json.loads(row["meta"])})
    return result


def load_digits(options: DigitsOptions, name: str = "digits") -> SourceResult:
    """The handwritten-digit tasks (sum, grounding) as a source."""
    _check_tasks(options.tasks, digits.TASKS, name)
    result, ids = SourceResult(name), RowIds()
    for task in options.tasks:
        rows = digits.digit_rows(
            task,
            options.rows_per_task,
            options.seed,
            options.split,
            options.canvas_size,
            options.scale,
            options.test_fraction,
        )
        for row in rows:
            ids.add(result, {**row, "id": f"{name}:{row['id']}"})
    return result


def _check_tasks(tasks, known, name: str) -> None:
    unknown = [t for t in tasks if t not in known]
    if unknown or not tasks:
        raise SourceError(f"source {name!r}: unknown tasks {unknown}; choose from {sorted(known)}")
