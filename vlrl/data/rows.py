"""Rows as the step loop and evaluation read them: decoded when used, and a row that fails then is skipped.

The start-up check (`vlrl.data.validation`) reads image headers only, so pixel data that is cut short or
corrupt first fails when the row is decoded for a step. A run must not die of it hours in: the row is skipped,
named in the log with its id and the reason, counted (`data/skipped_rows` in the step's metrics,
`eval/skipped_rows` in evaluation) and, in training, replaced by a row drawn as a function of (seed, step,
position, attempt) (`StepSampler.replacement`), so the step keeps its `prompts_per_step` prompts, a resumed run
replays the same replacement, and every rank agrees without exchanging a word.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import datasets

from vlrl.data.sampler import StepSampler
from vlrl.data.schema import Row, RowError, validate_row

log = logging.getLogger(__name__)

# Replacements tried for one prompt before giving up: with a fraction f of corrupt rows, all of them fail with
# probability f ** MAX_REPLACEMENTS, which only a dataset of mostly corrupt rows reaches.
MAX_REPLACEMENTS = 32


@dataclass(frozen=True)
class SkippedRow:
    index: int  # position in the split
    row_id: str | None
    reason: str  # the RowError's message: row id, field, what failed


class RowReader:
    """Rows of a split by index, images undecoded until `validate_row` decodes them.

    Reading through the arrow format bypasses the `datasets` Image feature's decoder, whose failure would be
    a bare PIL error with no row id; a row known to fail is remembered and not decoded again."""

    def __init__(self, dataset: datasets.Dataset):
        self.dataset = dataset
        self._arrow = dataset.with_format("arrow")
        self._failed: dict[int, RowError] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def row(self, index: int) -> Row | RowError:
        """The decoded row, or the error that names why it cannot be used."""
        if index in self._failed:
            return self._failed[index]
        try:
            return validate_row(self._arrow[index].to_pylist()[0], index)
        except RowError as err:
            self._failed[index] = err
            return err

    def rows(self, indices: Sequence[int]) -> tuple[list[Row], list[SkippedRow]]:
        """The rows at `indices` that can be used, and the skipped ones (logged)."""
        rows, skipped = [], []
        for index in indices:
            row = self.row(index)
            if isinstance(row, Row):
                rows.append(row)
            else:
                skipped.append(_skip(index, row, "skipped"))
        return rows, skipped

    def step_rows(self, sampler: StepSampler, step: int, positions: range) -> tuple[list[Row], list[SkippedRow]]:
        """Rows of prompts `positions` of step `step` (0-based), a skipped row replaced in its position."""
        indices = sampler.indices(step)
        rows, skipped = [], []
        for position in positions:
            index = indices[position]
            for attempt in range(MAX_REPLACEMENTS + 1):
                row = self.row(index)
                if isinstance(row, Row):
                    rows.append(row)
                    break
                if attempt == MAX_REPLACEMENTS:
                    raise RowError(index, row.row_id, row.field, f"{row.problem}; and the {MAX_REPLACEMENTS} "
                                   f"rows drawn to replace prompt {position} of step {step + 1} failed too")
                replacement = sampler.replacement(step, position, attempt)
                skipped.append(_skip(index, row, f"step {step + 1}: skipped, replaced by index {replacement}"))
                index = replacement
        return rows, skipped


def _skip(index: int, err: RowError, what: str) -> SkippedRow:
    log.warning("%s: %s", what, err)
    return SkippedRow(index, err.row_id, str(err))
