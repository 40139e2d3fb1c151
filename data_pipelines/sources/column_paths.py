"""Column paths: a column mapping may name a value nested inside a record's column.

``conversations[1].value`` is the ``value`` of the second item of the ``conversations`` list (VLM-R1's
chat-style JSONL); ``solution.bbox`` the ``bbox`` key of the ``solution`` object; ``answer[0]`` the first
expression of a list. A column whose whole name exists in the record wins over a path reading of it (a CSV
header may contain a dot). A string met on the way that holds JSON (``raw_anns`` in some parquet
re-releases) is parsed before the path goes on into it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_STEP = re.compile(r"\.?([^.\[\]]+)|\[(-?\d+)\]")
MISSING = object()  # the path leads nowhere in this record (a key or index that is not there)


def path_steps(path: str) -> list[str | int]:
    """``"a[1].b"`` -> ``["a", 1, "b"]``; ValueError for a path that does not parse."""
    steps: list[str | int] = []
    pos = 0
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"column path {path!r}: cannot read it at character {pos} ({path[pos:]!r})")
        steps.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    if not steps or not isinstance(steps[0], str):
        raise ValueError(f"column path {path!r} must start with a column name")
    return steps


def root_column(path: str, available: set[str] | None = None) -> str:
    """The record column a path starts in (the whole path when that is itself a column)."""
    if available is not None and path in available:
        return path
    return str(path_steps(path)[0])


def lookup(record: Mapping, path: str | None) -> Any:
    """The value at ``path`` in ``record``; None for no path, :data:`MISSING` when it leads nowhere."""
    if path is None:
        return None
    if path in record:
        return record[path]
    value: Any = record
    for step in path_steps(path):
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                return MISSING
        if hasattr(value, "tolist") and not isinstance(value, Mapping):
            value = value.tolist()  # numpy arrays from parquet
        if isinstance(step, int):
            if not isinstance(value, (list, tuple)) or not -len(value) <= step < len(value):
                return MISSING
            value = value[step]
        elif isinstance(value, Mapping) and step in value:
            value = value[step]
        else:
            return MISSING
    return value
