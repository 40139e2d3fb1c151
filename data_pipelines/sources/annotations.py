"""Reading annotation files (JSON, JSONL, CSV) into plain records, and the error for unusable input.

A source raises :class:`SourceError` only when its input is unusable as a whole — the file is missing,
is not the format it claims, or a required column is absent from every record — and the message names the
file. A single bad record is never an error: the source drops it with a reason (``records.Drop``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


class SourceError(ValueError):
    """A source's input cannot be used at all; the message names the file (or the option) at fault."""


class SourceFileNotFound(SourceError, FileNotFoundError):
    """An input file or folder a source was pointed at does not exist."""


def existing_path(path: str | Path, what: str, kind: str = "any") -> Path:
    """``path`` as a Path, after checking it exists (``kind``: "file", "dir" or "any")."""
    p = Path(path).expanduser()
    if not p.exists():
        raise SourceFileNotFound(f"{what} not found: {p}")
    if kind == "file" and not p.is_file():
        raise SourceError(f"{what} must be a file, got a directory: {p}")
    if kind == "dir" and not p.is_dir():
        raise SourceError(f"{what} must be a folder: {p}")
    return p


def annotations_and_root(annotations: str, image_root: str | None, name: str) -> tuple[Path, Path]:
    """The annotation file and the folder its image paths are relative to (default: the file's folder)."""
    path = existing_path(annotations, f"source {name!r}: annotations", "file")
    root = existing_path(image_root, f"source {name!r}: image_root", "dir") if image_root else path.parent
    return path, Path(root)


def read_records(path: str | Path, what: str = "annotation file") -> list[dict]:
    """The records of a ``.json`` (a list of objects), ``.jsonl`` or ``.csv`` file, in file order.

    The format follows the suffix; ``.json`` that fails to parse as a whole is retried as JSON Lines,
    since many datasets ship JSONL under a ``.json`` name. A line or item that is not an object becomes
    ``{"__invalid__": <text>}`` so the source can drop it by index instead of failing the file.
    """
    p = existing_path(path, what, "file")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return _read_csv(p)
    text = p.read_text(encoding="utf-8-sig")
    if suffix == ".jsonl":
        return _read_jsonl(text, p)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if suffix == ".json" and "\n" in text.strip():
            try:
                return _read_jsonl(text, p)
            except SourceError:
                pass
        raise SourceError(f"{p}: not valid JSON ({exc})") from exc
    if not isinstance(data, list):
        raise SourceError(f"{p}: expected a JSON list of objects, got {type(data).__name__}")
    return [item if isinstance(item, dict) else {"__invalid__": repr(item)[:200]} for item in data]


def read_json_object(path: str | Path, what: str) -> dict:
    """A file holding one JSON object (e.g. a COCO annotation file)."""
    p = existing_path(path, what, "file")
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SourceError(f"{p}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise SourceError(f"{p}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_jsonl(text: str, p: Path) -> list[dict]:
    records: list[dict] = []
    bad_lines = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            item: Any = json.loads(line)
        except json.JSONDecodeError:
            item, bad_lines = None, bad_lines + 1
        records.append(item if isinstance(item, dict) else {"__invalid__": line[:200]})
    if records and bad_lines == len(records):
        raise SourceError(f"{p}: no line is valid JSON (expected JSON Lines)")
    return records


def _read_csv(p: Path) -> list[dict]:
    with p.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise SourceError(f"{p}: empty CSV file (no header row)")
        # A short row gives None for missing cells; treat them as empty, as for a blank cell.
        return [{k: ("" if v is None else v) for k, v in row.items() if k is not None} for row in reader]


def parquet_files(path: str | Path, split: str | None, what: str) -> list[Path]:
    """The parquet files at ``path``: the file itself, or those under a folder.

    In a folder, files whose name starts with ``split`` (``train-00000-of-00002.parquet``) or that sit in a
    folder named ``split`` are taken when any exist; otherwise every file (a folder of one split).
    """
    p = existing_path(path, what)
    if p.is_file():
        if p.suffix != ".parquet":
            raise SourceError(f"{p}: expected a .parquet file or a folder of them")
        return [p]
    files = sorted(p.rglob("*.parquet"))
    if not files:
        raise SourceError(f"{p}: no .parquet files in this folder")
    if split:
        chosen = [f for f in files if f.name.startswith(split) or split in f.relative_to(p).parts[:-1]]
        return chosen or files
    return files


def iter_parquet_records(files: list[Path], batch_rows: int = 256):
    """Yield each row of the parquet ``files`` as a dict (nested structs as dicts), a batch at a time so a
    large file of image bytes is never in memory whole."""
    import pyarrow.parquet as pq

    for file in files:
        try:
            reader = pq.ParquetFile(file)
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a non-parquet file
            raise SourceError(f"{file}: not a readable parquet file ({exc})") from exc
        for batch in reader.iter_batches(batch_size=batch_rows):
            yield from batch.to_pylist()


def parquet_columns(files: list[Path]) -> list[str]:
    """Column names of the first parquet file (the files of one dataset share them)."""
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(files[0]).names)
    except Exception as exc:
        raise SourceError(f"{files[0]}: not a readable parquet file ({exc})") from exc


def progress(items, name: str, unit: str = "record"):
    """`items` with a progress bar named for the source: reading and decoding a large source takes minutes."""
    from tqdm.auto import tqdm

    total = len(items) if hasattr(items, "__len__") else None
    return tqdm(items, total=total, desc=f"source {name}", unit=unit)
