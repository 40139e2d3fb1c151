"""The reward contract: what a reward function receives, the registry that names rewards, and the
answer-tag helpers every verifier shares.

A reward function is a plain callable ``fn(inp: RewardInput, **params) -> float | None``: a score in
[0, 1], or ``None`` when the reward does not apply to this row. Rewards are named in the registry with
:func:`register_reward`; :func:`get_reward` also loads user functions from ``"pkg.module:function"`` or
``"path/to/file.py:function"``.

Penalties (overlong, repetition) are rewards too: they return the *amount* of penalty in [0, 1] and are
given a negative weight in the mixer.

Rewards read untrusted model output. They return 0.0 for malformed output rather than raising; when one
does raise (a bug, bad ground truth, missing image sizes), the mixer scores it 0.0 and counts it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RewardFn = Callable[..., "float | None"]


@dataclass(frozen=True)
class RewardInput:
    """One completion and the parts of its dataset row a reward may look at."""

    completion: str  # decoded completion text, special tokens already stripped
    answer: str  # ground truth from the row: a number, a letter, text, or JSON boxes
    task: str  # math, mcq, count, colour, ocr, grounding, detection, open, ...
    data_source: str = ""
    image_sizes: tuple = ()  # ((w, h), ...) original image sizes in pixels
    resized_sizes: tuple = ()  # ((w, h), ...) sizes of the model input after resizing
    meta: Mapping = field(default_factory=dict)  # the row's free-form meta JSON
    progress: float = 0.0  # training progress step / total_steps in [0, 1] (for schedules)
    num_tokens: int | None = None  # completion length in tokens, when the caller knows it
    max_tokens: int | None = None  # the rollout's max_new_tokens, when the caller knows it
    problem: str = ""  # the row's question as the dataset holds it (TRL-style rewards get it as `prompts`)
    # Where the completion was produced, when the caller knows it (training does): what makes the draw of the
    # `random` control reproducible (vlrl.rewards.spurious).
    row_id: str = ""  # the dataset row's id
    step: int | None = None  # the train step, numbered as metrics.jsonl numbers it (first step: 1)
    seed: int | None = None  # trainer.seed
    # The row's decoded images (PIL, original size), for rewards that look at them (``judge``). Only rewards run
    # in the trainer's process see them: the mixer strips them from calls sent to worker processes, and
    # completions.jsonl never holds them (``vlrl rewards score`` inputs have none).
    images: tuple = field(default=(), compare=False, repr=False)


_REGISTRY: dict[str, RewardFn] = {}
# Files loaded by path, keyed by resolved path, so a file is executed once however often it is named.
_LOADED_FILES: dict[Path, Any] = {}


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator registering ``fn`` under ``name``; returns ``fn`` unchanged.

    Names may not contain ':' (reserved for ``module:function`` specs). Registering a different function
    under a taken name is an error; re-registering the same qualified function (a module reload) is not.
    """
    if not name or ":" in name:
        raise ValueError(f"invalid reward name {name!r}: must be non-empty and contain no ':'")

    def decorator(fn: RewardFn) -> RewardFn:
        old = _REGISTRY.get(name)
        if old is not None and _qualname(old) != _qualname(fn):
            raise ValueError(f"reward name {name!r} is already registered to {_qualname(old)}")
        _REGISTRY[name] = fn
        return fn

    return decorator


def _qualname(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def registered_rewards() -> list[str]:
    """Sorted names of all registered rewards."""
    return sorted(_REGISTRY)


def get_reward(name: str) -> RewardFn:
    """Resolve a reward spec to its function.

    ``name`` is a registered name, ``"pkg.module:function"`` (imported), or ``"path/to/file.py:function"``
    (executed once from that file, relative paths against the working directory). Raises ValueError for an
    unknown name, a missing module/file/attribute, or an attribute that is not callable.
    """
    if ":" not in name:
        if name in _REGISTRY:
            return _REGISTRY[name]
        raise ValueError(f"unknown reward {name!r}; registered rewards: {', '.join(registered_rewards())}")
    # Split at the last colon: a Windows drive letter ("C:\\x.py:fn") keeps its colon in the path part.
    target, _, attr = name.rpartition(":")
    if not target or not attr:
        raise ValueError(f"reward spec {name!r} must look like 'module:function' or 'file.py:function'")
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _load_file(target, name)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as err:
            raise ValueError(f"reward spec {name!r}: cannot import module {target!r}: {err}") from err
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise ValueError(f"reward spec {name!r}: {target!r} has no callable {attr!r}")
    return fn


def _load_file(path_text: str, spec_text: str) -> Any:
    path = Path(path_text).expanduser().resolve()
    if path in _LOADED_FILES:
        return _LOADED_FILES[path]
    if not path.is_file():
        raise ValueError(f"reward spec {spec_text!r}: file {path} does not exist")
    # A unique module name per path, registered in sys.modules so pickling by reference and dataclasses
    # defined in the file work.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"vlrl_user_reward_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"reward spec {spec_text!r}: cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[module_name]
        raise
    _LOADED_FILES[path] = module
    return module


def check_params(fn: RewardFn, params: Mapping[str, Any]) -> None:
    """Raise ValueError when ``params`` cannot be passed to ``fn``.

    A reward may define its own check as an attribute ``fn.check_params(params)`` (the router
    ``accuracy`` does); otherwise the names are checked against ``fn``'s signature.
    """
    custom = getattr(fn, "check_params", None)
    if custom is not None:
        custom(params)
        return
    accepted = accepted_params(fn)
    if accepted is None:
        return
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"unknown params {unknown} for reward {_qualname(fn)}; accepted: {sorted(accepted)}")


_ACCEPTED: dict[Any, frozenset[str] | None] = {}


def accepted_params(fn: RewardFn) -> frozenset[str] | None:
    """Keyword names ``fn`` takes after its input, or None when it takes any (``**kwargs``) or has no
    readable signature. Cached: the router asks for every call."""
    try:
        return _ACCEPTED[fn]
    except (KeyError, TypeError):
        pass
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: nothing to check
        result = None
    else:
        parameters = list(signature.parameters.values())
        if any(p.kind == p.VAR_KEYWORD for p in parameters):
            result = None
        else:
            result = frozenset(p.name for p in parameters[1:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    try:
        _ACCEPTED[fn] = result
    except TypeError:  # unhashable callable
        pass
    return result


ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def extract_answer(text: str) -> str | None:
    """Content of the last ``<answer>…</answer>`` in ``text``, stripped; None when there is none.

    The last pair wins because models sometimes restate the tags while reasoning; the opening tag is the
    last one before the final closing tag, so a stray earlier ``<answer>`` does not leak into the answer.

    >>> extract_answer("<think>hmm</think> <answer> red </answer>")
    'red'
    """
    end = text.rfind(ANSWER_CLOSE)
    if end < 0:
        return None
    start = text.rfind(ANSWER_OPEN, 0, end)
    if start < 0:
        return None
    return text[start + len(ANSWER_OPEN):end].strip()


def answer_region(text: str, fallback_to_completion: bool) -> str | None:
    """The text a verifier reads: the tagged answer, else the whole stripped completion when
    ``fallback_to_completion``, else None."""
    answer = extract_answer(text)
    if answer is None and fallback_to_completion:
        return text.strip()
    return answer
