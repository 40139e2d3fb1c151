"""Shapes of released Qwen VL checkpoints, for random-weight models with their exact layout (GPU benchmarks,
memory checks), and ``SECTION.FIELD=VALUE`` overrides to shrink or vary them.

A shape is ``dict(family=model_type, source=where the figures come from, text={...}, vision={...})``; the
``text`` and ``vision`` keys are the transformers config fields of the family (see :mod:`vlrl.models.families`),
so an override names the same field a config.json does.

Where the figures come from: each ``source`` names the public config.json on the Hugging Face hub. They were
written down from memory of those files, not downloaded here (this machine is offline); the Qwen2.5-VL 3B/7B
entries were already used for GPU benchmarks with this code. The least certain are the vision
``intermediate_size`` of Qwen2.5-VL 32B/72B (3456, not the 3B/7B's 3420) and the Qwen3-VL vision towers
(2B/4B: depth 24 width 1024; 8B/32B: depth 27 width 1152, as transformers' Qwen3VLVisionConfig defaults).
A cross-check, also from memory: the parameter totals these shapes give (2.21, 8.29, 3.75, 8.29, 33.45, 73.41,
2.13, 4.44, 8.77, 33.36 billion, in the order below, counted on the meta device) are the sizes the hub pages
show. Compare with the hub file before quoting a figure.
"""

from __future__ import annotations

import copy

from vlrl.models.families import get_family

SECTIONS = ("text", "vision")

# Qwen2-VL's vision tower is 1280 wide with MLP ratio 4; its `hidden_size` is the merger's output, the language
# model's width. The text head dimension of Qwen2/2.5-VL is hidden_size / num_attention_heads (128 for all).
_QWEN2_VISION = dict(depth=32, embed_dim=1280, mlp_ratio=4, num_heads=16)
_QWEN2_5_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                       fullatt_block_indexes=[7, 15, 23, 31], window_size=112)
_QWEN3_VISION_SMALL = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16,
                           num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17])
_QWEN3_VISION_LARGE = dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16,
                           num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24])


def _text(layers: int, hidden: int, intermediate: int, heads: int, kv_heads: int, vocab: int, tie: bool,
          head_dim: int | None = None) -> dict:
    text = dict(num_hidden_layers=layers, hidden_size=hidden, intermediate_size=intermediate,
                num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab, tie_word_embeddings=tie)
    if head_dim is not None:
        text["head_dim"] = head_dim
    return text


def _shape(family: str, source: str, text: dict, vision: dict) -> dict:
    return dict(family=family, source=f"{source} config.json", text=text, vision=vision)


RELEASED_SHAPES: dict[str, dict] = {
    "qwen2-vl-2b": _shape("qwen2_vl", "Qwen/Qwen2-VL-2B-Instruct", _text(28, 1536, 8960, 12, 2, 151936, True),
                          dict(_QWEN2_VISION, hidden_size=1536)),
    "qwen2-vl-7b": _shape("qwen2_vl", "Qwen/Qwen2-VL-7B-Instruct", _text(28, 3584, 18944, 28, 4, 152064, False),
                          dict(_QWEN2_VISION, hidden_size=3584)),
    "qwen2.5-vl-3b": _shape("qwen2_5_vl", "Qwen/Qwen2.5-VL-3B-Instruct",
                            _text(36, 2048, 11008, 16, 2, 151936, True), dict(_QWEN2_5_VISION, out_hidden_size=2048)),
    "qwen2.5-vl-7b": _shape("qwen2_5_vl", "Qwen/Qwen2.5-VL-7B-Instruct",
                            _text(28, 3584, 18944, 28, 4, 152064, False), dict(_QWEN2_5_VISION, out_hidden_size=3584)),
    "qwen2.5-vl-32b": _shape("qwen2_5_vl", "Qwen/Qwen2.5-VL-32B-Instruct",
                             _text(64, 5120, 27648, 40, 8, 152064, False),
                             dict(_QWEN2_5_VISION, intermediate_size=3456, out_hidden_size=5120)),
    "qwen2.5-vl-72b": _shape("qwen2_5_vl", "Qwen/Qwen2.5-VL-72B-Instruct",
                             _text(80, 8192, 29568, 64, 8, 152064, False),
                             dict(_QWEN2_5_VISION, intermediate_size=3456, out_hidden_size=8192)),
    "qwen3-vl-2b": _shape("qwen3_vl", "Qwen/Qwen3-VL-2B-Instruct", _text(28, 2048, 6144, 16, 8, 151936, True, 128),
                          dict(_QWEN3_VISION_SMALL, out_hidden_size=2048)),
    "qwen3-vl-4b": _shape("qwen3_vl", "Qwen/Qwen3-VL-4B-Instruct", _text(36, 2560, 9728, 32, 8, 151936, True, 128),
                          dict(_QWEN3_VISION_SMALL, out_hidden_size=2560)),
    "qwen3-vl-8b": _shape("qwen3_vl", "Qwen/Qwen3-VL-8B-Instruct",
                          _text(36, 4096, 12288, 32, 8, 151936, False, 128),
                          dict(_QWEN3_VISION_LARGE, out_hidden_size=4096)),
    "qwen3-vl-32b": _shape("qwen3_vl", "Qwen/Qwen3-VL-32B-Instruct",
                           _text(64, 5120, 25600, 64, 8, 151936, False, 128),
                           dict(_QWEN3_VISION_LARGE, out_hidden_size=5120)),
}


class OverrideError(ValueError):
    """A ``--set`` item that cannot apply; the message names the item and what would be valid."""


def _value(text: str):
    """'4' -> 4, '1e-6' -> 1e-06, 'true' -> True, '[7, 15]' -> [7, 15], 'null' -> None, else the string."""
    s = text.strip()
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none"):
        return None
    if s.startswith("[") and s.endswith("]"):
        return [_value(part) for part in s[1:-1].split(",")] if s[1:-1].strip() else []
    for kind in (int, float):
        try:
            return kind(s)
        except ValueError:
            pass
    return s


def parse_overrides(items: list[str] | None) -> dict[str, dict]:
    """``["text.num_hidden_layers=4", "vision.deepstack_visual_indexes=[0]"]`` ->
    ``{"text": {"num_hidden_layers": 4}, "vision": {"deepstack_visual_indexes": [0]}}``.

    Values: integers, floats, true/false, null, ``[a, b]`` lists of those, else strings. Which fields exist
    depends on the family; :func:`resolve_shape` checks them.

    >>> parse_overrides(["text.rms_norm_eps=1e-6", "vision.fullatt_block_indexes=[0, 1]"])
    {'text': {'rms_norm_eps': 1e-06}, 'vision': {'fullatt_block_indexes': [0, 1]}}
    """
    out: dict[str, dict] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        section, dot, field = key.strip().partition(".")
        if not sep or not dot or not field or not raw.strip():
            raise OverrideError(f"--set {item!r}: expected SECTION.FIELD=VALUE with SECTION one of "
                                f"{', '.join(SECTIONS)} (e.g. text.num_hidden_layers=2)")
        if section not in SECTIONS:
            raise OverrideError(f"--set {item!r}: unknown section {section!r}; sections: {', '.join(SECTIONS)}")
        out.setdefault(section, {})[field] = _value(raw)
    return out


def resolve_shape(name: str, overrides: dict[str, dict] | None = None) -> dict:
    """A copy of ``RELEASED_SHAPES[name]`` with `overrides` (as :func:`parse_overrides` returns) applied;
    :class:`OverrideError` for an unknown name or a field the family's config does not have."""
    if name not in RELEASED_SHAPES:
        raise OverrideError(f"unknown model shape {name!r}; known: {', '.join(RELEASED_SHAPES)}")
    shape = copy.deepcopy(RELEASED_SHAPES[name])
    family = get_family(shape["family"])
    for section, values in (overrides or {}).items():
        if section not in SECTIONS:
            raise OverrideError(f"unknown section {section!r}; sections: {', '.join(SECTIONS)}")
        valid = family.fields(section)
        for field, value in values.items():
            if field not in valid:
                raise OverrideError(f"--set {section}.{field}: {family.model_type} has no {section} field {field!r}; "
                                    f"valid: {', '.join(valid)}")
            shape[section][field] = value
    return shape


def shapes_help() -> str:
    """One line per released shape (name, family, main sizes, source), for ``--help``."""
    lines = ["shapes (--like):"]
    for name, shape in RELEASED_SHAPES.items():
        t = shape["text"]
        lines.append(f"  {name:<15} {shape['family']:<11} {t['num_hidden_layers']} layers x {t['hidden_size']}, "
                     f"vision depth {shape['vision']['depth']}  ({shape['source']})")
    return "\n".join(lines)
