"""Which prompts each step trains on: a pure function of (seed, step), so a resumed run sees exactly the data
an uninterrupted one would, and each data-parallel rank can take its own slice of the step's prompts."""

from __future__ import annotations

import numpy as np


class StepSampler:
    """Shuffles the dataset once per epoch (seeded by seed and epoch) and hands out `prompts_per_step`
    indices per step; the last incomplete stretch of an epoch wraps into the next epoch's order."""

    def __init__(self, num_rows: int, prompts_per_step: int, seed: int):
        if num_rows == 0:
            raise ValueError("the training split has no rows")
        self.num_rows, self.per_step, self.seed = num_rows, prompts_per_step, seed
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) > 2:  # a step spans at most two epochs
                self._orders.clear()
            self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.num_rows)
        return self._orders[epoch]

    def indices(self, step: int) -> list[int]:
        """Row indices of step `step` (0-based): [prompts_per_step]."""
        start = step * self.per_step
        out = []
        for pos in range(start, start + self.per_step):
            epoch, offset = divmod(pos, self.num_rows)
            out.append(int(self._order(epoch)[offset]))
        return out

    def epoch_of(self, step: int) -> float:
        return step * self.per_step / self.num_rows
