"""`write_json(path, report)`: a benchmark's figures as JSON, written whole or not at all (a temporary file, then a
rename), with NaN and infinities — which JSON lacks — as null. Used by bench_rollout.py and bench_step.py's
`--json`, read by gpu_check.py."""

from __future__ import annotations

import json
import math
import os


def finite(x):
    """`x` with every non-finite float (in nested dicts and lists) replaced by None."""
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def write_json(path: str, report: dict) -> None:
    """Write `report` to `path` atomically; nothing when `path` is empty."""
    if not path:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(finite(report), f, indent=2)
    os.replace(tmp, path)
