"""Reading RefCOCO / RefCOCO+ / RefCOCOg as published, into plain records for the ``refcoco`` source.

Two layouts:

- **the refer toolkit's** (Yu et al. 2016; ``refcoco/refs(unc).p`` + ``refcoco/instances.json``). The pickle
  is a list of refs ``{ref_id, ann_id, image_id, category_id, split, sent_ids, sentences: [{sent_id, sent, raw,
  tokens}], file_name}``; the referred box is the COCO annotation ``ann_id`` of ``instances.json``
  (``[x, y, w, h]``) and the image is that file's ``images[image_id].file_name`` (the ref's own
  ``file_name`` carries an annotation suffix and names no file). The pickles were written by Python 2, so
  their strings may arrive as bytes; they are decoded as UTF-8.
- **parquet re-releases** (a file or a folder of them): rows with an ``image`` struct or an ``image_path``,
  the expressions under ``sentences`` / ``answer`` / ``captions``, a ``bbox`` (``[x, y, w, h]`` in some, corners
  in others: the source's ``box_format`` says which), and the split in a ``split`` column or, failing that,
  the file name (``testA-00000-of-00001.parquet``).

Why unpickling here is safe: :class:`_RefsUnpickler` refuses every global (``find_class`` raises), and
without a global a pickle can build only lists, dicts, tuples, sets, strings, bytes, numbers, booleans and
None — no class, function or ``__reduce__`` call can be named, so nothing runs while a file is read. That is
all the refs format needs; a pickle that names anything else is an error naming the file.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from data_pipelines.sources.annotations import (
    SourceError,
    existing_path,
    iter_parquet_records,
    parquet_files,
    read_json_object,
)

HELD_OUT_SPLITS = ("val", "test", "testA", "testB", "testC")


class _RefsUnpickler(pickle.Unpickler):
    """An unpickler that builds plain data only: every global is refused (see the module docstring)."""

    def find_class(self, module: str, name: str):  # noqa: D102 - the one hook that could run code
        raise pickle.UnpicklingError(f"refuses the global {module}.{name}: a refs pickle holds plain data only")


def read_refs_pickle(path: Path) -> list:
    """The refs list of a refer-toolkit pickle, strings decoded; SourceError naming the file otherwise."""
    try:
        data = _RefsUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise SourceError(f"{path}: not a refs pickle of plain data ({type(exc).__name__}: {exc})") from exc
    data = _decoded(data)
    if not isinstance(data, list):
        raise SourceError(f"{path}: a refs pickle holds a list of refs, got {type(data).__name__}")
    return data


def refer_records(refs_path: Path, instances_path: Path | None, name: str) -> list[dict]:
    """One record per ref of the refer layout, joined with ``instances.json`` (box and image file name);
    a ref whose annotation or image is not in that file becomes ``{"__missing__": ...}`` for the source to drop."""
    refs = read_refs_pickle(refs_path)
    instances_path = instances_path or refs_path.parent / "instances.json"
    instances = read_json_object(existing_path(instances_path, f"source {name!r}: instances", "file"),
                                 f"source {name!r}: instances")
    anns = {a.get("id"): a for a in instances.get("annotations", []) if isinstance(a, dict)}
    images = {i.get("id"): i for i in instances.get("images", []) if isinstance(i, dict)}
    categories = {c.get("id"): c.get("name") for c in instances.get("categories", []) if isinstance(c, dict)}
    return [_refer_record(ref, index, anns, images, categories, instances_path) for index, ref in enumerate(refs)]


def _refer_record(ref: Any, index: int, anns: dict, images: dict, categories: dict, instances_path: Path) -> dict:
    if not isinstance(ref, dict):
        return {"__invalid__": repr(ref)[:200]}
    ann, image = anns.get(ref.get("ann_id")), images.get(ref.get("image_id"))
    record = {k: ref.get(k) for k in ("ref_id", "ann_id", "image_id", "category_id", "split", "sentences")}
    if ann is None or image is None:
        missing = "annotation" if ann is None else "image"
        key = "ann_id" if ann is None else "image_id"
        record["__missing__"] = f"ref {index}: {missing} {ref.get(key)!r} is not in {instances_path}"
        return record
    record.update(image=image.get("file_name"), bbox=ann.get("bbox"), category=categories.get(ref.get("category_id")),
                  image_size=[image.get("width"), image.get("height")])
    return record


def parquet_refs(path: Path, name: str) -> list[dict]:
    """Records of a parquet re-release; a record without a ``split`` column takes its file's split."""
    files = parquet_files(path, None, f"source {name!r}: annotations")
    records = []
    for file in files:
        split = file.name.split("-")[0].split(".")[0]
        for record in iter_parquet_records([file]):
            if record.get("split") in (None, ""):
                record["split"] = split
            records.append(record)
    return records


def _decoded(value: Any) -> Any:
    """Python 2 ``str`` values (bytes here) as text, all the way down."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")
    if isinstance(value, dict):
        return {_decoded(k): _decoded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_decoded(v) for v in value]
    return value
