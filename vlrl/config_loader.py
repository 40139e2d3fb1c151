"""Load, override, save and document configs built from nested dataclasses (e.g. ``vlrl.config.Config``).

Precedence: dataclass defaults < YAML file (a nested mapping mirroring the dataclasses) < ``key.sub=value``
overrides, applied in order. Values are checked against each field's annotation; unknown keys are errors
that list the valid keys at that level.

Override values are read as YAML (``true``, ``1e-3``, ``[1, 2]``, ``{a: 1}``, ``null``); for a str field the
text is kept as written unless it parses to a string. A YAML mapping given to a section (nested dataclass)
sets only the keys it names; a mapping given to a dict field replaces the whole dict. A dotted path may go
*into* a dict field: ``reward.per_task.count=[{name: number}]`` sets key ``count`` of ``reward.per_task``
and keeps its other keys (missing intermediate dicts are created).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import textwrap
import types
import typing
import warnings
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from vlrl.atomic import write_text_atomic
from vlrl.config import Config


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


class _Loader(yaml.SafeLoader):
    """PyYAML (YAML 1.1) reads ``1e-3`` as a string; learning rates are written that way, so resolve it."""


class _Dumper(yaml.SafeDumper):
    """Shares the loader's resolver so a *string* "1e-3" is saved quoted and loads back as a string."""


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
        list("-+0123456789."),
    )


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # get_type_hints resolves the strings that `from __future__ import annotations` leaves behind.
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) and not typing.get_args(tp) else str(tp).replace("typing.", "")


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _accepts_str(tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_accepts_str(a) for a in typing.get_args(tp))
    return tp is str


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _err(key: str, source: str, message: str) -> ConfigError:
    return ConfigError(f"{key}{f' in {source}' if source else ''}: {message}")


def _type_error(key: str, source: str, tp: Any, value: Any) -> ConfigError:
    return _err(key, source, f"expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it converted (int -> float, mapping -> dataclass)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key, source)
            except ConfigError:
                continue
        raise _type_error(key, source, tp, value)
    if origin is typing.Literal:
        if value not in args:
            raise _err(key, source, f"expected one of {list(args)}, got {value!r}")
        return value
    if _is_section(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _err(key, source, f"expected a mapping of {tp.__name__} keys, got {value!r}")
        return _build(tp, value, key, source)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, source, tp, value)
        elem = args[0] if args and (origin is list or args[-1] is Ellipsis) else Any
        items = [_coerce(v, elem, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if (origin or tp) is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _type_error(key, source, tp, value)
        kt, vt = args or (Any, Any)
        return {_coerce(k, kt, key, source): _coerce(v, vt, f"{key}.{k}", source) for k, v in value.items()}
    # A bool field takes only what YAML made a bool (true/yes/on); bool is an int subclass, so int excludes it.
    if isinstance(tp, type) and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise _type_error(key, source, tp, value)
    return value


def _unknown(key: str, obj: Any, source: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(obj)]
    parent, _, leaf = key.rpartition(".")
    close = difflib.get_close_matches(leaf, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    level = f"under {parent!r}" if parent else "at the top level"
    return _err(f"unknown key {key!r}", source, f"valid keys {level}: {', '.join(names)}{hint}")


def _build(cls: type, mapping: Mapping, key: str, source: str) -> Any:
    try:
        obj = cls()
    except TypeError as e:  # a dataclass with required fields cannot start from defaults
        raise _err(key, source, f"{cls.__name__} needs a default for every field ({e})") from e
    _apply_mapping(obj, mapping, key, source)
    return obj


def _apply_mapping(obj: Any, mapping: Mapping, prefix: str, source: str) -> None:
    hints, names = _hints(type(obj)), {f.name for f in dataclasses.fields(obj)}
    for name, value in mapping.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in names:
            raise _unknown(key, obj, source)
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            _apply_mapping(current, value, key, source)  # sections merge; other fields are replaced
        else:
            setattr(obj, name, _coerce(value, hints[name], key, source))


def _parse_override(text: str, tp: Any, key: str) -> Any:
    try:
        value = _yaml_load(text)
    except yaml.YAMLError as e:
        if _accepts_str(tp):
            return text
        raise ConfigError(f"override {key}={text}: cannot parse value as YAML ({e})") from e
    if _accepts_str(tp) and not isinstance(value, str) and not (value is None and _is_optional(tp)):
        return text  # "strings as-is": `Answer: yes` or `007` stay text for a str field
    return value


def _apply_override(cfg: Any, override: str) -> None:
    key, eq, text = override.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ConfigError(f"override {override!r} is not of the form key.sub=value")
    obj, parts = cfg, key.split(".")
    for i, name in enumerate(parts):
        if not dataclasses.is_dataclass(obj):
            raise ConfigError(f"override {key!r}: {'.'.join(parts[:i])} is a value, not a section")
        if name not in {f.name for f in dataclasses.fields(obj)}:
            raise _unknown(".".join(parts[: i + 1]), obj, "")
        tp, current = _hints(type(obj))[name], getattr(obj, name)
        if i == len(parts) - 1:  # through _apply_mapping so `section={a: 1}` merges like YAML does
            _apply_mapping(obj, {name: _parse_override(text, tp, key)}, ".".join(parts[:i]), "")
            return
        if isinstance(current, dict):
            _set_in_dict(current, parts[i + 1 :], text, tp, key)
            return
        obj = current


def _set_in_dict(d: dict, parts: list[str], text: str, tp: Any, key: str) -> None:
    # Values of a dict[K, V] field are checked against V only one level down; deeper levels are free-form.
    args = typing.get_args(tp)
    elem = args[1] if len(args) == 2 and len(parts) == 1 else Any
    for name in parts[:-1]:
        d = d.setdefault(name, {})
        if not isinstance(d, dict):
            raise ConfigError(f"override {key!r}: {name!r} holds {d!r}, not a mapping")
    d[parts[-1]] = _coerce(_parse_override(text, elem, key), elem, key, "")


def load_config(
    cls: type = Config, yaml_path: str | Path | None = None, overrides: Sequence[str] = (),
    ignore_sections: Collection[str] = (),
) -> Any:
    """Defaults of ``cls``, then the YAML file, then each ``a.b.c=value`` override in order. Top-level keys of
    the YAML named in ``ignore_sections`` are skipped (``vlrl eval`` reads a run's config.yaml for the sections it
    has)."""
    cfg = cls()
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = _yaml_load(path.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from e
        if data is not None and not isinstance(data, Mapping):
            raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
        data = {k: v for k, v in (data or {}).items() if k not in ignore_sections}
        _apply_mapping(cfg, data, "", str(path))
    for override in overrides:
        _apply_override(cfg, override)
    return check_config(cfg)


def check_config(cfg: Any) -> Any:
    """Checks that span fields, on a loaded config (any of the dataclasses with sections `rollout`, `algorithm`):
    deprecated values rewritten to their current names with a FutureWarning (the saved config then holds the
    current names), contradictions raised as ConfigError. Returns ``cfg``, changed in place; a second call
    changes nothing."""
    rollout = getattr(cfg, "rollout", None)
    if rollout is not None and rollout.min_new_tokens > rollout.max_new_tokens:
        raise ConfigError(f"rollout.min_new_tokens={rollout.min_new_tokens} is more than rollout.max_new_tokens="
                          f"{rollout.max_new_tokens}: no completion could end; lower min_new_tokens or raise "
                          "max_new_tokens")
    if rollout is not None and rollout.min_new_tokens < 0:
        raise ConfigError(f"rollout.min_new_tokens must be >= 0, got {rollout.min_new_tokens}")
    algorithm = getattr(cfg, "algorithm", None)
    if algorithm is not None:
        from vlrl.algorithms.advantages import ADVANTAGE_ALIASES, advantage_setting

        try:
            baseline, scale = advantage_setting(algorithm.advantage, algorithm.scale_rewards)
        except ValueError as e:
            raise ConfigError(str(e)) from e
        if algorithm.advantage in ADVANTAGE_ALIASES:
            warnings.warn(f"algorithm.advantage={algorithm.advantage} is deprecated: it is algorithm.advantage="
                          f"{baseline} algorithm.scale_rewards={scale}; write that instead", FutureWarning,
                          stacklevel=2)
            algorithm.advantage, algorithm.scale_rewards = baseline, scale
        _check_reference_reset(algorithm)
    return cfg


def _check_reference_reset(algorithm: Any) -> None:
    every, kl = algorithm.reference_reset_every, algorithm.reference_reset_kl
    if every < 0 or kl < 0:
        raise ConfigError(f"algorithm.reference_reset_every={every} and algorithm.reference_reset_kl={kl} must be "
                          ">= 0 (0 turns each off)")
    if (every or kl) and not algorithm.kl_coef:
        name = "reference_reset_every" if every else "reference_reset_kl"
        raise ConfigError(f"algorithm.{name} resets the KL reference, but algorithm.kl_coef=0 has no KL penalty: "
                          "set algorithm.kl_coef > 0 (ProRL uses a small one) or turn the reset off")


def config_to_dict(cfg: Any) -> Any:
    """Plain nested dicts/lists/scalars (like ``dataclasses.asdict``; tuples become lists for YAML)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, Mapping):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    return cfg


def save_config(cfg: Any, path: str | Path) -> None:
    """Write ``cfg`` as block-style YAML that ``load_config(type(cfg), path)`` reads back equal."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(
        config_to_dict(cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    write_text_atomic(path, text)  # a kill mid-write leaves the old file, never a truncated config


def diff_from_defaults(cfg: Any) -> dict[str, Any]:
    """``{"section.key": value}`` for every leaf that differs from ``type(cfg)()``."""
    out: dict[str, Any] = {}

    def walk(obj: Any, ref: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value, default = getattr(obj, f.name), getattr(ref, f.name)
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value) and type(value) is type(default):
                walk(value, default, key + ".")
            elif value != default:
                out[key] = config_to_dict(value)

    walk(cfg, type(cfg)(), "")
    return out


def _flow(value: Any) -> str:
    text = yaml.dump(
        config_to_dict(value), Dumper=_Dumper, default_flow_style=True, width=10**9, sort_keys=False
    )
    return text.strip().removesuffix("...").strip()  # scalars are dumped as a document ending in "..."


def format_help(cls: type = Config, width: int = 100) -> str:
    """Every leaf key as ``section.key  (type, default: X)  help``, grouped by section (for --help)."""
    groups: dict[str, list[str]] = {}

    def walk(c: type, default: Any, prefix: str) -> None:
        for f in dataclasses.fields(c):
            tp, value = _hints(c)[f.name], getattr(default, f.name)
            if _is_section(tp):
                walk(tp, value, f"{prefix}{f.name}.")
                continue
            line = f"  {prefix}{f.name}  ({_type_name(tp)}, default: {_flow(value)})  {f.metadata.get('help', '')}"
            groups.setdefault(prefix.rstrip(".") or c.__name__, []).append(
                textwrap.fill(line.rstrip(), width, subsequent_indent=" " * 6, break_long_words=False)
            )

    walk(cls, cls(), "")
    head = (
        "Configuration keys: set them in a YAML file (nested by section) or as key.sub=value overrides.\n"
        "Values are YAML (true, 1e-3, [1, 2], {a: 1}, null). A dict field also takes a deeper path:\n"
        "reward.per_task.count=[{name: number}] sets one key of it."
    )
    return head + "".join(f"\n\n{name}:\n" + "\n".join(lines) for name, lines in groups.items())
