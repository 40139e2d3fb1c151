"""Ask a teacher one question per row, through the reply cache, in batches, with a progress bar.

The three teacher stages (caption, distill, rewrite) differ only in the request they build from a row and
what they do with the reply; this module does the part they share. Requests whose reply is cached are not
sent, identical requests in a batch are sent once, and each fresh reply is cached as it arrives, so killing
the process loses only the requests in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from data_pipelines.cache import ReplyCache, request_key
from data_pipelines.teachers.base import ChatReply, ChatRequest, Teacher

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


def load_template(stage: str, prompt_file: str = "") -> str:
    """The stage's prompt template: ``prompt_file`` if given, else ``data_pipelines/prompts/<stage>.txt``."""
    path = Path(prompt_file) if prompt_file else PROMPTS_DIR / f"{stage}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{stage}: prompt file not found: {path}")
    return path.read_text().strip()


@dataclass
class TeachStats:
    asked: int = 0  # requests sent to the teacher in this run
    cached: int = 0  # requests answered from the cache
    not_needed: int = 0  # rows the stage passed through without a request
    failed: int = 0  # rows whose reply was an error (the rows are dropped, the errors not cached)
    shared: int = 0  # rows whose request equalled another row's in the same batch (asked once)

    def as_dict(self) -> dict[str, int]:
        return dict(asked=self.asked, cached=self.cached, not_needed=self.not_needed, failed=self.failed,
                    shared=self.shared)


def iter_rows(ds: datasets.Dataset, batch_size: int = 64, decode_images: bool = True) -> Iterator[dict]:
    """Rows of ``ds`` one by one, decoded in batches (much faster than ``ds[i]`` for image columns). With
    ``decode_images=False`` the images stay ``{"bytes", "path"}`` entries: for a stage that only needs to
    know whether a row has images, decoding every one would be the stage's main cost."""
    if not decode_images and "images" in ds.features:
        ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    for batch in ds.iter(batch_size=batch_size):
        keys = list(batch)
        for values in zip(*(batch[k] for k in keys), strict=True):
            yield dict(zip(keys, values, strict=True))


def ask_teacher(
    ds: datasets.Dataset,
    make_request: Callable[[dict], ChatRequest | None],
    teacher: Teacher,
    cache: ReplyCache,
    stage: str,
    template: str,
    batch_size: int,
    stats: TeachStats,
    decode_images: bool = True,
) -> list[ChatReply | None]:
    """One reply per row of ``ds`` (None where ``make_request`` returned None: no question for that row).
    ``decode_images``: whether ``make_request`` needs the pixels (see `iter_rows`)."""
    replies: list[ChatReply | None] = [None] * len(ds)
    pending: list[tuple[int, str, ChatRequest]] = []
    with tqdm(total=len(ds), desc=stage, unit="row") as bar:
        for i, row in enumerate(iter_rows(ds, decode_images=decode_images)):
            request = make_request(row)
            if request is None:
                stats.not_needed += 1
                bar.update(1)
                continue
            key = request_key(stage, teacher.identity, template, request, getattr(teacher, "reads_metadata", False))
            pending.append((i, key, request))
            if len(pending) >= batch_size:
                _flush(pending, replies, teacher, cache, stage, stats, bar)
        _flush(pending, replies, teacher, cache, stage, stats, bar)
    return replies


def _flush(pending, replies, teacher, cache, stage, stats, bar) -> None:
    if not pending:
        return
    hits = cache.get_many([key for _, key, _ in pending])
    for i, key, _ in pending:
        if key in hits:
            replies[i] = ChatReply(text=hits[key])
    stats.cached += sum(key in hits for _, key, _ in pending)
    # Identical requests (same key) in one batch are sent once and share the reply.
    rows_of: dict[str, list[int]] = {}
    misses: list[tuple[str, ChatRequest]] = []
    for i, key, request in pending:
        if key not in hits:
            if key not in rows_of:
                misses.append((key, request))
            rows_of.setdefault(key, []).append(i)
    if misses:
        # Each reply is cached the moment it arrives (the teacher calls back in this thread), so a kill
        # mid-batch loses only the requests still in flight, never an answered one.
        stored: set[int] = set()

        def store(j: int, reply: ChatReply) -> None:
            stored.add(j)
            key = misses[j][0]
            for i in rows_of[key]:
                replies[i] = reply
            if reply.ok:
                cache.put_many(stage, [(key, reply.text)])
            else:
                stats.failed += len(rows_of[key])

        answers = teacher.chat([request for _, request in misses], on_reply=store)
        if len(answers) != len(misses):
            raise RuntimeError(f"{stage}: teacher returned {len(answers)} replies for {len(misses)} requests")
        for j, reply in enumerate(answers):  # a teacher that does not call back is cached per batch
            if j not in stored:
                store(j, reply)
        stats.asked += len(misses)
        stats.shared += sum(len(rows_of[key]) - 1 for key, _ in misses)
    bar.update(len(pending))
    pending.clear()


@dataclass
class StageResult:
    """What a stage hands on: the rows it kept, the rows it dropped (with reasons) and its counters."""

    ds: datasets.Dataset
    drops: list  # list[Drop]
    stats: dict


def with_columns(ds: datasets.Dataset, **columns: list) -> datasets.Dataset:
    """``ds`` with the named text columns replaced by new values (images are not re-encoded)."""
    for name, values in columns.items():
        feature = ds.features[name]
        ds = ds.remove_columns(name).add_column(name, values, feature=feature)
    return ds


def meta_of(row: dict) -> dict:
    """A row's meta as a dict (on disk it is JSON text, "" when absent)."""
    import json

    meta = row.get("meta")
    if isinstance(meta, dict):
        return dict(meta)
    return json.loads(meta) if meta else {}


def teacher_metadata(stage: str, row: dict) -> dict:
    """What the programmatic teacher reads (other teachers ignore it): the stage, the row's scene (its meta)
    and task, and the question. Never the answer: that teacher derives it from the scene, as a real one must."""
    meta = meta_of(row)
    out = {"kind": stage, "scene": meta, "task": row["task"], "question": row["problem"].replace("<image>", "").strip()}
    if "target" in meta:
        out["target"] = meta["target"]
    return out
