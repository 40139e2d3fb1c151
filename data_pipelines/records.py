"""What every pipeline step hands on: rows it kept and rows it dropped, each drop with its reason.

A source, stage or filter never drops a row silently: it returns a :class:`Drop` naming the row id, the
step and a short machine-readable reason (``missing_image``, ``undecodable_image``, ``missing_answer``,
``box_outside_image``, ``answer_mismatch``, ...), which the dataset card counts.

Rows in flight are plain dicts with the schema-v1 fields (``vlrl/data/schema.py``): ``images`` is a list of
RGB ``PIL.Image.Image`` or ``{"bytes": ..., "path": ...}`` dicts, ``reward`` and ``meta`` are dicts (or
"" / None when absent); :func:`to_schema_row` turns one into the on-disk form.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from vlrl.reply_cache import image_hash  # noqa: F401 (re-exported: stages, generators and tests use it here)


@dataclass(frozen=True)
class Drop:
    """One row left out, and why."""

    id: str  # the row's id, or "<source>:<index>" when it has none
    step: str  # the source or stage that dropped it, e.g. "coco", "verify"
    reason: str  # short key counted in the card, e.g. "missing_image"
    detail: str = ""  # human-readable specifics: the file, the field, the value


@dataclass
class SourceResult:
    """Rows a source produced (schema-v1 dicts) and the input rows it could not use."""

    name: str
    rows: list[dict] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)

    def drop(self, row_id: str, reason: str, detail: str = "") -> None:
        self.drops.append(Drop(row_id, self.name, reason, detail))

    def extend(self, other: SourceResult) -> None:
        self.rows += other.rows
        self.drops += other.drops


def drop_counts(drops: Iterable[Drop]) -> dict[str, dict[str, int]]:
    """``{step: {reason: count}}``, for the dataset card."""
    out: dict[str, Counter] = {}
    for d in drops:
        out.setdefault(d.step, Counter())[d.reason] += 1
    return {step: dict(c) for step, c in out.items()}


def to_schema_row(row: dict) -> dict:
    """A row in flight as ``SCHEMA_FEATURES`` stores it: optional JSON fields as text, "" when absent."""

    def text(value) -> str:
        if value is None or value == "":
            return ""
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True)

    return {
        "id": str(row["id"]),
        "images": list(row.get("images") or []),
        "problem": row["problem"],
        "answer": row["answer"],
        "task": row["task"],
        "data_source": row.get("data_source") or "",
        "reward": text(row.get("reward")),
        "reasoning": row.get("reasoning") or "",
        "meta": text(row.get("meta")),
    }


def rows_dataset(rows: list[dict]):
    """A ``datasets.Dataset`` of schema-v1 rows (already in :func:`to_schema_row` form); empty is fine."""
    import datasets

    from vlrl.data.schema import SCHEMA_FEATURES

    if not rows:
        return datasets.Dataset.from_dict({name: [] for name in SCHEMA_FEATURES}, features=SCHEMA_FEATURES)
    return datasets.Dataset.from_list(rows, features=SCHEMA_FEATURES)
