"""Loading a policy: the checkpoint's model and processor, wrapped in the `Policy` subclass of its family
(`FAMILIES`, by the config's model_type). What the rest of vlrl needs from a model is `vlrl.models.base.Policy`;
what differs between families lives in one module per family (`qwen2_vl.py`, `qwen2_5_vl.py`, `qwen3_vl.py`).
Any other model_type that transformers' `AutoModelForImageTextToText` loads is the generic tier
(`vlrl.models.generic.GenericPolicy`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from vlrl.config import ModelConfig
from vlrl.models.base import ImageFeatures, Policy

__all__ = ["FAMILIES", "ImageFeatures", "Policy", "UnsupportedModelError", "family_class", "is_generic",
           "load_policy", "make_policy", "supported_models"]

# model_type -> (module, class, name shown to users). The single list of families vlrl trains.
FAMILIES = {
    "qwen2_vl": ("vlrl.models.qwen2_vl", "Qwen2VLPolicy", "Qwen2-VL"),
    "qwen2_5_vl": ("vlrl.models.qwen2_5_vl", "Qwen2_5_VLPolicy", "Qwen2.5-VL"),
    "qwen3_vl": ("vlrl.models.qwen3_vl", "Qwen3VLPolicy", "Qwen3-VL"),
    "qwen3_vl_moe": ("vlrl.models.qwen3_vl", "Qwen3VLMoePolicy", "Qwen3-VL-MoE"),
}


class UnsupportedModelError(ValueError):
    """The checkpoint's model_type is not a family vlrl drives."""


def supported_families() -> str:
    return ", ".join(f"{t} ({name})" for t, (_, _, name) in FAMILIES.items())


def supported_models() -> str:
    """What vlrl trains, as error messages name it."""
    return (f"the families {supported_families()}, and in the generic tier (transformers' own forward and "
            "generate; slower, fewer options) any other model_type AutoModelForImageTextToText loads, e.g. llava, "
            "gemma3, idefics3, smolvlm, paligemma")


def is_generic(model_type: str | None) -> bool:
    """A model_type of the generic tier: not a family, but loadable by AutoModelForImageTextToText."""
    from vlrl.models.generic import generic_model_types

    return model_type not in FAMILIES and model_type in generic_model_types()


def family_class(model_type: str | None) -> type[Policy]:
    """The `Policy` subclass of a model_type (`GenericPolicy` for the generic tier); an error naming what is
    supported otherwise."""
    if is_generic(model_type):
        from vlrl.models.generic import GenericPolicy

        return GenericPolicy
    if model_type not in FAMILIES:
        raise UnsupportedModelError(f"model_type {model_type!r} is not a model vlrl can train; supported: "
                                    f"{supported_models()}")
    module, name, _ = FAMILIES[model_type]
    return getattr(importlib.import_module(module), name)


def load_policy(cfg: ModelConfig, path: str | Path, device: torch.device | str = "cpu",
                adapter_path: str | Path | None = None) -> Policy:
    """Load model + processor from an HF-format directory (or hub id, only when the user names one); with
    `cfg.lora_rank`, wrap it in LoRA adapters, loaded from `adapter_path` when given (a LoRA checkpoint)."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    family_class(AutoConfig.from_pretrained(str(path)).model_type)  # before any weight is read
    dtype = getattr(torch, cfg.dtype)
    model = AutoModelForImageTextToText.from_pretrained(
        str(path), dtype=dtype, attn_implementation=cfg.attn_implementation
    ).to(device)
    processor = AutoProcessor.from_pretrained(str(path))
    processor.tokenizer.padding_side = "left"
    policy = make_policy(model, processor)
    if cfg.freeze_vision:
        policy.freeze_vision()  # the connector stays trainable: it maps frozen features into the LM's space
    if cfg.freeze_merger:
        policy.freeze_connector()
    if cfg.gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if cfg.lora_rank > 0:
        from vlrl.models.lora import add_lora

        if policy.generic:
            raise ValueError(f"model.lora_rank={cfg.lora_rank}: LoRA is not supported for a model of the generic "
                             "tier (an architecture other than Qwen2-VL, Qwen2.5-VL, Qwen3-VL); set model.lora_rank=0")
        policy.adapter = add_lora(policy, cfg, base_path=path, weights=adapter_path)
    return policy


def make_policy(model, processor, adapter=None) -> Policy:
    """Wrap a loaded HF model and its processor in its family's `Policy`."""
    tok = processor.tokenizer
    text_cfg = model.config.get_text_config()
    eos = text_cfg.eos_token_id
    eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    eos_ids |= {gen_eos} if isinstance(gen_eos, int) else set(gen_eos or [])
    if tok.eos_token_id is not None:
        eos_ids.add(tok.eos_token_id)
    pad = tok.pad_token_id if tok.pad_token_id is not None else getattr(text_cfg, "pad_token_id", None)
    cls = family_class(model.config.model_type)
    banned = cls.vision_token_ids(model, processor)
    return cls(model=model, processor=processor, eos_token_ids=tuple(sorted(eos_ids)),
               pad_token_id=int(pad if pad is not None else sorted(eos_ids)[0]),
               banned_token_ids=tuple(sorted(banned)), adapter=adapter)
