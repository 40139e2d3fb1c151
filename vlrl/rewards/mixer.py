"""The reward mixer: scores a batch of completions with the configured weighted reward terms.

Which terms score a row
-----------------------
1. ``RewardConfig.per_task[row.task]`` if the task has an entry, else ``RewardConfig.terms``. Each term is
   ``{"name": ..., "weight": ..., "params": {...}}`` (name and params as in :func:`get_reward`).
2. Then the row's own ``reward`` JSON field (passed as ``row_specs[i]``) may adjust them. Keys, applied
   in this order and freely combined:

   - ``{"terms": [{name, weight, params}, ...]}`` replaces the row's terms outright;
   - ``{"weights": {"format": 0.2}}`` re-weights terms, keyed by term name (every term of that name) or
     component key (``"format#2"``, one term);
   - ``{"params": {"iou": {"threshold": 0.5}}}`` merges params into terms, keyed the same way.

   A key naming no term, an unknown reward or a param the reward does not take is a ValueError naming
   the row: a bad override is a data bug, not something to average away.

   A row spec in V-Triune's ``reward_model`` style (it has a ``verifier`` key) is translated first by
   :func:`vlrl.rewards.vtriune.from_vtriune`.

The total
---------
``total[i] = Σ weight · score`` over the terms that applied to row i (a term returning None is skipped:
it contributes 0 and its component is NaN for that row). Penalties (``overlong``, ``repetition``) return
the amount of penalty in [0, 1] and take a negative weight. With ``normalize_weights`` the sum is divided
by the summed *positive* weights of the applied terms, so a row's total is at most 1. Component keys are
term names; a name repeated within one row's terms gets ``#2``, ``#3``, ... in order.

Failures and timeouts
---------------------
Every call runs through :mod:`vlrl.rewards.runner`: in ``workers`` processes (``RewardConfig.workers``;
0 = in this process) under a per-call time limit (``timeout_s``). A call that raises or returns a
non-number scores 0.0 and counts in ``Scores.parse_failures``; one over the limit scores 0.0 and counts in
``Scores.timeouts``. Both are logged as ``reward/parse_failures`` and ``reward/timeouts``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from vlrl.config import RewardConfig, RewardTerm
from vlrl.rewards.base import RewardFn, RewardInput, check_params, get_reward
from vlrl.rewards.batched import is_batched
from vlrl.rewards.runner import FAILED, TIMEOUT, RewardCall, RewardPool, run_batch, run_call, run_inline
from vlrl.rewards.vtriune import from_vtriune, is_vtriune

logger = logging.getLogger(__name__)

_TERM_KEYS = frozenset({"name", "weight", "params"})
_MAIN_MODULES = frozenset({"__main__", "__mp_main__"})
_ROW_SPEC_KEYS = frozenset({"terms", "weights", "params"})


@dataclass
class Scores:
    """Rewards of N completions."""

    total: torch.Tensor  # [N] float32, weighted sum of the applied components
    components: dict[str, torch.Tensor]  # key -> [N] float32, NaN where the term did not apply to that row
    data_sources: list[str]  # [N]
    parse_failures: int = 0  # reward calls that raised or returned a non-number
    failures: dict[str, int] = field(default_factory=dict)  # component key -> failed calls
    timeouts: int = 0  # reward calls cut by the time limit
    timeout_counts: dict[str, int] = field(default_factory=dict)  # component key -> timed-out calls
    # component key -> calls that returned None (the term does not apply to that row, e.g. a `number` term
    # whose ground truth is no number): counted so a data problem shows in the metrics, not as a silent NaN
    not_applicable: dict[str, int] = field(default_factory=dict)

    def metrics(self, prefix: str = "reward") -> dict[str, float]:
        """Flat metrics: ``{prefix}/mean``, ``{prefix}/{component}`` (mean over rows where it applied),
        the same per data source as ``{prefix}/{source}/mean`` and ``{prefix}/{source}/{component}``
        (an empty source is named ``unknown``), ``{prefix}/parse_failures`` and ``{prefix}/timeouts``.
        Components that applied to no row of a group are left out rather than logged as NaN."""
        out = {f"{prefix}/parse_failures": float(self.parse_failures), f"{prefix}/timeouts": float(self.timeouts)}
        if self.not_applicable:  # only when some term skipped a row, so ordinary runs log the same keys as before
            out[f"{prefix}/not_applicable"] = float(sum(self.not_applicable.values()))
        if self.total.numel() == 0:
            return out
        out.update(self._group_metrics(prefix, torch.ones_like(self.total, dtype=torch.bool)))
        sources = [s or "unknown" for s in self.data_sources]
        for source in sorted(set(sources)):
            mask = torch.tensor([s == source for s in sources], dtype=torch.bool)
            out.update(self._group_metrics(f"{prefix}/{source}", mask))
        return out

    @staticmethod
    def concat(parts: Sequence[Scores]) -> Scores:
        """The scores of ``parts`` one after another (e.g. every data-parallel rank's, in rank order). A
        component some part lacks is NaN on its rows, as a term that did not apply."""
        keys = list(dict.fromkeys(k for part in parts for k in part.components))
        nan = lambda n: torch.full((n,), math.nan, dtype=torch.float32)  # noqa: E731
        components = {k: torch.cat([part.components.get(k, nan(len(part.total))) for part in parts]) for k in keys}

        def add(dicts):
            out: dict[str, int] = {}
            for d in dicts:
                for k, v in d.items():
                    out[k] = out.get(k, 0) + v
            return out

        return Scores(
            total=torch.cat([part.total for part in parts]), components=components,
            data_sources=[s for part in parts for s in part.data_sources],
            parse_failures=sum(part.parse_failures for part in parts), failures=add(p.failures for p in parts),
            timeouts=sum(part.timeouts for part in parts), timeout_counts=add(p.timeout_counts for p in parts),
            not_applicable=add(p.not_applicable for p in parts),
        )

    def _group_metrics(self, prefix: str, mask: torch.Tensor) -> dict[str, float]:
        out = {f"{prefix}/mean": self.total[mask].mean().item()}
        for key, values in self.components.items():
            mean = torch.nanmean(values[mask]).item()
            if not math.isnan(mean):
                out[f"{prefix}/{key}"] = mean
        return out


def call_reward(fn: RewardFn, inp: RewardInput, params: Mapping,
                timeout: float | None = None) -> tuple[float | None, bool]:
    """Run one reward function in this process, safely: returns (score or None, failed). An exception, a
    non-numeric or non-finite value, or running past ``timeout`` seconds gives (0.0, True)."""
    outcome = run_call(RewardCall(name="", inp=inp, params=params, fn=fn), timeout)
    return outcome.value, outcome.status != "ok"


def component_keys(terms: Sequence[RewardTerm]) -> list[str]:
    """Component key of each term: its name, with ``#2``, ``#3``, ... on repeats."""
    seen: dict[str, int] = {}
    keys = []
    for term in terms:
        seen[term.name] = seen.get(term.name, 0) + 1
        keys.append(term.name if seen[term.name] == 1 else f"{term.name}#{seen[term.name]}")
    return keys


class RewardMixer:
    """Scores completions with the weighted reward terms of a :class:`~vlrl.config.RewardConfig`.

    Construction resolves every reward and checks its params, so a typo fails before training starts.
    """

    def __init__(self, config: RewardConfig, rewards: Mapping[str, RewardFn] | Sequence[RewardFn] | None = None):
        """``rewards``: reward functions given as Python objects, by the name the terms use (a list is named by
        each function's ``__name__``). They take precedence over the registry for this mixer only. A plain
        function gets one completion (``fn(inp, **params)``); a :class:`~vlrl.rewards.batched.BatchReward`
        (e.g. :func:`~vlrl.rewards.batched.trl_reward`) gets the step's list. Where they run: see ``_call``."""
        self.normalize_weights = bool(config.normalize_weights)
        if config.workers < 0 or config.timeout_s < 0:
            raise ValueError(f"reward.workers and reward.timeout_s must be >= 0, got {config.workers}, "
                             f"{config.timeout_s}")
        self.workers, self.timeout = int(config.workers), float(config.timeout_s) or None
        self._pool: RewardPool | None = None
        self._given = given_rewards(rewards)
        self._fns: dict[str, RewardFn] = dict(self._given)
        self.default_terms = self._parse_terms(config.terms, "reward.terms")
        if not isinstance(config.per_task, Mapping):
            raise ValueError(f"reward.per_task must map task -> list of terms, got {config.per_task!r}")
        self.per_task = {
            task: self._parse_terms(specs, f"reward.per_task.{task}") for task, specs in config.per_task.items()
        }
        self._warned: set[tuple[str, str]] = set()
        # task (None = default) -> (terms, component keys), for rows without an override
        self._base = {task: (terms, component_keys(terms)) for task, terms in
                      [(None, self.default_terms), *self.per_task.items()]}
        named = {t.name for terms, _ in self._base.values() for t in terms}
        if unused := sorted(set(self._given) - named):
            logger.warning("rewards %s are given but no term of reward.terms or reward.per_task names them: only "
                           "a row's own reward override can use them", unused)

    def terms_for(self, task: str, row_spec: Mapping | None = None) -> list[RewardTerm]:
        """The terms scoring a row of ``task`` after applying ``row_spec`` (the row's ``reward`` field;
        see the module docstring). Returns fresh RewardTerm objects; raises ValueError on a bad spec."""
        base = self.per_task.get(task, self.default_terms)
        if not row_spec:
            return [_copy(t) for t in base]
        if not isinstance(row_spec, Mapping):
            raise ValueError(f"row reward spec must be a mapping, got {row_spec!r}")
        if is_vtriune(row_spec):
            row_spec = from_vtriune(row_spec)
        unknown = sorted(set(row_spec) - _ROW_SPEC_KEYS)
        if unknown:
            raise ValueError(f"row reward spec: unknown keys {unknown}; expected some of {sorted(_ROW_SPEC_KEYS)}")
        if "terms" in row_spec:
            terms = self._parse_terms(row_spec["terms"], "row reward.terms")
        else:
            terms = [_copy(t) for t in base]
        keys = component_keys(terms)
        for key, weight in _mapping(row_spec.get("weights"), "weights").items():
            for term in _select(terms, keys, key, "weights"):
                term.weight = _weight(weight, f"row reward.weights.{key}")
        for key, params in _mapping(row_spec.get("params"), "params").items():
            for term in _select(terms, keys, key, "params"):
                term.params = {**term.params, **_mapping(params, f"params.{key}")}
                self._check(term, f"row reward.params.{key}")
        return terms

    def score(self, inputs: Sequence[RewardInput], row_specs: Sequence[Mapping | None] | None = None) -> Scores:
        """Score N completions. ``row_specs[i]`` is row i's ``reward`` override or None.

        Returns :class:`Scores` with ``total`` [N] and one [N] tensor per component key.
        """
        n = len(inputs)
        if row_specs is None:
            row_specs = [None] * n
        if len(row_specs) != n:
            raise ValueError(f"score: {n} inputs but {len(row_specs)} row specs")
        plan: list[tuple[int, str, float]] = []  # one (row, component key, weight) per call
        calls: list[RewardCall] = []
        for i, (inp, spec) in enumerate(zip(inputs, row_specs, strict=True)):
            try:
                if spec:
                    terms = self.terms_for(inp.task, spec)
                    keys = component_keys(terms)
                else:  # rows without an override share their task's terms (read-only here): no copy per row
                    terms, keys = self._base.get(inp.task, self._base[None])
            except ValueError as err:
                raise ValueError(f"row {i} (task {inp.task!r}, source {inp.data_source!r}): {err}") from err
            for key, term in zip(keys, terms, strict=True):
                plan.append((i, key, term.weight))
                calls.append(self._call(term, inp))
        outcomes = self._run(calls)

        totals, positive = [0.0] * n, [0.0] * n
        components: dict[str, list[float]] = {}
        failures: dict[str, int] = {}
        timeouts: dict[str, int] = {}
        skipped: dict[str, int] = {}
        for (i, key, weight), call, outcome in zip(plan, calls, outcomes, strict=True):
            values = components.setdefault(key, [math.nan] * n)
            if outcome.status == FAILED:
                failures[key] = failures.get(key, 0) + 1
                self._warn_once(key, call.inp, "failed")
            elif outcome.status == TIMEOUT:
                timeouts[key] = timeouts.get(key, 0) + 1
                self._warn_once(key, call.inp, "timed out")
            if outcome.value is None:
                skipped[key] = skipped.get(key, 0) + 1
                continue
            values[i] = outcome.value
            totals[i] += weight * outcome.value
            positive[i] += max(weight, 0.0)
        if self.normalize_weights:
            totals = [t / w if w > 0 else 0.0 for t, w in zip(totals, positive, strict=True)]
        return Scores(
            total=torch.tensor(totals, dtype=torch.float32),
            components={k: torch.tensor(v, dtype=torch.float32) for k, v in components.items()},
            data_sources=[inp.data_source for inp in inputs],
            parse_failures=sum(failures.values()),
            failures=failures,
            timeouts=sum(timeouts.values()),
            timeout_counts=timeouts,
            not_applicable=skipped,
        )

    def close(self) -> None:
        """Stop the worker processes (they also stop with this process)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _call(self, term: RewardTerm, inp: RewardInput) -> RewardCall:
        """Where a call runs. In this process: with ``reward.workers=0``; batched rewards; functions a worker
        could not import (defined in the main script or a notebook, lambdas, closures, methods). In a worker:
        registered names (with the module that registers them), "module:function" and file specs, and a given
        function that its module holds under its own name (sent as "module:function")."""
        fn = self._fns[term.name]
        if term.name in self._given:
            spec = importable_spec(fn)
            if self.workers == 0 or spec is None or is_batched(fn):
                return RewardCall(term.name, inp, term.params, fn=fn)
            return RewardCall(spec, _for_worker(inp), term.params)
        module = getattr(fn, "__module__", None)
        if self.workers == 0 or module in _MAIN_MODULES or is_batched(fn):
            # In process: also rewards defined in the main script or a notebook, which a worker cannot
            # import (its own __main__ is a different module).
            return RewardCall(term.name, inp, term.params, fn=fn)
        # A registered name travels with its defining module so a worker can import it; "module:fn" and
        # file specs resolve themselves.
        return RewardCall(term.name, _for_worker(inp), term.params, module=None if ":" in term.name else module)

    def _run(self, calls: list[RewardCall]):
        outcomes: list = [None] * len(calls)
        batched = [i for i, c in enumerate(calls) if c.fn is not None and is_batched(c.fn)]
        for indices, outcome_list in self._run_batched(calls, batched):
            for i, outcome in zip(indices, outcome_list, strict=True):
                outcomes[i] = outcome
        done = set(batched)
        local = [i for i, c in enumerate(calls) if c.fn is not None and i not in done]
        remote = [i for i, c in enumerate(calls) if c.fn is None]
        if remote:
            if self._pool is None:
                self._pool = RewardPool(self.workers, self.timeout)
            for i, outcome in zip(remote, self._pool.run([calls[i] for i in remote]), strict=True):
                outcomes[i] = outcome
        for i, outcome in zip(local, run_inline([calls[i] for i in local], self.timeout), strict=True):
            outcomes[i] = outcome
        return outcomes

    def _run_batched(self, calls: list[RewardCall], indices: list[int]):
        """One call per (reward, params) for the batched rewards' calls: yields (call indices, outcomes)."""
        groups: dict[tuple, list[int]] = {}
        for i in indices:
            c = calls[i]
            groups.setdefault((c.name, json.dumps(c.params, sort_keys=True, default=repr)), []).append(i)
        for members in groups.values():
            first = calls[members[0]]
            yield members, run_batch(first.fn, [calls[i].inp for i in members], first.params, self.timeout)

    def _parse_terms(self, specs: object, where: str) -> list[RewardTerm]:
        if not isinstance(specs, (list, tuple)):
            raise ValueError(f"{where} must be a list of {{name, weight, params}}, got {specs!r}")
        terms = []
        for i, spec in enumerate(specs):
            term = _to_term(spec, f"{where}[{i}]")
            self._check(term, f"{where}[{i}] ({term.name!r})")
            terms.append(term)
        return terms

    def _check(self, term: RewardTerm, where: str) -> None:
        """Resolve the term's reward (cached by name) and check its params; ValueError naming ``where``."""
        try:
            if term.name not in self._fns:
                self._fns[term.name] = get_reward(term.name)
            check_params(self._fns[term.name], term.params)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err

    def _warn_once(self, key: str, inp: RewardInput, what: str) -> None:
        # One warning per component and kind; the rest are only counted, to keep logs readable.
        if (key, what) not in self._warned:
            self._warned.add((key, what))
            metric = "reward/timeouts" if what == "timed out" else "reward/parse_failures"
            logger.warning(
                "reward %r %s on a row of task %r (source %r); further cases are only counted in %s. "
                "Set logging to DEBUG for tracebacks.", key, what, inp.task, inp.data_source, metric,
            )


def _for_worker(inp: RewardInput) -> RewardInput:
    """``inp`` without its images: pixels would cost a pickle per call, and only in-process rewards (the judge)
    look at them."""
    return dataclasses.replace(inp, images=()) if inp.images else inp


def _to_term(spec: object, where: str) -> RewardTerm:
    if isinstance(spec, RewardTerm):
        spec = {"name": spec.name, "weight": spec.weight, "params": spec.params}
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: a term must be a mapping {{name, weight, params}}, got {spec!r}")
    unknown = sorted(set(spec) - _TERM_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; a term has {sorted(_TERM_KEYS)}")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: 'name' must be a non-empty string, got {name!r}")
    params = spec.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ValueError(f"{where} ({name!r}): 'params' must be a mapping, got {params!r}")
    return RewardTerm(name=name, weight=_weight(spec.get("weight", 1.0), f"{where} ({name!r})"), params=dict(params))


def _copy(term: RewardTerm) -> RewardTerm:
    return RewardTerm(name=term.name, weight=term.weight, params=dict(term.params))


def _weight(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: weight must be a finite number, got {value!r}")
    return float(value)


def _mapping(value: object, where: str) -> Mapping:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"row reward {where} must be a mapping, got {value!r}")
    return value


def _select(terms: list[RewardTerm], keys: list[str], key: str, where: str) -> list[RewardTerm]:
    """The terms a row-override key names: by component key if it is one, else every term of that name."""
    if key in keys and "#" in key:
        return [terms[keys.index(key)]]
    chosen = [t for t in terms if t.name == key]
    if not chosen:
        raise ValueError(f"row reward {where}: {key!r} names no term of this row; terms: {keys}")
    return chosen


def given_rewards(rewards: Mapping[str, RewardFn] | Sequence[RewardFn] | None) -> dict[str, RewardFn]:
    """``rewards`` as {name: function}, checked: names are non-empty, without ':', and functions callable."""
    if rewards is None:
        return {}
    if not isinstance(rewards, Mapping):
        if isinstance(rewards, str) or not isinstance(rewards, Sequence):
            raise ValueError(f"rewards must be a mapping name -> function or a list of functions, got {rewards!r}")
        named: dict[str, RewardFn] = {}
        for fn in rewards:
            name = getattr(fn, "__name__", None)
            if not name or name == "<lambda>":
                raise ValueError(f"reward {fn!r} has no usable __name__: pass rewards={{'name': fn}}")
            if name in named:
                raise ValueError(f"two rewards are named {name!r}: pass rewards={{'name': fn, ...}}")
            named[name] = fn
        rewards = named
    for name, fn in rewards.items():
        if not isinstance(name, str) or not name or ":" in name:
            raise ValueError(f"reward name {name!r}: must be a non-empty string without ':'")
        if not callable(fn):
            raise ValueError(f"reward {name!r}: {fn!r} is not callable")
    return dict(rewards)


def importable_spec(fn: RewardFn) -> str | None:
    """"module:function" when a worker process can import ``fn`` by that name (its module, not the main script,
    holds it under its own name), else None."""
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or module in _MAIN_MODULES or not name.isidentifier():
        return None
    try:
        held = getattr(importlib.import_module(module), name, None)
    except Exception:
        return None
    return f"{module}:{name}" if held is fn else None
