"""Which prompts each step trains on: a pure function of (seed, step), so a resumed run sees exactly the data
an uninterrupted one would, and each data-parallel rank can take its own slice of the step's prompts."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)


class StepSampler:
    """Hands out `prompts_per_step` row indices per step.

    Without source weights: the dataset is shuffled once per epoch (seeded by seed and epoch) and read in
    order; the last incomplete stretch of an epoch wraps into the next epoch's order.
    With `source_weights` ({data_source: weight}): each step draws its prompts without replacement from a
    distribution where each source's share is proportional to its weight (sources not named weigh 1), rows
    of a source being equally likely; the draw of step s is seeded by (seed, s).
    """

    def __init__(self, num_rows: int, prompts_per_step: int, seed: int,
                 sources: Sequence[str] | None = None, source_weights: Mapping[str, float] | None = None):
        if num_rows == 0:
            raise ValueError("the training split has no rows")
        self.num_rows, self.per_step, self.seed = num_rows, prompts_per_step, seed
        self._orders: dict[int, np.ndarray] = {}
        self.probs = None
        if source_weights:
            if sources is None or len(sources) != num_rows:
                raise ValueError("source_weights needs the data_source of every row")
            unknown = sorted(set(source_weights) - set(sources))
            if unknown and len(unknown) == len(source_weights):
                # Weights about another dataset altogether — the defaults' weights are the tiny demo's — so a
                # dataset built elsewhere trains unchanged: each source weighs 1, and the log says why.
                log.warning("data.source_weights names only sources absent from the data (%s; present: %s): "
                            "every source weighs 1", unknown, sorted(set(sources)))
                source_weights = {}
            elif unknown:  # some named sources exist: the others are typos
                raise ValueError(f"data.source_weights names sources absent from the data: {unknown}; "
                                 f"present: {sorted(set(sources))}")
        if source_weights:
            if any(w < 0 for w in source_weights.values()):
                raise ValueError(f"data.source_weights must be non-negative, got {dict(source_weights)}")
            names, counts = np.unique(np.asarray(sources), return_counts=True)
            share = {n: float(source_weights.get(n, 1.0)) / c for n, c in zip(names, counts, strict=True)}
            probs = np.array([share[s] for s in sources], dtype=np.float64)
            if probs.sum() <= 0:
                raise ValueError("data.source_weights gives every row weight 0")
            self.probs = probs / probs.sum()
            if int((self.probs > 0).sum()) < prompts_per_step:
                raise ValueError(f"only {int((self.probs > 0).sum())} rows have non-zero weight, fewer than "
                                 f"prompts_per_step={prompts_per_step}")

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) > 2:  # a step spans at most two epochs
                self._orders.clear()
            self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.num_rows)
        return self._orders[epoch]

    def indices(self, step: int) -> list[int]:
        """Row indices of step `step` (0-based): [prompts_per_step]."""
        if self.probs is not None:
            rng = np.random.default_rng([self.seed, step, 1])
            return rng.choice(self.num_rows, size=self.per_step, replace=False, p=self.probs).tolist()
        start = step * self.per_step
        out = []
        for pos in range(start, start + self.per_step):
            epoch, offset = divmod(pos, self.num_rows)
            out.append(int(self._order(epoch)[offset]))
        return out

    def replacement(self, step: int, position: int, attempt: int) -> int:
        """The row that stands in for prompt `position` of step `step` when its row cannot be used (a corrupt
        image), on the `attempt`-th try: a function of (seed, step, position, attempt) alone, so a resumed run
        and every rank of a multi-process run pick the same one. Drawn like the step's rows (by source weight
        when set); it may repeat a prompt of the step, which is harmless: samples are seeded by position."""
        rng = np.random.default_rng([self.seed, step, position, attempt, 2])
        if self.probs is not None:
            return int(rng.choice(self.num_rows, p=self.probs))
        return int(rng.integers(self.num_rows))
