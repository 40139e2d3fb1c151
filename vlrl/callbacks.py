"""Callbacks: what a training script hears from the trainer as it runs, in the main process.

A callback is a :class:`Callback` (override the hooks you need), or a plain function ``fn(step, metrics)``,
called after every training step and every evaluation (an evaluation's metrics are its ``eval/...`` keys).
``metrics`` are exactly what is written to ``metrics.jsonl`` for that step, gathered from every process.
A callback that raises stops training (it is the script's own code).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path


class Callback:
    """Hooks called by :class:`vlrl.Trainer` in the main process; each does nothing unless overridden.

    >>> class PrintAccuracy(Callback):
    ...     def on_evaluate(self, step, metrics):
    ...         print(step, metrics.get("eval/accuracy"))
    >>> PrintAccuracy().on_evaluate(10, {"eval/accuracy": 0.5})
    10 0.5
    """

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        """After training step ``step`` (1-based, as in metrics.jsonl) with its metrics."""

    def on_evaluate(self, step: int, metrics: dict[str, float]) -> None:
        """After the held-out evaluation at ``step`` (0 = before training)."""

    def on_save(self, step: int, path: Path) -> None:
        """After a checkpoint of ``step`` is complete at ``path``."""


class _FunctionCallback(Callback):
    def __init__(self, fn: Callable[[int, dict], object]):
        self.fn = fn

    def on_step(self, step, metrics):
        self.fn(step, metrics)

    def on_evaluate(self, step, metrics):
        self.fn(step, metrics)


def as_callbacks(items: Iterable | Callable | Callback | None) -> list[Callback]:
    """``items`` as a list of :class:`Callback`: functions are wrapped; anything else is an error naming it."""
    if items is None:
        return []
    if isinstance(items, Callback) or callable(items):
        items = [items]
    out = []
    for item in items:
        if isinstance(item, Callback):
            out.append(item)
        elif callable(item):
            out.append(_FunctionCallback(item))
        else:
            raise TypeError(f"callbacks: {item!r} is neither a vlrl.Callback nor a function (step, metrics)")
    return out
