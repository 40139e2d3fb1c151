"""Stop strings: a completion ends at the first token after which its decoded text contains a stop string.

The test is on text, not on token ids, because one string has many tokenisations (`"</answer>"` may arrive as
one token or as four). Text is decoded the way `Rollouts.texts` is (special tokens skipped), from the start of
the completion each time: tokenizers do not decode prefix by prefix (byte-level pieces, cleanup of spaces), so
a window of recent tokens could miss or invent a match. The stopping token is kept (its log-prob counts in
the update); the text is cut right after the stop string, which can fall inside that token.

The decoding backends (`cached`, `engine`) call `StopChecker.update` once per step on the rows still running,
so a stopped row stops costing compute; `reference` cannot stop `generate` on our test, so it runs the same
checker over its finished tokens step by step (`scan_stops`) and gets the same cut.

With `rollout.min_new_tokens` a row is tested only once it holds that many tokens: a stop string written earlier
ends it at that length (its text is still cut right after the stop string).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class StopChecker:
    """Keeps each row's completion so far and reports the rows whose text now contains a stop string."""

    def __init__(self, tokenizer, stops: Sequence[str], num_rows: int, min_tokens: int = 0):
        self.tokenizer = tokenizer
        self.min_tokens = min_tokens  # rollout.min_new_tokens: a shorter row is not tested
        self.stops = tuple(s for s in stops if s)
        self.history: list[list[int]] = [[] for _ in range(num_rows)]
        self.stop_at = torch.zeros(num_rows, dtype=torch.long)  # [N] tokens kept by a stop string; 0 = none

    def update(self, rows: Sequence[int], tokens: Sequence[int]) -> list[int]:
        """Append `tokens[i]` to row `rows[i]` (rows still running after this token, EOS rows excluded) and
        return the rows that now contain a stop string (their `stop_at` is set to their length)."""
        if not self.stops or not rows:
            return []
        for r, tok in zip(rows, tokens, strict=True):
            self.history[r].append(int(tok))
        rows = [r for r in rows if len(self.history[r]) >= self.min_tokens]
        if not rows:
            return []
        texts = self.tokenizer.batch_decode([self.history[r] for r in rows], skip_special_tokens=True)
        hits = [r for r, text in zip(rows, texts, strict=True) if any(s in text for s in self.stops)]
        for r in hits:
            self.stop_at[r] = len(self.history[r])
        return hits


def cut_after_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to the end of the earliest-ending stop string in it (unchanged if none occurs)."""
    ends = [text.find(s) + len(s) for s in stops if s and s in text]
    return text[:min(ends)] if ends else text


def scan_stops(tokenizer, tokens: torch.Tensor, eos_ids: Sequence[int], stops: Sequence[str], min_tokens: int = 0
               ) -> torch.Tensor:
    """tokens [N, T] of finished completions -> stop_at [N]: what `StopChecker` would have reported had the
    rows been decoded step by step (rows end at their first EOS)."""
    N, T = tokens.shape
    checker = StopChecker(tokenizer, stops, N, min_tokens)
    if not checker.stops:
        return checker.stop_at
    ids = tokens.tolist()
    eos = set(eos_ids)
    live = list(range(N))
    for t in range(T):
        live = [r for r in live if ids[r][t] not in eos]
        hits = set(checker.update(live, [ids[r][t] for r in live]))
        live = [r for r in live if r not in hits]
        if not live:
            break
    return checker.stop_at
