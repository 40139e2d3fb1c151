"""A client for any OpenAI-compatible chat-completions endpoint (`vlrl serve`, vLLM, a hosted API), and the
request and reply types it speaks. The dataset pipeline's HTTP teacher and the ``judge`` reward both use it.

Messages are OpenAI chat messages whose content is a string or a list of parts, where an image part is
``{"type": "image", "image": PIL.Image.Image}``; the client sends it as a base64 PNG data URL.

Standard library HTTP only. Requests run on a thread pool, with at most ``max_concurrency`` in flight across
every caller of one client (a semaphore, so two callers sharing a client cannot double the load). A request
that meets a 429, a 5xx, a refused or dropped connection or a timeout is retried after an exponential backoff
with jitter (so many workers rejected together do not come back together), honouring a server's
``Retry-After``; any other 4xx is the request's own fault and is not retried. After the last retry the
request becomes a :class:`ChatReply` with ``error`` set: the caller keeps going and counts the failure.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import PIL.Image


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict]
    max_tokens: int = 1024
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    # What a client that does not read text needs: the pipeline's programmatic teacher takes the stage ("kind":
    # caption, distill or rewrite), the row's scene and task here. HTTP clients ignore it; a cache key should
    # still hash it where a reply depends on nothing else.
    metadata: dict = field(default_factory=dict)


@dataclass
class ChatReply:
    """The answer to one request: ``text`` on success, else ``error`` says what failed."""

    text: str | None
    error: str | None = None
    usage: dict = field(default_factory=dict)  # prompt_tokens, completion_tokens where the backend tells
    finish_reason: str = ""  # "stop" or "length" (cut at max_tokens: a truncated chain) where the backend tells

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


def image_of(part: dict) -> PIL.Image.Image:
    """The PIL image of an ``{"type": "image", "image": ...}`` message part; a clear error for anything else."""
    image = part.get("image")
    if not isinstance(image, PIL.Image.Image):
        raise ValueError(f"an image part holds {type(image).__name__}, not a PIL image")
    return image


LOOPBACK = ("localhost", "127.0.0.1", "::1")


class _Retryable(Exception):
    """A failure worth another try; ``wait_s`` is the server's Retry-After when it sent one."""

    def __init__(self, message: str, wait_s: float | None = None):
        super().__init__(message)
        self.wait_s = wait_s


class OpenAIChatClient:
    """``chat`` posts each request to ``{base_url}/chat/completions``; ``base_url`` ends in ``/v1``."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY",
                 max_concurrency: int = 8, retries: int = 4, timeout_s: float = 120.0,
                 backoff_s: float = 1.0, max_backoff_s: float = 60.0):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.identity = f"openai:{self.base_url}:{model}"
        self.max_concurrency, self.retries, self.timeout_s = max_concurrency, retries, timeout_s
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        # Read once: the key never enters identity, logs or errors.
        self._api_key = os.environ.get(api_key_env) if api_key_env else None
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._random = random.Random()
        # Environment proxies must not capture loopback traffic to a local server.
        host = urlsplit(self.base_url).hostname or ""
        handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    def chat(self, requests: Sequence[ChatRequest], on_reply=None) -> list[ChatReply]:
        """One reply per request, in order; failures are replies with ``error`` set. ``on_reply(i, reply)``
        runs in this thread as each reply arrives (in completion order)."""
        if not requests:
            return []
        replies: list[ChatReply | None] = [None] * len(requests)
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests)))
        try:
            futures = {pool.submit(self._ask, request): i for i, request in enumerate(requests)}
            for future in as_completed(futures):
                i = futures[future]
                replies[i] = future.result()
                if on_reply is not None:
                    on_reply(i, replies[i])
        except BaseException:
            # Interrupted (Ctrl-C, or a reward's time limit raising in this thread): return at once; requests
            # not started are dropped and those in flight end by their own timeout.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        return replies

    def _ask(self, request: ChatRequest) -> ChatReply:
        try:
            payload = json.dumps(self.payload(request)).encode()
        except (TypeError, ValueError) as exc:
            return ChatReply(None, error=f"cannot encode the request: {exc}")
        last = ""
        for attempt in range(self.retries + 1):
            try:
                with self._slots:
                    return self._post(payload)
            except _Retryable as exc:
                last = str(exc)
                if attempt < self.retries:
                    time.sleep(self._delay(attempt, exc.wait_s))
            except ValueError as exc:  # a non-retryable answer: 4xx, or a reply without a message
                return ChatReply(None, error=str(exc))
        return ChatReply(None, error=f"gave up after {self.retries + 1} attempts: {last}")

    def payload(self, request: ChatRequest) -> dict:
        """The JSON body for one request: images become base64 PNG data URLs."""
        body = {
            "model": self.model,
            "messages": [_wire_message(m) for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        return body

    def _post(self, payload: bytes) -> ChatReply:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=payload, headers=headers,
                                     method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc)
            if exc.code == 429 or exc.code >= 500 or exc.code == 408:
                raise _Retryable(f"HTTP {exc.code}: {detail}", _retry_after(exc)) from exc
            raise ValueError(f"HTTP {exc.code}: {detail}") from exc
        except (http.client.HTTPException, OSError) as exc:  # OSError: URLError, refused/reset, timeouts
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"{type(exc).__name__}: {reason}") from exc
        return _parse_reply(raw)

    def _delay(self, attempt: int, server_wait: float | None) -> float:
        """Seconds before retry ``attempt + 1``: the server's wish, else backoff_s * 2**attempt, half jittered."""
        if server_wait is not None:
            return min(server_wait, self.max_backoff_s)
        base = min(self.backoff_s * 2**attempt, self.max_backoff_s)
        return base / 2 + self._random.uniform(0, base / 2)


def _wire_message(message: dict) -> dict:
    """A message as OpenAI's API takes it: PIL image parts become ``image_url`` data-URL parts."""
    content = message["content"]
    if isinstance(content, str):
        return {"role": message["role"], "content": content}
    parts = []
    for part in content:
        if part.get("type") == "image":
            parts.append({"type": "image_url", "image_url": {"url": png_data_url(image_of(part))}})
        else:
            parts.append(part)
    return {"role": message["role"], "content": parts}


def png_data_url(image: PIL.Image.Image) -> str:
    """``data:image/png;base64,...``: lossless, so the server sees exactly our pixels."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _parse_reply(raw: bytes) -> ChatReply:
    try:
        body = json.loads(raw)
        choice = body["choices"][0]
        text = choice["message"]["content"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"the server's reply has no choices[0].message.content ({type(exc).__name__}: {exc})") from exc
    if not isinstance(text, str):
        raise ValueError(f"choices[0].message.content is {type(text).__name__}, not text")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return ChatReply(text, usage=usage, finish_reason=choice.get("finish_reason") or "")


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """The message of an OpenAI-style error body, else the start of the body, else the HTTP reason."""
    try:
        raw = exc.read()
    except Exception:
        raw = b""
    try:
        return str(json.loads(raw)["error"]["message"])
    except Exception:
        text = raw.decode("utf-8", "replace").strip()
        return text[:300] or str(exc.reason)


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
