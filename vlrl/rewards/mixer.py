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

The total
---------
``total[i] = Σ weight · score`` over the terms that applied to row i (a term returning None is skipped:
it contributes 0 and its component is NaN for that row). With ``normalize_weights`` the sum is divided
by the summed weights of the applied terms. Component keys are term names; a name repeated within one
row's terms gets ``#2``, ``#3``, ... in order.

Failures
--------
Each reward call goes through :func:`call_reward`, which turns an exception or a non-finite/non-numeric
value into a score of 0.0 and counts it in ``Scores.parse_failures``. That one function is where a
timeout or a worker process will go later: ``RewardInput`` and params are picklable, and each term keeps
its spec string (``RewardTerm.name``) so a worker can resolve the function again with ``get_reward``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from vlrl.config import RewardConfig, RewardTerm
from vlrl.rewards.base import RewardFn, RewardInput, check_params, get_reward

logger = logging.getLogger(__name__)

_TERM_KEYS = frozenset({"name", "weight", "params"})
_ROW_SPEC_KEYS = frozenset({"terms", "weights", "params"})


@dataclass
class Scores:
    """Rewards of N completions."""

    total: torch.Tensor  # [N] float32, weighted sum of the applied components
    components: dict[str, torch.Tensor]  # key -> [N] float32, NaN where the term did not apply to that row
    data_sources: list[str]  # [N]
    parse_failures: int = 0  # reward calls that raised or returned a non-number
    failures: dict[str, int] = field(default_factory=dict)  # component key -> failed calls

    def metrics(self, prefix: str = "reward") -> dict[str, float]:
        """Flat metrics: ``{prefix}/mean``, ``{prefix}/{component}`` (mean over rows where it applied),
        the same per data source as ``{prefix}/{source}/mean`` and ``{prefix}/{source}/{component}``
        (an empty source is named ``unknown``), and ``{prefix}/parse_failures``. Components that applied
        to no row of a group are left out rather than logged as NaN."""
        out = {f"{prefix}/parse_failures": float(self.parse_failures)}
        if self.total.numel() == 0:
            return out
        out.update(self._group_metrics(prefix, torch.ones_like(self.total, dtype=torch.bool)))
        sources = [s or "unknown" for s in self.data_sources]
        for source in sorted(set(sources)):
            mask = torch.tensor([s == source for s in sources], dtype=torch.bool)
            out.update(self._group_metrics(f"{prefix}/{source}", mask))
        return out

    def _group_metrics(self, prefix: str, mask: torch.Tensor) -> dict[str, float]:
        out = {f"{prefix}/mean": self.total[mask].mean().item()}
        for key, values in self.components.items():
            mean = torch.nanmean(values[mask]).item()
            if not math.isnan(mean):
                out[f"{prefix}/{key}"] = mean
        return out


def call_reward(fn: RewardFn, inp: RewardInput, params: Mapping) -> tuple[float | None, bool]:
    """Run one reward safely: returns (score or None, failed). An exception, a non-numeric or a
    non-finite value gives (0.0, True)."""
    try:
        value = fn(inp, **params)
    except Exception:  # a reward must never take the training step down with it
        logger.debug("reward %r raised", fn, exc_info=True)
        return 0.0, True
    if value is None:
        return None, False
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0, True
    if not math.isfinite(value):
        return 0.0, True
    return value, False


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

    def __init__(self, config: RewardConfig):
        self.normalize_weights = bool(config.normalize_weights)
        self._fns: dict[str, RewardFn] = {}
        self.default_terms = self._parse_terms(config.terms, "reward.terms")
        if not isinstance(config.per_task, Mapping):
            raise ValueError(f"reward.per_task must map task -> list of terms, got {config.per_task!r}")
        self.per_task = {
            task: self._parse_terms(specs, f"reward.per_task.{task}") for task, specs in config.per_task.items()
        }
        self._warned: set[str] = set()

    def terms_for(self, task: str, row_spec: Mapping | None = None) -> list[RewardTerm]:
        """The terms scoring a row of ``task`` after applying ``row_spec`` (the row's ``reward`` field;
        see the module docstring). Returns fresh RewardTerm objects; raises ValueError on a bad spec."""
        base = self.per_task.get(task, self.default_terms)
        if not row_spec:
            return [_copy(t) for t in base]
        if not isinstance(row_spec, Mapping):
            raise ValueError(f"row reward spec must be a mapping, got {row_spec!r}")
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
        totals = [0.0] * n
        components: dict[str, list[float]] = {}
        failures: dict[str, int] = {}
        for i, (inp, spec) in enumerate(zip(inputs, row_specs, strict=True)):
            try:
                terms = self.terms_for(inp.task, spec)
            except ValueError as err:
                raise ValueError(f"row {i} (task {inp.task!r}, source {inp.data_source!r}): {err}") from err
            weighted = applied_weight = 0.0
            for key, term in zip(component_keys(terms), terms, strict=True):
                values = components.setdefault(key, [math.nan] * n)
                value, failed = call_reward(self._fns[term.name], inp, term.params)
                if failed:
                    failures[key] = failures.get(key, 0) + 1
                    self._warn_once(key, inp)
                if value is None:
                    continue
                values[i] = value
                weighted += term.weight * value
                applied_weight += term.weight
            if self.normalize_weights:
                weighted = weighted / applied_weight if applied_weight > 0 else 0.0
            totals[i] = weighted
        return Scores(
            total=torch.tensor(totals, dtype=torch.float32),
            components={k: torch.tensor(v, dtype=torch.float32) for k, v in components.items()},
            data_sources=[inp.data_source for inp in inputs],
            parse_failures=sum(failures.values()),
            failures=failures,
        )

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

    def _warn_once(self, key: str, inp: RewardInput) -> None:
        # One warning per component; the rest are only counted, to keep logs readable.
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(
                "reward %r failed on a row of task %r (source %r); further failures are only counted in "
                "reward/parse_failures. Set logging to DEBUG for tracebacks.", key, inp.task, inp.data_source,
            )


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
