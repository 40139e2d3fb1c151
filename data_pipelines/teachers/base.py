"""The teacher interface: a chat model the pipeline asks to caption, reason and rewrite.

Messages are OpenAI chat messages whose content is a string or a list of parts, where an image part is
``{"type": "image", "image": PIL.Image.Image}`` (each teacher converts it to what its backend needs: a
base64 data URL for HTTP, pixels for a local model). ``identity`` names the teacher for cache keys: two
teachers with the same identity must answer the same request the same way (up to sampling).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import PIL.Image


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict]
    max_tokens: int = 1024
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    # What a teacher that does not read text needs: the programmatic teacher takes the stage ("kind": caption,
    # distill or rewrite), the row's scene and task here. HTTP and local teachers ignore it; a cache key should
    # still hash it, since a programmatic reply depends on nothing else.
    metadata: dict = field(default_factory=dict)


@dataclass
class ChatReply:
    """A teacher's answer to one request: ``text`` on success, else ``error`` says what failed."""

    text: str | None
    error: str | None = None
    usage: dict = field(default_factory=dict)  # prompt_tokens, completion_tokens where the backend tells
    finish_reason: str = ""  # "stop" or "length" (cut at max_tokens: a truncated chain) where the backend tells

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class TeacherError(RuntimeError):
    """A teacher cannot answer at all (bad configuration, server unreachable after every retry)."""


class Teacher(Protocol):
    identity: str

    def chat(self, requests: Sequence[ChatRequest],
             on_reply: Callable[[int, ChatReply], None] | None = None) -> list[ChatReply]:
        """One reply per request, in order; a failed request is a reply with ``error`` set, not an exception.

        ``on_reply(i, reply)`` is called once per request as soon as its reply is known, in the calling
        thread (the pipeline caches each reply then, so a crash loses no answered request).
        """
        ...


def answer_in_turn(ask: Callable[[ChatRequest], ChatReply], requests: Sequence[ChatRequest],
                   on_reply: Callable[[int, ChatReply], None] | None = None) -> list[ChatReply]:
    """``Teacher.chat`` for teachers that answer one request at a time (local model, programmatic)."""
    replies = []
    for i, request in enumerate(requests):
        replies.append(ask(request))
        if on_reply is not None:
            on_reply(i, replies[-1])
    return replies


def image_of(part: dict) -> PIL.Image.Image:
    """The PIL image of an ``{"type": "image", "image": ...}`` message part; a clear error for anything else."""
    image = part.get("image")
    if not isinstance(image, PIL.Image.Image):
        raise ValueError(f"an image part holds {type(image).__name__}, not a PIL image")
    return image
