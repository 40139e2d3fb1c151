"""Reading V-Triune-style per-row reward specs: the ``reward_model`` object of V-Triune / Orsta data
(Ma et al. 2025, "One RL to See Them All", arXiv 2505.18129).

Such an object names a ``verifier`` and its ``verifier_parm``, and weighs accuracy and format with
``accuracy_ratio`` and ``format_ratio``. :func:`from_vtriune` turns it into this package's row spec,
``{"terms": [...]}``, which the mixer then treats like any other row override:

=======================  =====================================================================================
V-Triune                 here
=======================  =====================================================================================
``verifier: mathverify`` ``math`` (weight ``accuracy_ratio``, default 1) and ``format`` with ``require_think`` and
                         partial credit (weight ``format_ratio``, default 0: no term)
``verifier: detection``  one term per non-zero ``verifier_parm.det_reward_ratio`` entry, weighted
                         ``accuracy_ratio · ratio / Σ ratios`` as V-Triune normalises them:
                         ``iou_max_iou_first`` / ``iou_max_label_first`` → ``detection`` with greedy matching
                         and ``completeness_weight = iou_completeness`` (0 when absent or null); ``map`` → ``map``; ``map50`` / ``map75``
                         → ``map`` at that single threshold. No ratios given: ``detection`` alone. The IoU
                         threshold is the dynamic schedule (the paper's setting); ``format`` as above but
                         without ``require_think``
other names              used as a reward name of this registry (``number``, ``choice``, a ``module:fn``, ...)
``verifier_parm``        V-Triune's runtime keys (``is_training``, ``step``, ``total_steps``, ``image_grid_thw``,
                         ``image_path``) are dropped; ``det_verifier_normalized: true`` (predictions in resized-
                         input pixels) sets ``box_format: qwen2_5_vl``; every other key is passed to the
                         accuracy term as a param (and checked: an unknown one is an error naming the row)
``length_ratio``         null or 0 (as released): no term; any other value is refused (its rule is not known here)
``style``, ``answer``    ignored (descriptive)
``ground_truth``         ignored here: it is the row's ``answer`` (the dataset adapter's job, as is converting
                         V-Triune's 0–1000 normalised ground-truth boxes to original pixels)
=======================  =====================================================================================

Departures: V-Triune multiplies mAP scores by its box-count penalty too; ``map`` here has none (pair it
with ``detection``, which has one). Its label-first greedy matching is read as plain greedy matching.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

VTRIUNE_KEYS = frozenset({"verifier", "verifier_parm", "accuracy_ratio", "format_ratio", "ground_truth",
                          "answer", "style", "length_ratio"})
_RUNTIME_KEYS = frozenset({"is_training", "step", "total_steps", "image_grid_thw", "image_path", "verifier_style",
                           "query"})
_DET_RATIO_KEYS = ("iou_max_iou_first", "iou_max_label_first", "map", "map50", "map75")


def is_vtriune(spec: Mapping) -> bool:
    """True when ``spec`` is a V-Triune ``reward_model`` object (it names a ``verifier``)."""
    return "verifier" in spec


def from_vtriune(spec: Mapping) -> dict:
    """This package's row spec ``{"terms": [...]}`` for a V-Triune ``reward_model`` object (table above).
    Raises ValueError for unknown keys or malformed values."""
    # A parquet struct column has every key any row used, null where a row lacks it: null means absent.
    unknown = sorted(k for k in set(spec) - VTRIUNE_KEYS if spec[k] is not None)
    if unknown:
        raise ValueError(f"V-Triune reward spec: unknown keys {unknown}; expected some of {sorted(VTRIUNE_KEYS)}")
    verifier = spec["verifier"]
    if not isinstance(verifier, str) or not verifier:
        raise ValueError(f"V-Triune reward spec: 'verifier' must be a non-empty string, got {verifier!r}")
    params = spec.get("verifier_parm") or {}
    if not isinstance(params, Mapping):
        raise ValueError(f"V-Triune reward spec: 'verifier_parm' must be an object, got {params!r}")
    accuracy = _ratio(spec, "accuracy_ratio", 1.0)
    fmt = _ratio(spec, "format_ratio", 0.0)
    if _ratio(spec, "length_ratio", 0.0):
        # Later releases' schema has it (null or 0 in the rows seen); a weight for a length term whose
        # exact rule is not published here would be a guess, so a non-zero one is refused, not approximated.
        raise ValueError(f"V-Triune reward spec: length_ratio {spec['length_ratio']!r} is not supported "
                         "(only null or 0)")
    params = {k: v for k, v in params.items() if k not in _RUNTIME_KEYS and v is not None}
    if params.pop("det_verifier_normalized", False):
        params.setdefault("box_format", "qwen2_5_vl")
    # Orsta rows of every verifier carry det_reward_ratio (all null outside detection).
    ratios = params.pop("det_reward_ratio", None)
    if verifier == "mathverify":
        terms = [_term("math", accuracy, params)]
        format_params = {"require_think": True, "partial_credit": True}
    elif verifier == "detection":
        terms = _detection_terms(accuracy, params, ratios)
        format_params = {}
    else:
        terms = [_term(verifier, accuracy, params)]
        format_params = {}
    if fmt:
        terms.append(_term("format", fmt, format_params))
    return {"terms": terms}


def check_vtriune(spec: Mapping) -> dict:
    """The row spec of ``spec`` with every term's reward resolved and its params checked, as the mixer will
    at training time; ValueError naming the problem. Importers call it so a spec the trainer would reject is
    a drop at import, not a crash hours into a run."""
    from vlrl.rewards.base import check_params, get_reward

    translated = from_vtriune(spec)
    for term in translated["terms"]:
        try:
            check_params(get_reward(term["name"]), term["params"])
        except ValueError as err:
            raise ValueError(f"V-Triune reward spec, term {term['name']!r}: {err}") from err
    return translated


def _detection_terms(accuracy: float, params: dict, ratios: Mapping | None) -> list[dict]:
    ratios = ratios or {}
    if not isinstance(ratios, Mapping):
        raise ValueError(f"V-Triune reward spec: 'det_reward_ratio' must be an object, got {ratios!r}")
    unknown = sorted(k for k in set(ratios) - {*_DET_RATIO_KEYS, "iou_completeness"} if ratios[k] is not None)
    if unknown:
        raise ValueError(f"V-Triune reward spec: unknown det_reward_ratio keys {unknown}")
    # Null ratios (how a dataset schema stores absent floats) count as 0, as V-Triune's server reads them.
    weights = {k: _number(ratios.get(k) or 0.0, f"det_reward_ratio.{k}") for k in _DET_RATIO_KEYS}
    total = sum(weights.values())
    box = {k: params[k] for k in ("box_format", "max_boxes") if k in params}
    detection = {"iou_threshold": "dynamic", **params}
    if ratios:  # V-Triune's completeness weight is 0 unless given
        detection["completeness_weight"] = _number(ratios.get("iou_completeness") or 0.0,
                                                   "det_reward_ratio.iou_completeness")
    if total <= 0:
        return [_term("detection", accuracy, detection)]
    terms = []
    iou_weight = weights["iou_max_iou_first"] + weights["iou_max_label_first"]
    if iou_weight:
        terms.append(_term("detection", accuracy * iou_weight / total, {**detection, "match": "greedy"}))
    for key, thresholds in (("map", None), ("map50", [0.5]), ("map75", [0.75])):
        if weights[key]:
            extra = {"iou_thresholds": thresholds} if thresholds else {}
            terms.append(_term("map", accuracy * weights[key] / total, {**box, **extra}))
    return terms


def _term(name: str, weight: float, params: Mapping[str, Any]) -> dict:
    return {"name": name, "weight": weight, "params": dict(params)}


def _ratio(spec: Mapping, key: str, default: float) -> float:
    value = spec.get(key)
    return default if value is None else _number(value, key)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"V-Triune reward spec: {where} must be a finite number, got {value!r}")
    return float(value)
