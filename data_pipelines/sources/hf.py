"""Source ``hf``: any Hugging Face dataset with a column mapping.

The dataset is a ``save_to_disk`` folder, a parquet file or a folder of parquet files (``path``), or a hub
dataset (``hub_id``) — downloaded through ``datasets.load_dataset`` only when the user names one. Images may
be ``Image`` features (single or lists), raw bytes, ``{"bytes", "path"}`` structs or path strings (relative
to ``image_root``). Image features are read undecoded and decoded here, so one corrupt image drops its row
instead of raising from inside the dataset iterator.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
class HFOptions:
    columns: Mapping[str, Any] = param(
        "schema field -> dataset column, e.g. {image: image, problem: question, answer: answer}; image, problem "
        "and answer are required", keys=Columns)
    path: str | None = param("save_to_disk folder, .parquet file or folder of parquet files (or give hub_id)", None)
    dataset: Any = param("a datasets.Dataset (or DatasetDict, or list of dicts) in memory, instead of path: the "
                         "Python API's vlrl.build_dataset", None)
    hub_id: str | None = param("a hub dataset id, loaded with datasets.load_dataset (network) only when given", None)
    config: str | None = param("hub dataset configuration name", None)
    revision: str | None = param("hub revision (commit, tag or branch)", None)
    split: str = param("split of a DatasetDict, hub dataset or parquet folder", "train")
    image_root: str | None = param("folder that relative image paths are under", None)
    task: str | None = param("constant task when there is no task column (or its cell is empty)", None)
    data_source: str | None = param("constant data_source; default: the source's name", None)
    image_sep: str = param("separator of several image paths in one string cell", ";")
    allow_no_image: bool = param("keep records with no image as text-only rows (else dropped)", False)
    limit: int | None = param("read at most this many records (a quick look at a large set)", None)
    box_format: str = param(
        "how grounding/detection answers write boxes: 'xyxy' or 'xywh' (pixels of the original image), 'rel1' "
        "(corners on a 0-1 scale of width and height) or 'rel1000' (0-1000); converted to xyxy pixels", "xyxy")
    box_tolerance: float = param("pixels a box may overrun the image before it is dropped", DEFAULT_TOLERANCE)


def load_hf(options: HFOptions, name: str = "hf") -> SourceResult:
    """Rows from a Hugging Face dataset; every unusable record is a drop naming it.

    Raises :class:`SourceError` when neither or both of ``path`` and ``hub_id`` are given, the data is
    missing or unreadable, the mapping lacks image/problem/answer or names a column the dataset lacks.
    """
    where = f"source {name!r} ({options.path or options.hub_id or 'a dataset in memory'})"
    if sum(x is not None and x != "" for x in (options.path, options.hub_id, options.dataset)) != 1:
        raise SourceError(f"source {name!r}: give exactly one of 'path' (local data), 'hub_id' and 'dataset' (in "
                          "memory)")
    if not options.task and not (isinstance(options.columns, Mapping) and options.columns.get("task")):
        raise SourceError(f"{where}: give a constant 'task' or map a 'task' column (tasks route the rewards)")
    columns = columns_from_mapping(options.columns, where)
    available, records = _open(options, where)
    check_columns_present(columns, available, where)
    root = (
        Path(existing_path(options.image_root, f"{where}: image_root", "dir")) if options.image_root else None
    )
    defaults = RowDefaults.of(options, name)
    result, ids = SourceResult(name), RowIds()
    for index, record in enumerate(progress(records, name)):
        if options.limit is not None and index >= options.limit:
            break
        add_record(result, ids, record, index, columns, defaults, lambda v, w: load_image(v, root, w))
    return result


def _open(options: HFOptions, where: str) -> tuple[list[str], Iterator[dict]]:
    """(column names, records) of the dataset, images undecoded."""
    if options.dataset is not None:
        return _in_memory(options.dataset, options.split, where)
    if options.hub_id:
        import datasets

        ds = datasets.load_dataset(
            options.hub_id, options.config, split=options.split, revision=options.revision
        )
        return _undecoded(ds)
    path = existing_path(options.path, f"{where}: path")
    if path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists()):
        return _undecoded(_from_disk(path, options.split))
    files = parquet_files(path, options.split, f"{where}: path")
    return parquet_columns(files), iter_parquet_records(files)


def _in_memory(data: Any, split: str, where: str) -> tuple[list[str], Iterator[dict]]:
    import datasets

    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise SourceError(f"{where}: no split {split!r}; splits: {sorted(data)}")
        data = data[split]
    if isinstance(data, datasets.Dataset):
        return _undecoded(data)
    if isinstance(data, (str, bytes)) or not isinstance(data, (list, tuple)):
        raise SourceError(f"{where}: 'dataset' must be a datasets.Dataset, DatasetDict or list of dicts, got "
                          f"{type(data).__name__}")
    bad = next((i for i, r in enumerate(data) if not isinstance(r, Mapping)), None)
    if bad is not None:
        raise SourceError(f"{where}: record {bad} is a {type(data[bad]).__name__}, not a dict")
    return list(dict.fromkeys(k for r in data for k in r)), iter(data)


def _from_disk(path: Path, split: str):
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise SourceError(f"{path}: no split {split!r}; splits: {sorted(loaded)}")
        return loaded[split]
    return loaded


def _undecoded(ds) -> tuple[list[str], Iterator[dict]]:
    """Image features cast to ``decode=False`` ({bytes, path} dicts), so decoding errors surface per row."""
    import datasets

    def plain(feature):
        if isinstance(feature, datasets.Image):
            return datasets.Image(decode=False)
        if isinstance(feature, datasets.List) and isinstance(feature.feature, datasets.Image):
            return datasets.List(datasets.Image(decode=False))
        if isinstance(feature, datasets.Sequence) and isinstance(feature.feature, datasets.Image):
            return datasets.Sequence(datasets.Image(decode=False))
        return feature

    features = datasets.Features({k: plain(v) for k, v in ds.features.items()})
    if features != ds.features:
        ds = ds.cast(features)
    return list(ds.column_names), iter(ds)
