"""LoRA through peft: adapters on the language model's projections (optionally the vision tower's), every base
weight frozen.

The adapters are injected into the HF model in place, so `Policy.model` stays the HF model and rollout and
update call its submodules as without LoRA; the peft wrapper (`Policy.adapter`) is kept to switch the adapters
off (the KL reference) and to save them. A trainable connector (merger) becomes a peft "module to save": a trained copy
beside the frozen original, so switching the adapters off also gives back the original merger.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vlrl.config import ModelConfig

ADAPTER_CONFIG = "adapter_config.json"  # peft's file: marks a LoRA checkpoint
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def add_lora(policy, cfg: ModelConfig, base_path: str | Path, weights: str | Path | None = None):
    """Inject adapters into `policy.model` (in place) and return the peft wrapper. Targets and the connector
    (kept as a trained copy unless model.freeze_merger) come from the policy's family. `weights`: a directory with saved
    adapter weights (a LoRA checkpoint) to load instead of the fresh initialisation."""
    from peft import LoraConfig, get_peft_model
    from peft.utils import set_peft_model_state_dict

    config = LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=policy.lora_target_pattern(cfg.lora_target_modules, cfg.lora_vision),
        modules_to_save=None if cfg.freeze_merger else policy.connector_modules(),
    )
    adapted = get_peft_model(policy.model, config)
    # Recorded in adapter_config.json, so an export finds the base model; absolute, since runs may be moved.
    local = Path(base_path)
    adapted.peft_config["default"].base_model_name_or_path = str(local.resolve()) if local.exists() else str(base_path)
    if weights is not None:
        from safetensors.torch import load_file

        result = set_peft_model_state_dict(adapted, load_file(str(Path(weights) / ADAPTER_WEIGHTS)))
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"adapter weights in {weights} do not fit model.lora_* settings: "
                             f"unexpected {result.unexpected_keys[:3]}")
    return adapted


def is_adapter_checkpoint(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).exists()


def adapter_state(full_state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys of a gathered state dict of the module holding the HF model under `prefix` (e.g. 'hf_model.'), as
    peft's wrapper names them ('base_model.model.' + the HF name), for `PeftModel.save_pretrained`."""
    return {"base_model.model." + k[len(prefix):]: v for k, v in full_state.items() if k.startswith(prefix)}


def export_merged(checkpoint: str | Path, out: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write a plain HF model directory: the checkpoint's base model with its adapter merged into the weights,
    and the processor. `from_pretrained` loads it without peft."""
    import json

    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    checkpoint, out = Path(checkpoint), Path(out)
    base = json.loads((checkpoint / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=dtype or "auto")
    merged = PeftModel.from_pretrained(model, str(checkpoint)).merge_and_unload()
    merged.save_pretrained(out)
    AutoProcessor.from_pretrained(str(checkpoint)).save_pretrained(out)
    return out
