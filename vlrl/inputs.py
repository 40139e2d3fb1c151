"""What a training script hands the trainer as Python objects: datasets in memory and a loaded model.

Both are written once into the run directory and the run's config points at them, so a run started from Python
is a run like any other: ``vlrl train --resume RUN_DIR``, ``vlrl eval`` and ``vlrl report`` read it, the KL
reference and a LoRA checkpoint's base load from it, and every data-parallel rank reads the same files.

- A dataset (a ``datasets.Dataset``, a ``DatasetDict``, a list of dicts, or a mapping of split name to either)
  becomes ``RUN_DIR/input_data`` (``save_to_disk``, schema v1) and ``data.path`` names it. Rows are schema-v1
  rows (``id``, ``images``, ``problem``, ``answer``, ``task``; optional ``data_source``, ``reward``,
  ``reasoning``, ``meta``); a single ``image`` stands for ``images=[image]``; ``reward`` and ``meta`` may be
  dicts; any other column is kept in ``meta`` under its own name, which is where rewards (and TRL-style rewards,
  as a column) read it. Rows are checked as a ``data.path`` dataset's are, by the trainer, before the model
  loads.
- A model (a transformers model, with its processor) becomes ``RUN_DIR/input_model`` (``save_pretrained``) and
  ``model.path`` names it. A resumed run keeps the one written by its first start: it is the weights its
  checkpoints started from.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from vlrl.atomic import atomic_dir
from vlrl.data.schema import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, SCHEMA_FEATURES, SchemaError

DATA_DIR = "input_data"
MODEL_DIR = "input_model"
_SCHEMA = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)

Data = datasets.Dataset | datasets.DatasetDict | Sequence[Mapping] | Mapping[str, Any]


def to_schema_dataset(data: datasets.Dataset | Sequence[Mapping], where: str) -> datasets.Dataset:
    """``data`` as a schema-v1 Dataset (the on-disk features of ``vlrl.data.schema``). Raises SchemaError naming
    the row (id, else index) and field when a row lacks a required field."""
    if isinstance(data, datasets.Dataset):
        return _from_dataset(data, where)
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
        raise SchemaError(f"{where}: expected a datasets.Dataset or a list of dicts, got {type(data).__name__}")
    rows = [_schema_row(row, i, where) for i, row in enumerate(data)]
    if not rows:
        return datasets.Dataset.from_dict({name: [] for name in SCHEMA_FEATURES}, features=SCHEMA_FEATURES)
    return datasets.Dataset.from_list(rows, features=SCHEMA_FEATURES)


def _schema_row(row: Any, index: int, where: str) -> dict:
    if not isinstance(row, Mapping):
        raise SchemaError(f"{where}: row at index {index} must be a dict, got {type(row).__name__}")
    row = dict(row)
    if "images" not in row and "image" in row:
        image = row.pop("image")
        row["images"] = [] if image is None else [image]
    name = f"row {row.get('id')!r} (index {index})" if row.get("id") else f"row at index {index}"
    missing = [c for c in REQUIRED_COLUMNS if c not in row]
    if missing:
        raise SchemaError(f"{where}: {name} has no field {missing[0]!r} (schema v1 needs {list(REQUIRED_COLUMNS)}; "
                          f"the row has {sorted(row)})")
    extra = {k: row.pop(k) for k in sorted(set(row) - _SCHEMA)}
    meta = _as_dict(row.get("meta"), f"{where}: {name}, field 'meta'")
    out = {k: row[k] for k in REQUIRED_COLUMNS}
    if not isinstance(out["images"], (list, tuple)):
        out["images"] = [out["images"]]
    out["data_source"] = row.get("data_source") or ""
    out["reasoning"] = row.get("reasoning") or ""
    reward = row.get("reward")
    out["reward"] = json.dumps(reward) if isinstance(reward, Mapping) else (reward or "")
    out["meta"] = json.dumps({**meta, **extra}) if meta or extra else ""
    return out


def _as_dict(value: Any, where: str) -> dict:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise SchemaError(f"{where} is not valid JSON: {e}") from e
    if not isinstance(value, Mapping):
        raise SchemaError(f"{where} must be a dict (or its JSON text), got {type(value).__name__}")
    return dict(value)


def _from_dataset(ds: datasets.Dataset, where: str) -> datasets.Dataset:
    """A Dataset's rows in schema v1: an ``image`` column becomes ``images``, extra columns move into ``meta``,
    absent optional columns are empty. Only the columns that change are read (images are never decoded)."""
    if "images" not in ds.column_names and "image" in ds.column_names:
        ds = ds.map(lambda image: {"images": [] if image is None else [image]}, input_columns="image",
                    remove_columns="image", features=_features_with_images(ds), desc="image -> images")
    missing = [c for c in REQUIRED_COLUMNS if c not in ds.column_names]
    if missing:
        raise SchemaError(f"{where}: missing required columns {missing}; columns are {ds.column_names}")
    extra = [c for c in ds.column_names if c not in _SCHEMA]
    meta_in = "meta" in ds.column_names
    if extra or (meta_in and ds.features["meta"] != SCHEMA_FEATURES["meta"]):
        def fold(*values):
            meta = _as_dict(values[-1] if meta_in else None, f"{where}: field 'meta'")
            meta.update({name: _jsonable(v) for name, v in zip(extra, values, strict=False)})
            return {"meta": json.dumps(meta) if meta else ""}

        ds = ds.map(fold, input_columns=extra + (["meta"] if meta_in else []),
                    remove_columns=extra + (["meta"] if meta_in else []), desc="extra columns -> meta")
    for name in OPTIONAL_COLUMNS:
        if name not in ds.column_names:
            ds = ds.add_column(name, [""] * len(ds))
    if ds.features["reward"] != SCHEMA_FEATURES["reward"]:  # dicts (a struct column) -> JSON text
        ds = ds.map(lambda v: {"reward": json.dumps(v) if isinstance(v, Mapping) else (v or "")},
                    input_columns="reward", desc="reward -> JSON text")
    return ds.select_columns(list(SCHEMA_FEATURES))


def _features_with_images(ds: datasets.Dataset) -> datasets.Features:
    features = {k: v for k, v in ds.features.items() if k != "image"}
    image = ds.features["image"]
    features["images"] = datasets.List(image if isinstance(image, datasets.Image) else datasets.Image())
    return datasets.Features(features)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def dataset_splits(train: Data, evals: Data | None, train_split: str, eval_split: str
                   ) -> dict[str, datasets.Dataset]:
    """Split name -> schema-v1 Dataset from what a script passed: ``train`` may itself hold the splits (a
    DatasetDict or a mapping of split name to data), of which ``train_split`` and ``eval_split`` are used."""
    if isinstance(train, (datasets.DatasetDict, Mapping)) and not _looks_like_row(train):
        if train_split not in train:
            raise SchemaError(f"train_dataset: no split {train_split!r} (data.train_split); splits: {sorted(train)}")
        out = {train_split: to_schema_dataset(train[train_split], f"train_dataset[{train_split!r}]")}
        if evals is None and eval_split and eval_split in train:
            out[eval_split] = to_schema_dataset(train[eval_split], f"train_dataset[{eval_split!r}]")
    else:
        out = {train_split: to_schema_dataset(train, "train_dataset")}
    if evals is not None:
        out[eval_split or "test"] = to_schema_dataset(evals, "eval_dataset")
    return out


def _looks_like_row(value: Mapping) -> bool:
    return isinstance(value, Mapping) and not isinstance(value, datasets.DatasetDict) and "problem" in value


def write_inputs(cfg, run_dir: Path, is_main: bool, resume: bool, model=None, processor=None,
                 train_dataset: Data | None = None, eval_dataset: Data | None = None):
    """A copy of ``cfg`` whose ``data.path`` / ``model.path`` name the objects given, written under ``run_dir``
    by the main process (every process returns the same config; the caller waits for the main one)."""
    cfg = copy.deepcopy(cfg)
    if eval_dataset is not None and train_dataset is None:
        raise ValueError("eval_dataset without train_dataset: give both, or neither and set data.path")
    if train_dataset is not None:
        d = cfg.data
        splits = dataset_splits(train_dataset, eval_dataset, d.train_split, d.eval_split)
        if d.eval_split not in splits:
            d.eval_split = next((s for s in splits if s != d.train_split), "")
        d.path = str(run_dir / DATA_DIR)
        if is_main:
            with atomic_dir(run_dir / DATA_DIR, replace=True) as tmp:
                datasets.DatasetDict(splits).save_to_disk(str(tmp))
    if model is not None:
        cfg.model.path = str(run_dir / MODEL_DIR)
        if is_main and not (resume and (run_dir / MODEL_DIR / "config.json").exists()):
            save_model(model, processor, run_dir / MODEL_DIR)
    elif processor is not None:
        raise ValueError("processor without model: give the model it belongs to (or neither, and set model.path)")
    return cfg


def save_model(model, processor, path: Path) -> None:
    """``save_pretrained`` of the model and its processor into ``path``, whole or not at all."""
    if processor is None:
        source = getattr(model, "name_or_path", "") or ""
        if not Path(source).is_dir():
            raise ValueError("model given without processor: pass processor=AutoProcessor.from_pretrained(...) too "
                             "(the trainer encodes prompts with it)")
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(source)
    with atomic_dir(path, replace=True) as tmp:
        model.save_pretrained(str(tmp))
        processor.save_pretrained(str(tmp))
