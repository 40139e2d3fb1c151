"""The teacher interface: a chat model the pipeline asks to caption, reason and rewrite.

Messages are OpenAI chat messages whose content is a string or a list of parts, where an image part is
``{"type": "image", "image": PIL.Image.Image}`` (each teacher converts it to what its backend needs: a
base64 data URL for HTTP, pixels for a local model). ``identity`` names the teacher for cache keys: two
teachers with the same identity must answer the same request the same way (up to sampling).

The request and reply types live in :mod:`vlrl.chat_client` (the ``judge`` reward speaks them too) and are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from vlrl.chat_client import ChatReply, ChatRequest, image_of

__all__ = ["ChatReply", "ChatRequest", "Teacher", "TeacherError", "answer_in_turn", "image_of"]


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
