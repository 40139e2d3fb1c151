"""Documented source params: each field of a source's options dataclass carries its meaning, so `vlrl data
sources` lists every param with its default and help straight from the code (no hand-kept copy to go stale).

    @dataclass(frozen=True)
    class MyOptions:
        annotations: str = param("the .jsonl annotation file")      # required: no default
        limit: int | None = param("read at most this many records", None)
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass
from typing import Any


def param(help: str, default: Any = MISSING, keys: type | None = None) -> Any:
    """A dataclass field with its help text; `keys` names the dataclass whose fields are the keys a mapping
    param accepts (a source's `columns`). Mutable defaults are not used by sources (tuples and None are)."""
    metadata = {"help": help} if keys is None else {"help": help, "keys": keys}
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ParamDoc:
    """One param as `vlrl data sources` lists it."""

    name: str
    type: str
    default: str  # repr of the default, or "required"
    help: str
    keys: list[ParamDoc]  # for a mapping param with named keys (columns): each key's own doc


def describe(options: type) -> list[ParamDoc]:
    """The documented params of an options dataclass, in declaration order."""
    docs = []
    for f in dataclasses.fields(options):
        if f.default is not MISSING:
            default = repr(f.default)
        elif f.default_factory is not MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        keys = f.metadata.get("keys")
        docs.append(ParamDoc(f.name, str(f.type), default, f.metadata.get("help", ""),
                             describe(keys) if keys is not None else []))
    return docs


def format_params(docs: list[ParamDoc], indent: str = "    ") -> list[str]:
    """Lines `name (type, default ...): help`, with a mapping param's keys indented under it."""
    lines = []
    for d in docs:
        default = "required" if d.default == "required" else f"default {d.default}"
        lines.append(f"{indent}{d.name} ({d.type}, {default}): {d.help}")
        if d.keys:
            lines.append(f"{indent}    keys of {d.name}:")
            lines += format_params(d.keys, indent + "        ")
    return lines
