"""Dataset row schema v1: its on-disk features, row validation and dataset loading.

One row is one prompt (see "Dataset row (schema v1)" in DESIGN.md). Builders in ``data_pipelines/`` write
rows with :data:`SCHEMA_FEATURES`; the trainer reads them through :func:`load_rows` and turns each raw row
into a typed :class:`Row` with :func:`validate_row`, which rejects a broken row with an error naming the row
id and the field. :func:`check_row_fields` is the same check without decoding images, which
`vlrl.data.validation` runs over every row at start-up (image sizes from headers); images are decoded only
when a row is used.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import PIL.Image
import PIL.ImageOps

IMAGE_PLACEHOLDER = "<image>"

# On disk, the optional JSON fields are JSON text ("" when absent) so every row has the same arrow type.
SCHEMA_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "images": datasets.List(datasets.Image()),
        "problem": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "task": datasets.Value("string"),
        "data_source": datasets.Value("string"),
        "reward": datasets.Value("string"),
        "reasoning": datasets.Value("string"),
        "meta": datasets.Value("string"),
    }
)

REQUIRED_COLUMNS = ("id", "images", "problem", "answer", "task")
OPTIONAL_COLUMNS = ("data_source", "reward", "reasoning", "meta")


class SchemaError(ValueError):
    """A dataset as a whole breaks schema v1 (missing columns, unknown split, duplicate ids)."""


class RowError(SchemaError):
    """One row breaks schema v1; the message names the row (id, else index), the field and the problem."""

    def __init__(self, index: int, row_id: str | None, field: str, problem: str):
        self.index = index
        self.row_id = row_id
        self.field = field
        self.problem = problem
        where = f"row {row_id!r} (index {index})" if row_id else f"row at index {index}"
        super().__init__(f"{where}: field '{field}' {problem}")


@dataclass(frozen=True)
class Row:
    """A validated schema-v1 row; images are decoded RGB PIL images in placeholder order."""

    id: str
    images: tuple  # tuple[PIL.Image.Image, ...], RGB
    problem: str
    answer: str
    task: str
    data_source: str
    reward: dict | None  # per-row reward override (V-Triune style), None when absent
    reasoning: str | None
    meta: dict


def validate_row(raw: Mapping, index: int) -> Row:
    """Check one raw row (as ``datasets`` yields it, or a plain dict) and return it as a :class:`Row`.

    Accepts images as PIL images, ``{"bytes", "path"}`` dicts (``decode=False`` or plain parquet) or raw
    bytes; reward and meta as JSON text, dicts or None. ``index`` is the row's position, used in errors
    when the row has no usable id. Images are decoded here, so a corrupt one raises a :class:`RowError`
    naming the row and ``images[i]``.
    """
    fields, raw_images = check_row_fields(raw, index)
    images = tuple(
        _decode_image(item, lambda p, i=i: RowError(index, fields["id"], f"images[{i}]", p))
        for i, item in enumerate(raw_images)
    )
    return Row(images=images, **fields)


def check_row_fields(raw: Mapping, index: int) -> tuple[dict, list]:
    """Everything :func:`validate_row` checks except decoding the images: returns the :class:`Row` fields
    other than ``images``, and the row's raw image items. Raises :class:`RowError`."""
    if not isinstance(raw, Mapping):
        raise RowError(index, None, "<row>", f"must be a mapping, got {type(raw).__name__}")
    row_id = raw.get("id")
    if not isinstance(row_id, str) or not row_id.strip():
        problem = "is missing" if "id" not in raw else f"must be a non-empty string, got {row_id!r}"
        raise RowError(index, None, "id", problem)

    def fail(field: str, problem: str) -> RowError:
        return RowError(index, row_id, field, problem)

    texts = {}
    for field in ("problem", "answer", "task"):
        if field not in raw:
            raise fail(field, "is missing")
        value = raw[field]
        if not isinstance(value, str):
            raise fail(field, f"must be a string, got {type(value).__name__}")
        if not value.strip():
            raise fail(field, "is empty")
        texts[field] = value

    data_source = raw.get("data_source")
    if data_source is not None and not isinstance(data_source, str):
        raise fail("data_source", f"must be a string, got {type(data_source).__name__}")
    reasoning = raw.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, str):
        raise fail("reasoning", f"must be a string, got {type(reasoning).__name__}")

    if "images" not in raw:
        raise fail("images", "is missing (use an empty list for text-only rows)")
    raw_images = raw["images"]
    if not isinstance(raw_images, (list, tuple)):
        raise fail("images", f"must be a list of images, got {type(raw_images).__name__}")

    n_placeholders = texts["problem"].count(IMAGE_PLACEHOLDER)
    if n_placeholders and n_placeholders != len(raw_images):
        raise fail(
            "problem",
            f"has {n_placeholders} '{IMAGE_PLACEHOLDER}' placeholders but the row has {len(raw_images)} images",
        )

    fields = dict(
        id=row_id,
        problem=texts["problem"],
        answer=texts["answer"],
        task=texts["task"],
        data_source=data_source or texts["task"],
        reward=_json_object(raw.get("reward"), lambda p: fail("reward", p)),
        reasoning=reasoning or None,
        meta=_json_object(raw.get("meta"), lambda p: fail("meta", p)) or {},
    )
    return fields, list(raw_images)


def image_size(item: Any, fail) -> tuple[int, int]:
    """(width, height) of a raw image item from its header alone: PIL reads the size without decoding the
    pixels, so a start-up check of every row stays cheap. A file that fails only when decoded passes here."""
    try:
        if isinstance(item, PIL.Image.Image):
            return item.size
        with _open_image(item, fail) as image:
            w, h = image.size
            return (h, w) if _orientation(image) in _TRANSPOSING else (w, h)
    except RowError:
        raise
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, DecompressionBombError)
        raise fail(f"cannot be read: {type(exc).__name__}: {exc}") from exc


def _open_image(item: Any, fail) -> PIL.Image.Image:
    """PIL's lazy open of a bytes / {bytes, path} item (nothing decoded yet)."""
    if isinstance(item, (bytes, bytearray)):
        return PIL.Image.open(io.BytesIO(item))
    if isinstance(item, Mapping) and item.get("bytes"):
        return PIL.Image.open(io.BytesIO(item["bytes"]))
    if isinstance(item, Mapping) and item.get("path"):
        return PIL.Image.open(item["path"])
    raise fail(f"is not an image (got {type(item).__name__}; expected PIL image, bytes or {{bytes, path}})")


# EXIF orientations that swap width and height (transpose, rotate 90 or 270, transverse).
_TRANSPOSING = (5, 6, 7, 8)


def _orientation(image: PIL.Image.Image) -> int | None:
    """The EXIF orientation tag as the file's header gives it. Not ``getexif()``: for a PNG that decodes the
    whole image, which the start-up check must not do. Decoding uses the same tag, so the size reported from the
    header is the decoded image's (a PNG whose EXIF chunk follows its pixels is left as stored)."""
    raw = image.info.get("exif")
    if not raw:
        return None
    exif = PIL.Image.Exif()
    exif.load(raw)
    return exif.get(PIL.Image.ExifTags.Base.Orientation)


def _decode_image(item: Any, fail) -> PIL.Image.Image:
    try:
        if isinstance(item, PIL.Image.Image):
            return item.convert("RGB")
        image = _open_image(item, fail)
        if _orientation(image) is not None:  # as datasets' Image feature decodes (and image_size reports) it
            image = PIL.ImageOps.exif_transpose(image)
        return image.convert("RGB")  # convert() also forces the lazy decode, so corrupt data fails here
    except RowError:
        raise
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise fail(f"cannot be decoded: {type(exc).__name__}: {exc}") from exc


def _json_object(value: Any, fail) -> dict | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise fail(f"is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise fail(f"must be a JSON object, got {type(value).__name__}")
    return value


def load_rows(path: str, split: str, cache_dir: str | None = None) -> datasets.Dataset:
    """Open one split of a schema-v1 dataset without decoding it.

    ``path`` is a ``save_to_disk`` directory (a Dataset, used whatever the split, or a DatasetDict whose
    ``split`` is taken), a ``.parquet`` file (the whole file, whatever the split) or a directory of parquet
    files whose names give the split (``train.parquet``, ``train-00000-of-00002.parquet``, or files under
    a ``train/`` folder). Checks the columns; rows are checked one by one with :func:`validate_row`.
    Parquet is converted to an arrow cache in ``cache_dir`` (default: the ``datasets`` cache).
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"dataset path does not exist: {path}")
    if root.is_file():
        if root.suffix != ".parquet":
            raise SchemaError(f"{path}: expected a .parquet file or a dataset directory")
        ds = datasets.Dataset.from_parquet(str(root), cache_dir=cache_dir)
    elif (root / "dataset_dict.json").exists():
        # Only the split asked for is opened: another split's problems (an empty one) are not this run's.
        splits = json.loads((root / "dataset_dict.json").read_text()).get("splits", [])
        if split not in splits:
            raise SchemaError(f"{path}: no split {split!r}; available splits: {sorted(splits)}")
        ds = _load_saved(root / split)
    elif (root / "state.json").exists():
        ds = _load_saved(root)
    else:
        ds = _load_parquet_split(root, split, cache_dir)
    _check_columns(ds, path)
    return ds


def _load_saved(directory: Path) -> datasets.Dataset:
    """One ``save_to_disk`` Dataset. An empty one is saved without an arrow file, which ``load_from_disk`` fails
    to read (IndexError): it comes back as an empty Dataset of its features, for the caller to report."""
    state = json.loads((directory / "state.json").read_text())
    if not state.get("_data_files"):
        features = datasets.DatasetInfo.from_directory(str(directory)).features
        return datasets.Dataset.from_dict({name: [] for name in features}, features=features)
    return datasets.load_from_disk(str(directory))


def _load_parquet_split(root: Path, split: str, cache_dir: str | None) -> datasets.Dataset:
    files = sorted(root.rglob("*.parquet"))
    if not files:
        raise SchemaError(f"{root}: neither a save_to_disk directory nor a directory of parquet files")
    by_split: dict[str, list[str]] = {}
    for file in files:
        by_split.setdefault(_split_of(file, root), []).append(str(file))
    if split not in by_split:
        raise SchemaError(
            f"{root}: no parquet files for split {split!r}; available splits: {sorted(by_split)}"
        )
    return datasets.Dataset.from_parquet(by_split[split], cache_dir=cache_dir)


def _split_of(file: Path, root: Path) -> str:
    """`train-00000-of-00001.parquet` / `train.parquet` -> train; `train/0000.parquet` -> train."""
    parent = file.parent
    if parent != root and re.fullmatch(r"[\d_-]*", file.stem):
        return parent.name
    return re.split(r"[-.]", file.stem, maxsplit=1)[0]


def _check_columns(ds: datasets.Dataset, path: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        hint = (
            " (found 'image': schema v1 wants a list column 'images')" if "image" in ds.column_names else ""
        )
        raise SchemaError(f"{path}: missing required columns {missing}; columns are {ds.column_names}{hint}")


def check_unique_ids(ds: datasets.Dataset | Iterable[Mapping]) -> None:
    """Raise :class:`SchemaError` naming the first duplicated ids (reads only the id column)."""
    ids = ds["id"] if isinstance(ds, datasets.Dataset) else [row["id"] for row in ds]
    counts = Counter(ids)
    duplicates = [(i, n) for i, n in counts.items() if n > 1]
    if duplicates:
        shown = ", ".join(f"{i!r} x{n}" for i, n in duplicates[:5])
        more = f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
        raise SchemaError(f"{len(duplicates)} duplicate ids: {shown}{more}")
