"""Helpers shared by the source tests: tiny images written to disk, and the schema checks every source's
rows must pass (validate_row after to_schema_row, and a datasets write with SCHEMA_FEATURES)."""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import PIL.Image
import PIL.ImageDraw

from data_pipelines.records import to_schema_row
from vlrl.data.schema import SCHEMA_FEATURES, validate_row


def write_image(path: Path, size: tuple[int, int], colour=(255, 255, 255), box=None) -> Path:
    """A plain PNG of ``size`` with an optional black rectangle ``box`` (x1, y1, x2, y2 exclusive)."""
    image = PIL.Image.new("RGB", size, colour)
    if box is not None:
        PIL.ImageDraw.Draw(image).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def png_bytes(size: tuple[int, int], colour=(10, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def assert_schema_rows(rows: list[dict]) -> datasets.Dataset:
    """Every row validates as schema v1 and the rows write as a dataset with SCHEMA_FEATURES."""
    assert rows, "a source test should produce rows"
    stored = [to_schema_row(row) for row in rows]
    for index, row in enumerate(stored):
        checked = validate_row(row, index)
        assert all(image.mode == "RGB" for image in checked.images)
    ds = datasets.Dataset.from_list(stored, features=SCHEMA_FEATURES)
    assert ds["id"] == [row["id"] for row in rows]
    return ds


def drops_by_reason(result) -> dict[str, list[str]]:
    """``{reason: [row ids]}`` of a SourceResult's drops, in order."""
    out: dict[str, list[str]] = {}
    for drop in result.drops:
        out.setdefault(drop.reason, []).append(drop.id)
    return out


def pil(image):
    """A row's image as PIL: sources hand RGB files on as {"path", "bytes": None} (see sources/rows.by_path)."""
    import PIL.Image

    if isinstance(image, PIL.Image.Image):
        return image
    return PIL.Image.open(image["path"])
