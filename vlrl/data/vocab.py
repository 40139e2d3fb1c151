"""Can the model's tokenizer write this dataset? The texts a dataset puts through the tokenizer, and the check,
before training starts, that none of them encodes to the unknown token.

A word-level tokenizer (the tiny model's) turns every word it has not seen into ``<unk>``: a question then reads
``<unk> <unk> is the shape <unk> ?`` and an answer the policy cannot write caps accuracy at 0, while offline
scoring of the intended text still says 1.0. Nothing fails, so the check must be explicit. Byte-level
tokenizers (Qwen's own) have no unknown token and always pass.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import datasets

from vlrl.data.schema import IMAGE_PLACEHOLDER

log = logging.getLogger(__name__)

POLICIES = ("error", "drop", "ignore")
SHOWN = 5  # rows and words named in a message


def problem_text(problem: str) -> str:
    """A problem's text as the tokenizer sees it: the ``<image>`` marks become image tokens, not words."""
    return problem.replace(IMAGE_PLACEHOLDER, " ")


def dataset_texts(splits: Iterable[datasets.Dataset | None], system_prompt: str = "",
                  prompt_suffix: str = "", reasoning: bool = False) -> Iterator[str]:
    """Every text the prompts and answers of `splits` put through a tokenizer: each problem (without its image
    marks), each answer, and the configured system prompt and prompt suffix. Reads only those two columns, and
    with `reasoning` the reasoning chains too (what `vlrl sft` trains on)."""
    yield system_prompt
    yield prompt_suffix
    for ds in splits:
        if ds is None:
            continue
        yield from map(problem_text, ds["problem"])
        yield from ds["answer"]
        if reasoning and "reasoning" in ds.column_names:
            yield from (chain or "" for chain in ds["reasoning"])


@dataclass
class UnknownTokens:
    """Rows of one split with text the tokenizer encodes as its unknown token."""

    split: str
    rows: int  # rows checked
    bad: list[int] = field(default_factory=list)  # indices of the rows with an unknown token
    ids: list[str] = field(default_factory=list)  # their ids, same order
    words: Counter = field(default_factory=Counter)  # the unknown words and how many rows hold each

    def describe(self) -> str:
        shown = ", ".join(repr(i) for i in self.ids[:SHOWN]) + (" ..." if len(self.ids) > SHOWN else "")
        # Most rows first, ties by the word itself: the message is the same on every run (no set order).
        ranked = sorted(self.words.items(), key=lambda wn: (-wn[1], wn[0]))[:SHOWN]
        words = ", ".join(f"{w!r} ({n})" for w, n in ranked)
        more = f" and {len(self.words) - SHOWN} more" if len(self.words) > SHOWN else ""
        return (f"{len(self.bad)} of {self.rows} {self.split} rows ({shown}); unknown words (rows): "
                f"{words}{more}")


def unknown_words(tokenizer, texts: list[str]) -> list[list[str]]:
    """For each text, the pieces of it that `tokenizer` encodes as its unknown token ([] for none)."""
    unk = tokenizer.unk_token_id
    if unk is None or not texts:
        return [[] for _ in texts]
    fast = getattr(tokenizer, "is_fast", False)
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=fast)
    out = []
    for i, (text, ids) in enumerate(zip(texts, enc["input_ids"], strict=True)):
        if fast:  # the offsets name the word behind each unknown token
            spans = enc["offset_mapping"][i]
            out.append([text[a:b] for tok, (a, b) in zip(ids, spans, strict=True) if tok == unk])
        else:
            out.append([tokenizer.unk_token] * ids.count(unk))
    return out


def find_unknown_tokens(tokenizer, ds: datasets.Dataset, split: str, batch_size: int = 4096) -> UnknownTokens:
    """The rows of `ds` whose problem or answer holds a word `tokenizer` cannot represent."""
    found = UnknownTokens(split, len(ds))
    if tokenizer.unk_token_id is None:
        return found
    for start in range(0, len(ds), batch_size):
        part = ds.select_columns(["id", "problem", "answer"])[start:start + batch_size]
        problems = unknown_words(tokenizer, [problem_text(p) for p in part["problem"]])
        answers = unknown_words(tokenizer, part["answer"])
        for offset, (row_id, p, a) in enumerate(zip(part["id"], problems, answers, strict=True)):
            if p or a:
                found.bad.append(start + offset)
                found.ids.append(row_id)
                found.words.update(dict.fromkeys(p + a, 1))
    return found


class UnknownTokensError(ValueError):
    """The dataset holds text the model's tokenizer cannot represent, and data.unknown_tokens is 'error'."""


FIX = ("Fix: give the tiny model this data's words — model.path=tiny builds it from the data (into a new "
       "trainer.output_dir: an existing RUN_DIR/tiny_model is reused), or `vlrl models tiny OUT --vocab-from DATA` "
       "—, use a model whose tokenizer knows these words, or set data.unknown_tokens=drop (train without these "
       "rows) or data.unknown_tokens=ignore (train on them as they are).")


def check_unknown_tokens(tokenizer, splits: dict[str, datasets.Dataset | None], policy: str = "error",
                         system_prompt: str = "", prompt_suffix: str = "") -> dict[str, datasets.Dataset | None]:
    """Apply `policy` (data.unknown_tokens) to the rows of `splits` ({name: dataset or None}) whose problem or
    answer `tokenizer` encodes with its unknown token: 'error' raises :class:`UnknownTokensError` naming the
    rows and the words, 'drop' returns the splits without those rows (logged), 'ignore' returns them unchanged.
    Unknown words in the system prompt or suffix are an error under 'error' and 'drop' (they are in every row)."""
    if policy not in POLICIES:
        raise ValueError(f"data.unknown_tokens must be one of {list(POLICIES)}, got {policy!r}")
    if policy == "ignore" or tokenizer.unk_token_id is None:
        return splits
    config_words = unknown_words(tokenizer, [system_prompt, prompt_suffix])
    bad_config = [f"data.{name} {words}" for name, words in zip(("system_prompt", "prompt_suffix"), config_words,
                                                                strict=True) if words]
    if bad_config:
        raise UnknownTokensError(f"the tokenizer cannot represent words of {'; '.join(bad_config)}. {FIX}")
    found = {name: find_unknown_tokens(tokenizer, ds, name) for name, ds in splits.items() if ds is not None}
    problems = [f for f in found.values() if f.bad]
    if not problems:
        return splits
    message = ("the model's tokenizer encodes words of these rows' problem or answer as its unknown token "
               f"{tokenizer.unk_token!r}, so the policy can neither read nor write them: "
               + "; ".join(f.describe() for f in problems))
    if policy == "error":
        raise UnknownTokensError(f"{message}. {FIX}")
    log.warning("data.unknown_tokens=drop: %s", message)
    out = dict(splits)
    for name, f in found.items():
        if f.bad:
            bad = set(f.bad)
            out[name] = splits[name].select([i for i in range(f.rows) if i not in bad])
            if not len(out[name]):
                raise UnknownTokensError(f"data.unknown_tokens=drop left no {name} rows: {message}. {FIX}")
    return out
