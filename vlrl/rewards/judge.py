"""``judge``: a chat model behind an OpenAI-compatible endpoint (``vlrl serve``, vLLM, a hosted API) grades each
completion's answer against the row's reference answer, looking at the row's images.

For open-ended questions (VQA, captions, charts) no rule says whether "a red mug" answers "what is on the
desk?" as well as the reference "a coffee cup"; VLAA-Thinking (arXiv 2504.11468) scored such rows with a
model. Here the model is any chat endpoint, asked with a prompt template we write
(``vlrl/rewards/prompts/judge.txt``, or ``prompt_file``) whose placeholders ``{question}``, ``{reference}``
and ``{answer}`` are filled with the row's ``problem``, its ``answer`` and the completion's answer region (the
last ``<answer>…</answer>``, else the whole completion with ``fallback_to_completion``; no answer scores 0 without
asking). The row's images go first in the message as image parts (PNG data URLs; longer side cut to
``max_image_side`` pixels).

The reply becomes a score in [0, 1] (:func:`parse_grade`): ``Score: N`` / ``Grade: N/10`` (the last such
label wins, so a judge may reason first), else a reply that is only a number, else a reply starting with
yes/correct/true (1) or no/incorrect/wrong/false (0); N is divided by ``max_grade`` (or by the ``/d`` the
judge wrote). A grade outside [0, max_grade] or any other reply is unparseable.

Batched, in the trainer's process: the mixer calls :func:`judge` once per step with all the completions it
scores. Identical requests are asked once; every reply is kept in a SQLite cache (``cache``: a path; default
``$XDG_CACHE_HOME/vlrl/judge.sqlite``, i.e. ``~/.cache/vlrl/judge.sqlite``, shared by runs; ``false`` turns it
off) under a hash of the endpoint, model, sampling settings and the request's text and pixels, so a repeated
request — the same answer to the same row in a later step, epoch or run — is never sent again. The cache
holds one reply per request: with ``temperature > 0`` the first sample is reused.

Failures never raise: a request that still fails after ``retries`` (429, 5xx, timeouts and dropped
connections are retried with backoff; other 4xx are not), and a reply that :func:`parse_grade` cannot read,
return NaN for that completion, which the mixer scores 0 and counts in ``reward/parse_failures``. The whole
call runs under the mixer's soft limit of ``reward.timeout_s`` per completion; past it every completion of the
call counts in ``reward/timeouts`` and requests still in flight end by their own ``timeout_s``.

``vlrl rewards score`` input lines carry no images: there the judge grades the text alone.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import re
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlrl.chat_client import ChatReply, ChatRequest, OpenAIChatClient
from vlrl.reply_cache import ReplyCache, request_key
from vlrl.rewards.base import RewardInput, accepted_params, answer_region, register_reward

logger = logging.getLogger(__name__)

DEFAULT_PROMPT = Path(__file__).with_name("prompts") / "judge.txt"
PLACEHOLDERS = ("{question}", "{reference}", "{answer}")
CACHE_STAGE = "judge"  # the ReplyCache's stage column for the judge's replies


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/vlrl/judge.sqlite``, else ``~/.cache/vlrl/judge.sqlite``."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "vlrl" / "judge.sqlite"


# ---- the reply ----------------------------------------------------------------------------------------------
_NUMBER = r"([-+]?\d+(?:\.\d+)?)"
_LABELLED = re.compile(rf"\b(?:score|grade|rating)\b\s*(?:is|of|:|=)?\s*{_NUMBER}\s*(?:(?:/|out of)\s*{_NUMBER})?",
                       re.IGNORECASE)
_BARE = re.compile(rf"^{_NUMBER}\s*(?:(?:/|out of)\s*{_NUMBER})?\.?$", re.IGNORECASE)
_VERDICTS = {"yes": 1.0, "correct": 1.0, "true": 1.0, "no": 0.0, "incorrect": 0.0, "wrong": 0.0, "false": 0.0}


def parse_grade(text: str, max_grade: float = 10.0) -> float | None:
    """A judge's reply as a score in [0, 1]; None when it holds no readable grade (see the module docstring).

    >>> parse_grade("The answers agree.\\nScore: 8")
    0.8
    >>> parse_grade("**7/7**"), parse_grade("Yes."), parse_grade("Incorrect: it is blue"), parse_grade("11")
    (1.0, 1.0, 0.0, None)
    """
    clean = re.sub(r"[*_`#]", "", text).strip()
    matches = _LABELLED.findall(clean)
    found = matches[-1] if matches else None
    if found is None and (bare := _BARE.match(clean)):
        found = bare.groups()
    if found is not None:
        value, scale = float(found[0]), float(found[1]) if found[1] else max_grade
        if scale <= 0 or not 0.0 <= value <= scale:
            return None
        return value / scale
    first = re.match(r"[a-z]+", clean.casefold())
    return _VERDICTS.get(first.group(0)) if first else None


# ---- settings -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JudgeSettings:
    """The judge's params, checked (see :func:`judge` for each)."""

    base_url: str
    model: str
    template: str
    api_key_env: str | None
    max_concurrency: int
    retries: int
    timeout_s: float
    backoff_s: float
    max_tokens: int
    temperature: float
    cache: Path | None
    max_grade: float
    images: bool
    max_image_side: int
    fallback_to_completion: bool
    max_answer_chars: int


def settings(params: Mapping[str, Any]) -> JudgeSettings:
    """Check the judge's params and fill in defaults; ValueError naming the param. Reads the prompt file."""
    accepted = accepted_params(judge)
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"unknown params {unknown} for reward judge; accepted: {sorted(accepted)}")
    p = {**_DEFAULTS, **params}
    base_url = p["base_url"]
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"judge needs params.base_url, the endpoint's URL ending in /v1 (e.g. "
                         f"http://127.0.0.1:8000/v1), got {base_url!r}")
    path = Path(p["prompt_file"]).expanduser() if p["prompt_file"] else DEFAULT_PROMPT
    try:
        template = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"judge params.prompt_file: cannot read {path}: {err}") from err
    if "{answer}" not in template:
        raise ValueError(f"judge params.prompt_file {path}: the template has no {{answer}} placeholder "
                         f"(placeholders: {', '.join(PLACEHOLDERS)})")
    cache = p["cache"]
    if cache is None or cache is True:
        cache_path = default_cache_path()
    elif cache is False or cache == "":
        cache_path = None
    elif isinstance(cache, str):
        cache_path = Path(cache).expanduser()
    else:
        raise ValueError(f"judge params.cache must be a path, null (the default file) or false, got {cache!r}")
    return JudgeSettings(
        base_url=base_url.rstrip("/"), model=_text(p, "model"), template=template,
        api_key_env=_text(p, "api_key_env") or None,
        max_concurrency=_number(p, "max_concurrency", int, 1), retries=_number(p, "retries", int, 0),
        timeout_s=_number(p, "timeout_s", float, 1e-3), backoff_s=_number(p, "backoff_s", float, 0.0),
        max_tokens=_number(p, "max_tokens", int, 1), temperature=_number(p, "temperature", float, 0.0),
        cache=cache_path, max_grade=_number(p, "max_grade", float, 1e-9), images=_flag(p, "images"),
        max_image_side=_number(p, "max_image_side", int, 0), fallback_to_completion=_flag(p, "fallback_to_completion"),
        max_answer_chars=_number(p, "max_answer_chars", int, 1),
    )


def _text(p: Mapping, key: str) -> str:
    if p[key] is None:
        return ""
    if not isinstance(p[key], str):
        raise ValueError(f"judge params.{key} must be a string, got {p[key]!r}")
    return p[key]


def _number(p: Mapping, key: str, kind: type, low: float):
    value = p[key]
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and (kind is float or float(value).is_integer())
    if not ok or not math.isfinite(value) or value < low:
        raise ValueError(f"judge params.{key} must be {'an integer' if kind is int else 'a number'} >= {low:g}, "
                         f"got {value!r}")
    return kind(value)


def _flag(p: Mapping, key: str) -> bool:
    if not isinstance(p[key], bool):
        raise ValueError(f"judge params.{key} must be true or false, got {p[key]!r}")
    return p[key]


# ---- requests -----------------------------------------------------------------------------------------------
def judge_request(inp: RewardInput, s: JudgeSettings) -> ChatRequest:
    """The chat request grading ``inp``: its images (when ``s.images``), then the filled-in template."""
    answer = answer_region(inp.completion, s.fallback_to_completion) or ""
    values = {"{question}": inp.problem, "{reference}": inp.answer, "{answer}": answer[:s.max_answer_chars]}
    # One pass over the template, so a placeholder's text inside a filled-in value is never replaced again.
    text = re.sub("|".join(re.escape(k) for k in values), lambda m: values[m.group(0)], s.template)
    images = [_bounded(image, s.max_image_side) for image in inp.images] if s.images else []
    content: str | list = text
    if images:
        content = [*({"type": "image", "image": image} for image in images), {"type": "text", "text": text}]
    return ChatRequest(messages=[{"role": "user", "content": content}], max_tokens=s.max_tokens,
                       temperature=s.temperature)


def _bounded(image, side: int):
    """``image`` with its longer side at most ``side`` pixels (0: as it is), RGB."""
    image = image.convert("RGB") if image.mode != "RGB" else image
    if side and max(image.size) > side:
        image = image.copy()
        image.thumbnail((side, side))
    return image


_CLIENTS: dict[tuple, OpenAIChatClient] = {}
_CACHES: dict[tuple, ReplyCache] = {}
_LOCK = threading.Lock()
_WARNED: set[str] = set()


def _client(s: JudgeSettings) -> OpenAIChatClient:
    """One client per endpoint and settings in this process, so its concurrency limit holds across calls."""
    key = (s.base_url, s.model, s.api_key_env, s.max_concurrency, s.retries, s.timeout_s, s.backoff_s)
    with _LOCK:
        if key not in _CLIENTS:
            _CLIENTS[key] = OpenAIChatClient(s.base_url, s.model, api_key_env=s.api_key_env,
                                             max_concurrency=s.max_concurrency, retries=s.retries,
                                             timeout_s=s.timeout_s, backoff_s=s.backoff_s)
        return _CLIENTS[key]


def _cache(path: Path | None) -> ReplyCache | None:
    """The open cache at ``path``, one connection per thread (SQLite connections stay in their thread)."""
    if path is None:
        return None
    key = (path.resolve(), threading.get_ident())
    with _LOCK:
        if key not in _CACHES:
            try:
                _CACHES[key] = ReplyCache(path)
            except (sqlite3.Error, OSError) as err:  # scoring goes on without it
                _warn(f"open {path}", f"judge: cannot open the reply cache {path} ({err}); replies are not cached")
                return None
        return _CACHES[key]


# ---- the reward ---------------------------------------------------------------------------------------------
@register_reward("judge")
def judge(inputs: Sequence[RewardInput], base_url: str = "", model: str = "", prompt_file: str = "",
          api_key_env: str | None = "OPENAI_API_KEY", max_concurrency: int = 8, retries: int = 3,
          timeout_s: float = 60.0, backoff_s: float = 1.0, max_tokens: int = 32, temperature: float = 0.0,
          cache: str | bool | None = None, max_grade: float = 10.0, images: bool = True, max_image_side: int = 1024,
          fallback_to_completion: bool = True, max_answer_chars: int = 4000) -> list[float]:
    """A chat model behind an OpenAI-compatible endpoint grades each answer against the reference, with the image.

    ``base_url`` (required, ends in /v1) and ``model`` name the endpoint; ``prompt_file`` is the template ('' =
    vlrl/rewards/prompts/judge.txt); the API key is read from the environment variable ``api_key_env``;
    ``max_concurrency`` requests in flight, each retried ``retries`` times (backoff from ``backoff_s``) and cut
    after ``timeout_s``; ``max_tokens`` and ``temperature`` of the judge's reply; ``cache`` a SQLite path (null:
    ~/.cache/vlrl/judge.sqlite; false: none); a grade N scores N / ``max_grade``; ``images`` attaches the row's
    images, longer side cut to ``max_image_side`` (0: full size); the answer read is the ``<answer>`` region
    (else the completion, with ``fallback_to_completion``), at most ``max_answer_chars``. One score per input;
    NaN where the request failed or the reply held no grade (the mixer scores it 0 and counts it).
    """
    s = settings({k: v for k, v in locals().items() if k != "inputs"})
    client, store = _client(s), _cache(s.cache)
    # A prompt's G completions share its image objects and often an answer: each distinct request is built and
    # hashed once (resizing and hashing an image take milliseconds), and asked once.
    keys: list[str | None] = []  # None: no answer to grade (no <answer> without the fallback, or empty): 0
    todo: dict[str, ChatRequest] = {}
    built: dict[tuple, str] = {}
    for inp in inputs:
        answer = answer_region(inp.completion, s.fallback_to_completion)
        if not answer:
            keys.append(None)
            continue
        seen = (inp.problem, inp.answer, answer, tuple(map(id, inp.images)))
        if seen not in built:
            request = judge_request(inp, s)
            built[seen] = request_key(CACHE_STAGE, client.identity, s.template, request)
            todo.setdefault(built[seen], request)
        keys.append(built[seen])
    texts = _cached(store, list(todo))
    todo = {k: r for k, r in todo.items() if k not in texts}
    errors: list[str] = []
    todo_keys = list(todo)

    def on_reply(i: int, reply: ChatReply) -> None:
        if reply.ok:
            texts[todo_keys[i]] = reply.text
            _store(store, todo_keys[i], reply.text)  # as it arrives: a call cut by the time limit keeps what it got
        else:
            errors.append(reply.error or "no text")

    client.chat(list(todo.values()), on_reply=on_reply)
    grades = [parse_grade(texts[k], s.max_grade) if k in texts else None for k in keys if k is not None]
    unreadable = [texts[k] for k, g in zip(filter(None, keys), grades, strict=True) if g is None and k in texts]
    if errors or unreadable:
        _warn(s.base_url, f"judge at {s.base_url}: {len(errors)} of {len(todo)} requests failed"
              f"{f' (first: {errors[0]})' if errors else ''}, {len(unreadable)} of {len(grades)} replies held no "
              f"grade{f' (first: {unreadable[0][:200]!r})' if unreadable else ''}; they score 0 and count in "
              "reward/parse_failures")
    graded = iter(grades)
    return [0.0 if k is None else _score(next(graded)) for k in keys]


def _score(grade: float | None) -> float:
    return math.nan if grade is None else grade  # NaN: the mixer scores 0 and counts a failure


def _cached(store: ReplyCache | None, keys: list[str]) -> dict[str, str]:
    """Replies the cache holds for ``keys``; none when it cannot be read (e.g. locked by another process)."""
    if store is None:
        return {}
    try:
        return store.get_many(keys)
    except sqlite3.Error as err:
        _warn(f"read {store.path}", f"judge: cannot read the reply cache {store.path} ({err}); asking the endpoint")
        return {}


def _store(store: ReplyCache | None, key: str, text: str) -> None:
    """Keep a reply; a cache that cannot be written costs a repeated request later, never the score."""
    if store is None:
        return
    try:
        store.put_many(CACHE_STAGE, [(key, text)])
    except sqlite3.Error as err:
        _warn(f"write {store.path}", f"judge: cannot write the reply cache {store.path} ({err})")


def _check_judge_params(params: Mapping[str, Any]) -> None:
    settings(params)


judge.batched = True  # the mixer calls it once per step with every completion it scores, in this process
judge.check_params = _check_judge_params  # values, the base_url and the prompt file, when the mixer is built
_DEFAULTS = {k: v.default for k, v in inspect.signature(judge).parameters.items() if k != "inputs"}


def _warn(where: str, message: str) -> None:
    # Once per endpoint (or cache file) at WARNING: a dead server would repeat it every step. Then at DEBUG.
    level = logging.DEBUG if where in _WARNED else logging.WARNING
    _WARNED.add(where)
    logger.log(level, message)
