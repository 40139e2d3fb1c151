"""Source kinds by name, and :func:`load_source`, which the pipeline driver calls for each config section.

A config section names a kind, a name and its params::

    sources:
      - {kind: coco, name: coco_val, params: {annotations: /data/coco/instances_val2017.json,
                                              image_root: /data/coco/val2017, max_per_image: 4}}
      - {kind: digits, params: {rows_per_task: 2000}}

``name`` (default: the kind) prefixes every row id, is the ``step`` of the source's drops and the default
``data_source``, so two sections of one kind must have different names. ``params`` are the fields of the
kind's options dataclass; an unknown or missing param, or one of the wrong type, is an error that lists the
valid ones, before any file is read.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from data_pipelines.records import SourceResult
from data_pipelines.sources.annotations import SourceError
from data_pipelines.sources.coco import CocoOptions, load_coco
from data_pipelines.sources.folder import FolderOptions, load_folder
from data_pipelines.sources.hf import HFOptions, load_hf
from data_pipelines.sources.orsta import OrstaOptions, load_orsta
from data_pipelines.sources.refcoco import RefCocoOptions, load_refcoco
from data_pipelines.sources.synthetic import DigitsOptions, ShapesOptions, load_digits, load_shapes
from data_pipelines.sources.vlaa import VlaaOptions, load_vlaa


@dataclass(frozen=True)
class SourceKind:
    """A kind of source: its options dataclass and the function that reads it."""

    options: type
    load: Callable[[Any, str], SourceResult]


SOURCES: dict[str, SourceKind] = {
    "folder": SourceKind(FolderOptions, load_folder),
    "hf": SourceKind(HFOptions, load_hf),
    "coco": SourceKind(CocoOptions, load_coco),
    "refcoco": SourceKind(RefCocoOptions, load_refcoco),
    "vlaa": SourceKind(VlaaOptions, load_vlaa),
    "orsta": SourceKind(OrstaOptions, load_orsta),
    "shapes": SourceKind(ShapesOptions, load_shapes),
    "digits": SourceKind(DigitsOptions, load_digits),
}


@dataclass(frozen=True)
class SourceSpec:
    """One config section: which kind of source, its name, its params."""

    kind: str
    name: str | None = None  # default: the kind
    params: Mapping[str, Any] = field(default_factory=dict)


def source_spec(section: Mapping[str, Any] | SourceSpec) -> SourceSpec:
    """A :class:`SourceSpec` from a config mapping ``{kind, name, params}``, keys checked."""
    if isinstance(section, SourceSpec):
        return section
    if not isinstance(section, Mapping):
        raise SourceError(
            f"a source section must be a mapping {{kind, name, params}}, got {type(section).__name__}"
        )
    valid = [f.name for f in dataclasses.fields(SourceSpec)]
    unknown = sorted(set(section) - set(valid))
    if unknown:
        raise SourceError(f"source section: unknown keys {unknown}; valid keys: {valid}")
    if "kind" not in section:
        raise SourceError(f"source section {dict(section)!r} has no 'kind'; kinds: {sorted(SOURCES)}")
    return SourceSpec(section["kind"], section.get("name"), section.get("params") or {})


def build_options(kind: str, params: Mapping[str, Any], name: str | None = None):
    """The options dataclass of ``kind`` filled from ``params``; errors list valid kinds or params."""
    if kind not in SOURCES:
        raise SourceError(f"unknown source kind {kind!r}; valid kinds: {sorted(SOURCES)}")
    where = f"source {name or kind!r} (kind {kind})"
    if not isinstance(params, Mapping):
        raise SourceError(f"{where}: params must be a mapping, got {type(params).__name__}")
    cls = SOURCES[kind].options
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise SourceError(f"{where}: unknown params {unknown}; valid params: {sorted(fields)}")
    missing = [n for n, f in fields.items() if n not in params and _required(f)]
    if missing:
        raise SourceError(f"{where}: missing required params {missing}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(v, hints[k], f"{where}: param {k!r}") for k, v in params.items()})


def load_source(spec: Mapping[str, Any] | SourceSpec) -> SourceResult:
    """Read one source: rows (schema-v1 dicts) and the drops, under the spec's name."""
    spec = source_spec(spec)
    name = spec.kind if spec.name is None else spec.name
    if not isinstance(name, str) or not name.strip():
        raise SourceError(f"source of kind {spec.kind!r}: name must be a non-empty string, got {name!r}")
    options = build_options(spec.kind, spec.params, name)
    return SOURCES[spec.kind].load(options, name)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the field's annotation (lists become tuples for tuple fields)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise SourceError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(v, args[0], where) for v in items)
    if origin is not None and issubclass(origin, Mapping) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise SourceError(f"{where} must be a mapping, got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, float, bool) and (type(value) is not hint):
        raise SourceError(f"{where} must be {hint.__name__}, got {value!r}")
    return value
