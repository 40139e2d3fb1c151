"""Is `model.path` a checkpoint vlrl can train? Answered from config.json alone, before any slow work.

Without this check a wrong path surfaced only when the weights were loaded — after the dataset was built —
and as transformers' errors: a hub error about repo ids for a local path that does not exist, or the list of
hundreds of config classes for a text-only model.

How a string is read: an existing path is a local checkpoint. A missing one is a hub id only when it has the
hub's form, ``org/name`` — one slash, no leading ``/``, ``.`` or ``~``, no trailing slash, no backslash —
since anything else (``/models/x``, ``./ckpt``, ``runs/a/final``, a bare ``my_model``) can only mean a local
directory, and is reported as missing. A relative ``dir/name`` that is not there has the hub form too: it is
tried on the hub (config.json only, before any weight), and when that fails the error says both what was
looked for locally and what the hub answered.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from vlrl.models.policy import FAMILIES, is_generic, supported_models

# model_type values of the families vlrl.models.policy drives (one module per family), with their names. Any
# other model_type that AutoModelForImageTextToText loads runs in the generic tier (`vlrl.models.generic`).
SUPPORTED_MODEL_TYPES = {model_type: name for model_type, (_, _, name) in FAMILIES.items()}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


class ModelPathError(ValueError):
    """model.path does not name a checkpoint vlrl can train; the message says what is wrong and what would do."""


@dataclass(frozen=True)
class CheckpointInfo:
    model_type: str
    context: int | None  # the language model's max_position_embeddings, None when config.json lacks it
    generic: bool = False  # a model of the generic tier (not one of SUPPORTED_MODEL_TYPES)


def looks_like_hub_id(text: str) -> bool:
    """``org/name``: the only form of a missing path that is tried on the hub."""
    return _HUB_ID.fullmatch(text) is not None


def check_model_path(path: str | Path, key: str = "model.path") -> CheckpointInfo:
    """Read the checkpoint's config.json (a local directory, or a hub id's config.json) and check its model
    type; raise :class:`ModelPathError` naming ``key``, the path and the supported families."""
    text = str(path)
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelPathError(f"{key}={text} is a file; expected an HF-format checkpoint directory "
                                 "(config.json, weights, processor files)")
        config_file = local / "config.json"
        if not config_file.is_file():
            raise ModelPathError(f"{key}={text}: the directory has no config.json, so it is not an HF-format "
                                 "checkpoint (a vlrl run directory holds them under checkpoints/ and final/)")
    elif looks_like_hub_id(text):
        config_file = _hub_config(text, key, local)
    else:
        raise ModelPathError(f"{key}={text}: no checkpoint directory there ({local.resolve()} does not exist); give "
                             "an HF-format checkpoint directory, or a hub id of the form org/name")
    try:
        config = json.loads(Path(config_file).read_text())
    except (OSError, ValueError) as exc:
        raise ModelPathError(f"{key}={text}: cannot read {config_file}: {exc}") from exc
    return checkpoint_info(config, f"{key}={text}")


def checkpoint_info(config: dict, where: str) -> CheckpointInfo:
    """Check a parsed config.json: a family's model_type or one of the generic tier, else an error naming the
    supported families and the generic tier."""
    model_type = config.get("model_type")
    generic = is_generic(model_type)
    if model_type not in SUPPORTED_MODEL_TYPES and not generic:
        kind = "a vision-language model" if "vision_config" in config else "a text-only model (no vision_config)"
        arch = ", ".join(config.get("architectures") or []) or "no architectures listed"
        raise ModelPathError(f"{where} is model_type {model_type!r} ({arch}; {kind}), which vlrl cannot train "
                             "(transformers' AutoModelForImageTextToText has no class for it); supported: "
                             f"{supported_models()}")
    text_config = config.get("text_config") or {}
    context = text_config.get("max_position_embeddings") or config.get("max_position_embeddings")
    return CheckpointInfo(model_type, int(context) if context else None, generic)


def _hub_config(repo_id: str, key: str, local: Path) -> str:
    """The hub checkpoint's config.json (from the local cache, else downloaded: a few KB, no weights)."""
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo_id, "config.json")
    except Exception as exc:  # offline, unknown repo, gated, no network: all end the same way
        raise ModelPathError(
            f"{key}={repo_id}: no such local directory ({local.resolve()}), and as a hub id its config.json "
            f"could not be fetched ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
