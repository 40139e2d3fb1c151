"""Run logging: `metrics.jsonl` (one JSON object per line: training steps and eval results), tensorboard
events, and named stage timers. Stable metric prefixes: loss/, reward/, rollout/, eval/, perf/, optim/."""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from pathlib import Path


class StageTimer:
    """`with timer("rollout"): ...` accumulates seconds per stage; `pop()` returns {perf/<stage>_s} and resets."""

    def __init__(self, sync=None):
        self.seconds: dict[str, float] = {}
        self.sync = sync  # e.g. torch.cuda.synchronize, so GPU work is charged to its stage

    @contextmanager
    def __call__(self, name: str):
        if self.sync:
            self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.sync:
                self.sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def pop(self) -> dict[str, float]:
        out = {f"perf/{k}_s": v for k, v in self.seconds.items()}
        self.seconds = {}
        return out


class MetricsLogger:
    """Writes metrics on the main process only; other ranks get a logger that does nothing."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)

    def truncate_after(self, step: int) -> None:
        """On resume: drop lines of steps after the checkpoint, which the resumed run will log again."""
        if self.enabled:
            truncate_jsonl(self.path, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop the lines of ``path`` (JSON objects with a ``step``) logged after ``step``, and any line a
    killed run left half-written. Streams through a temporary file: completions.jsonl can be large."""
    if not path.exists():
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    with path.open() as src, tmp.open("w") as dst:
        for line in src:
            try:
                keep = json.loads(line)["step"] <= step
            except (ValueError, KeyError, TypeError):
                keep = False
            if keep:
                dst.write(line if line.endswith("\n") else line + "\n")
    tmp.replace(path)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All lines of a run's metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
