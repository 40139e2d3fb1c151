"""Run logging: `metrics.jsonl` (one JSON object per line: training steps and eval results), tensorboard
events, and named stage timers. Stable metric prefixes: loss/, reward/, rollout/, eval/, perf/, optim/,
algorithm/ (events such as a KL reference reset)."""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from pathlib import Path

from vlrl.atomic import atomic_file


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
    """Writes metrics on the main process only; other ranks get a logger that does nothing. Each line goes to
    metrics.jsonl and, through `log` (`Accelerator.log`: the trackers of trainer.report_to), to the trackers
    with the same names; non-finite values are null in the file and left out for the trackers."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, log=None):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.tensorboard_dir = Path(run_dir) / "tensorboard"
        self.send = log  # send(values, step=step)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self.send is not None:
            self.send({k: v for k, v in clean.items() if isinstance(v, (int, float)) and v is not None}, step=step)

    def truncate_after(self, step: int) -> None:
        """On resume: drop the lines and TensorBoard events of steps after the checkpoint, which the resumed
        run will log again (TensorBoard would otherwise show those steps twice). Call before the trackers
        start, so no writer holds an event file open."""
        if self.enabled:
            truncate_jsonl(self.path, step)
            if self.tensorboard_dir.is_dir():
                truncate_events(self.tensorboard_dir, step)


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop the lines of ``path`` (JSON objects with a ``step``) logged after ``step``, and any line a
    killed run left half-written. Streams through a temporary file: completions.jsonl can be large."""
    if not path.exists():
        return
    with path.open() as src, atomic_file(path, "w") as dst:
        for line in src:
            try:
                keep = json.loads(line)["step"] <= step
            except (ValueError, KeyError, TypeError):
                keep = False
            if keep:
                dst.write(line if line.endswith("\n") else line + "\n")


def truncate_events(tensorboard_dir: Path, step: int) -> None:
    """Rewrite every TensorBoard event file under ``tensorboard_dir`` without the events of steps after
    ``step`` (a record a killed run left half-written goes too). Physically removed rather than hidden by
    TensorBoard's purge heuristics, so any reader of the files sees each step once."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    for path in sorted(Path(tensorboard_dir).rglob("events.out.tfevents.*")):
        records = list(RawEventFileLoader(str(path)).Load())
        kept = [r for r in records if Event.FromString(r).step <= step]
        if len(kept) == len(records) and path.stat().st_size == sum(len(r) + 16 for r in records):
            continue  # nothing to drop: leave the file alone
        with atomic_file(path, "wb") as f:
            writer = RecordWriter(f)
            for record in kept:
                writer.write(record)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All lines of a run's metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def summary_table(lines: list[dict], seconds: float, first_step: int = 0, last: int = 10) -> str:
    """The end-of-run table: per data source, held-out accuracy at the first and the last evaluation and the
    train accuracy and reward averaged over the `last` train steps (one step is noisy: a few prompts per
    source); then the steps this invocation trained and the time it took. `lines`: metrics.jsonl's."""
    evals = [ln for ln in lines if "eval/accuracy" in ln]
    steps = [ln for ln in lines if "reward/mean" in ln][-last:]
    # reward/<source>/mean per source; reward/mean (the overall one) gives the empty name
    sources = {k[len("reward/"):-len("/mean")] for ln in steps for k in ln if k.startswith("reward/")
               and k.endswith("/mean")} - {""}
    eval_sources = {k.split("/", 2)[2] for ln in evals for k in ln if k.startswith("eval/accuracy/")}

    def mean(key: str) -> str:
        values = [ln[key] for ln in steps if ln.get(key) is not None]
        return f"{sum(values) / len(values):.2f}" if values else "-"

    def at(line: dict | None, key: str) -> str:
        return f"{line[key]:.2f}" if line is not None and line.get(key) is not None else "-"

    first, final = (evals[0], evals[-1]) if evals else (None, None)
    rows = [("source", "eval acc start", "eval acc end", f"train acc (last {len(steps)})", "train reward")]
    for source in sorted(sources | eval_sources):
        rows.append((source, at(first, f"eval/accuracy/{source}"), at(final, f"eval/accuracy/{source}"),
                     mean(f"reward/{source}/accuracy"), mean(f"reward/{source}/mean")))
    rows.append(("all", at(first, "eval/accuracy"), at(final, "eval/accuracy"), mean("reward/accuracy"),
                 mean("reward/mean")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    trained = [ln["step"] for ln in lines if "reward/mean" in ln and ln["step"] > first_step]
    span = "no step" if not trained else f"step {trained[-1]}" if len(trained) == 1 else \
        f"steps {first_step + 1}-{trained[-1]}"
    minutes, secs = divmod(round(seconds), 60)
    text.append(f"{span} in {f'{minutes} min ' if minutes else ''}{secs} s")
    return "\n".join(text)
