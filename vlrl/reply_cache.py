"""A cache of chat-model replies: a rerun, or a run restarted after a crash, never pays for a reply twice.

The dataset pipeline's teacher stages and the ``judge`` reward keep their replies here. Each reply is stored
under a key that hashes everything the reply depends on — the stage (or reward), the model's identity, the
prompt template, the sampling settings and the request itself (text and image pixels) — so changing any of
them asks again while an unchanged request is answered from disk. The store is one SQLite file, committed
after every batch of replies: a run killed mid-stage loses only the requests in flight. Callers store only
successful replies, so a rerun retries the failed ones.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from vlrl.chat_client import ChatRequest


def image_hash(image) -> str:
    """Hash of an image's size, mode and pixels: equal exactly for pixel-identical images (dedupe, cache keys)."""
    return hashlib.blake2b(f"{image.size}{image.mode}".encode() + image.tobytes(), digest_size=16).hexdigest()


def request_key(stage: str, teacher: str, template: str, request: ChatRequest, with_metadata: bool = False) -> str:
    """A stable hex digest of everything a model's reply to ``request`` depends on; ``teacher`` is the model's
    identity; ``with_metadata`` for teachers that answer from ``request.metadata`` (the programmatic one) rather
    than from the messages."""
    h = hashlib.sha256()
    head = {
        "stage": stage,
        "teacher": teacher,
        "template": template,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stop": list(request.stop),
    }
    if with_metadata:
        head["metadata"] = request.metadata
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    for message in request.messages:
        h.update(f"\0{message['role']}\0".encode())
        content = message["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for part in parts:
            if part.get("type") == "image":
                h.update(image_hash(part["image"]).encode())
            else:
                h.update(json.dumps(part, sort_keys=True).encode())
    return h.hexdigest()


class ReplyCache:
    """Replies by request key, in a SQLite file; safe to reopen after a crash."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        # WAL without a sync per commit: each reply is committed (and survives the process being killed)
        # for microseconds instead of an fsync's ~20 ms; only an OS crash could lose the latest replies.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, stage TEXT, text TEXT)")
        self._db.commit()

    def get_many(self, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for i in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for key, text in self._db.execute(f"SELECT key, text FROM replies WHERE key IN ({marks})", chunk):
                found[key] = text
        return found

    def put_many(self, stage: str, items: list[tuple[str, str]]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO replies (key, stage, text) VALUES (?, ?, ?)",
            [(key, stage, text) for key, text in items],
        )
        self._db.commit()

    def count(self, stage: str | None = None) -> int:
        if stage is None:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM replies WHERE stage = ?", (stage,)).fetchone()[0]

    def close(self) -> None:
        self._db.close()
