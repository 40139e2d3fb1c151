"""Rewards scored a batch at a time, and the adapter for rewards written for TRL's GRPOTrainer.

vlrl's own rewards take one completion (``fn(inp: RewardInput, **params)``). Some rewards are better called
once for many completions: a reward written for TRL (``fn(prompts, completions, **columns) -> list``), a model
that scores a batch in one forward, a judge that sends concurrent requests. A :class:`BatchReward` wraps such
a function; the mixer recognises it (``batched = True``) and calls it once per step for all the completions
its term scores (once per distinct params, when rows override them), in the trainer's process.

The mixer's failure accounting still holds per completion: an entry that is not a finite number (nor
None) scores 0.0 and counts as failed; a call that raises, or returns a list of the wrong length, fails
every completion it was given; the call runs under a time limit of ``reward.timeout_s`` per completion
in it, and a call over it counts every completion as timed out.

TRL's contract (as documented for its GRPOTrainer's ``reward_funcs``): the function receives the keyword
arguments ``prompts`` and ``completions`` (lists, one entry per completion) plus every other dataset
column as a list of the same length, and returns a list of floats, where None means "does not apply to
this sample". :func:`trl_reward` feeds it from vlrl's rows:

- ``prompts``: each row's ``problem`` (the question as the dataset holds it); ``completions``: the text;
  with ``conversational=True`` both as chat messages (``[{"role": "user", "content": ...}]`` and
  ``[{"role": "assistant", "content": ...}]``), TRL's conversational format;
- columns: ``answer``, ``task``, ``data_source``, ``image_sizes``, ``images`` (the row's PIL images, in the
  trainer; empty where scored offline) and every key of the row's ``meta`` (where a
  dataset's own extra columns are kept), renamed by ``columns={"solution": "answer"}`` where a function
  expects another name (the column ``solution`` then holds the row's ``answer``);
- ``completion_ids`` and ``trainer_state`` are not passed: vlrl's rewards see text only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vlrl.rewards.base import RewardInput

# Keyword names TRL gives a reward function besides the dataset's columns.
_TRL_RESERVED = frozenset({"prompts", "completions", "completion_ids", "trainer_state"})


class BatchReward:
    """A reward that scores a list of completions in one call: ``fn(inputs: list[RewardInput], **params)``
    returns one ``float | None`` per input. Name it in the reward mix like any reward (pass it to
    ``vlrl.Trainer(rewards={...})`` or ``vlrl.RewardMixer(..., rewards={...})``).

    >>> lengths = BatchReward(lambda inputs: [min(1.0, len(i.completion) / 10) for i in inputs])
    >>> lengths([RewardInput("abcde", "", "open")])
    [0.5]
    """

    batched = True

    def __init__(self, fn: Callable[..., Sequence[float | None]], name: str | None = None):
        self.fn = fn
        self.__name__ = name or getattr(fn, "__name__", type(fn).__name__)
        self.__qualname__ = getattr(fn, "__qualname__", self.__name__)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__doc__ = getattr(fn, "__doc__", None) or type(self).__doc__

    def __call__(self, inputs: Sequence[RewardInput], **params: Any) -> list[float | None]:
        return list(self.fn(list(inputs), **params))

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Params are passed through to the function; it says what it accepts by raising when called."""

    def __repr__(self) -> str:
        return f"BatchReward({self.__qualname__})"


class TRLReward(BatchReward):
    """A function written for TRL's GRPOTrainer, scoring vlrl completions unchanged (see the module docstring).
    Made by :func:`trl_reward`."""

    def __init__(self, fn: Callable[..., Sequence[float | None]], columns: Mapping[str, str] | None = None,
                 conversational: bool = False, name: str | None = None):
        super().__init__(fn, name)
        self.columns = dict(columns or {})
        bad = sorted(set(self.columns) & _TRL_RESERVED)
        if bad:
            raise ValueError(f"trl_reward columns: {bad} are names TRL itself passes; choose other column names")
        self.conversational = conversational

    def __call__(self, inputs: Sequence[RewardInput], **params: Any) -> list[float | None]:
        if self.conversational:
            prompts: list = [[{"role": "user", "content": i.problem}] for i in inputs]
            completions: list = [[{"role": "assistant", "content": i.completion}] for i in inputs]
        else:
            prompts, completions = [i.problem for i in inputs], [i.completion for i in inputs]
        return list(self.fn(prompts=prompts, completions=completions, **trl_columns(inputs, self.columns),
                            **params))


def trl_columns(inputs: Sequence[RewardInput], rename: Mapping[str, str] | None = None) -> dict[str, list]:
    """The dataset columns a TRL reward receives for ``inputs``: one list per column, an entry per input. A
    meta key some rows lack is None on those rows. ``rename`` maps a column name the function expects to the
    column holding it (``{"solution": "answer"}``).

    >>> trl_columns([RewardInput("x", "4", "count", meta={"level": 2})], {"solution": "answer"})["solution"]
    ['4']
    """
    base = {"answer": [i.answer for i in inputs], "task": [i.task for i in inputs],
            "data_source": [i.data_source for i in inputs],
            "image_sizes": [[list(s) for s in i.image_sizes] for i in inputs],
            "images": [list(i.images) for i in inputs]}
    meta_keys = dict.fromkeys(k for i in inputs for k in i.meta)
    out = {k: [i.meta.get(k) for i in inputs] for k in meta_keys if k not in base and k not in _TRL_RESERVED}
    out.update(base)
    for new, old in (rename or {}).items():
        if old not in out:
            raise ValueError(f"trl_reward columns: {new!r} -> {old!r}, but there is no column {old!r}; columns: "
                             f"{sorted(out)}")
        out[new] = out[old]
    return out


def trl_reward(fn: Callable[..., Sequence[float | None]] | None = None, *, columns: Mapping[str, str] | None = None,
               conversational: bool = False, name: str | None = None):
    """Adapt a reward function written for TRL's GRPOTrainer (``fn(prompts, completions, **columns) ->
    list[float | None]``) to vlrl, unchanged. Use as ``trl_reward(fn)`` or as a decorator ``@trl_reward`` /
    ``@trl_reward(columns={"solution": "answer"})``.

    >>> @trl_reward(columns={"solution": "answer"})
    ... def exact(completions, solution, **kwargs):
    ...     return [1.0 if c.strip() == s else 0.0 for c, s in zip(completions, solution)]
    >>> exact([RewardInput(" 4", "4", "count"), RewardInput("5", "4", "count")])
    [1.0, 0.0]
    """
    if fn is None:
        return lambda f: TRLReward(f, columns, conversational, name)
    return TRLReward(fn, columns, conversational, name)


def is_batched(fn: object) -> bool:
    """Does the mixer call ``fn`` with a list of inputs (a :class:`BatchReward` or any callable marked
    ``batched = True``)?"""
    return getattr(fn, "batched", False) is True
