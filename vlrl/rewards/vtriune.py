"""Reading V-Triune-style per-row reward specs (the ``reward_model`` field of V-Triune / Orsta data).

Filled in below; see :func:`from_vtriune`.
"""

from __future__ import annotations

from collections.abc import Mapping


def is_vtriune(spec: Mapping) -> bool:
    """True when ``spec`` is a V-Triune ``reward_model`` dict (it names a ``verifier``)."""
    return "verifier" in spec


def from_vtriune(spec: Mapping) -> dict:
    raise ValueError("V-Triune reward specs are not supported yet")
