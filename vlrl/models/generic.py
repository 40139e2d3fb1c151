"""The generic tier: any image-text-to-text checkpoint transformers' `AutoModelForImageTextToText` loads (LLaVA,
Gemma 3, Idefics3/SmolVLM, PaliGemma, ...), trained on the model's own forward and `generate` — correct before
fast.

What the Qwen-VL families do through the seam in `vlrl.models.base` (vision features scattered into embeddings,
explicit rotary positions, a prompt's images encoded once for its G samples, prefix sharing), this tier leaves
to transformers. A prompt is what the processor returns for it alone (`PromptBatch.prompt_inputs`: input_ids,
attention_mask, pixel_values and whatever else the architecture's processor adds — token_type_ids,
pixel_attention_mask, image_sizes, ...), and every forward and `generate` runs one prompt at a time on n copies
of it (`repeat_inputs`). Processor outputs are laid out either per prompt ([1, ...]) or per image / patch
([images, ...]); n copies concatenated along dim 0 is what the processor returns for the prompt repeated n
times in both layouts, so no architecture-specific batching rule is needed, and no prompt is ever padded, so an
architecture whose forward ignores the attention mask when placing positions still sees exactly its own input.

Not here (refused at start-up by `check_generic_config`): the `cached` and `engine` rollout backends (use
`rollout.backend=reference`), the shared-prompt update (`algorithm.shared_prompt=false`), a frozen vision tower
and frozen-tower reuse, LoRA, and more than one process.
"""

from __future__ import annotations

import functools
import inspect

import torch

from vlrl.algorithms import logits_logprobs
from vlrl.models.base import Policy

# Config attributes that name vision placeholder or marker tokens in the architectures transformers ships.
_VISION_TOKEN_ATTRS = ("image_token_id", "image_token_index", "video_token_id", "video_token_index", "boi_token_id",
                       "boi_token_index", "eoi_token_id", "eoi_token_index", "image_start_token_id",
                       "image_end_token_id", "vision_start_token_id", "vision_end_token_id")
_PROCESSOR_TOKEN_ATTRS = ("image_token", "video_token", "boi_token", "eoi_token", "fake_image_token",
                          "global_image_token")


def generic_model_types() -> frozenset[str]:
    """model_types `AutoModelForImageTextToText` maps to a class (the Qwen-VL families among them)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return frozenset(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)


def repeat_inputs(inputs: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """A prompt's processor outputs for n copies of the prompt: each tensor concatenated n times along dim 0."""
    return {k: torch.cat([v] * n) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def sequence_inputs(prompt: dict[str, torch.Tensor], completions: torch.Tensor, mask: torch.Tensor
                    ) -> dict[str, torch.Tensor]:
    """The model's inputs for n completions [n, T] (mask [n, T]) of one prompt: its processor outputs repeated,
    input_ids extended by the completions, attention_mask by their mask, and every other per-token integer input
    of the processor ([1, L]: token_type_ids, mm_token_type_ids) by 0 (text)."""
    n = completions.shape[0]
    L = prompt["input_ids"].shape[1]
    out = repeat_inputs(prompt, n)
    for key, value in out.items():
        if key == "input_ids":
            out[key] = torch.cat([value, completions.to(value.dtype)], 1)
        elif key == "attention_mask":
            out[key] = torch.cat([value, mask.to(value.dtype)], 1)
        elif (isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape[1] == L
              and not value.is_floating_point()):
            out[key] = torch.cat([value, value.new_zeros(n, completions.shape[1])], 1)
    return out


class GenericPolicy(Policy):
    """A checkpoint of an architecture outside the Qwen-VL families, run through transformers' own forward."""

    model_type = ""
    display_name = "generic tier"
    generic = True

    @property
    def language_model(self) -> torch.nn.Module:
        return self.core.get_decoder()

    @property
    def lm_head(self) -> torch.nn.Module:
        return self.core.get_output_embeddings()

    @property
    def vision_tower_frozen(self) -> bool:
        return False  # the tower always runs with the rest: nothing to reuse

    @classmethod
    def vision_token_ids(cls, model, processor) -> set[int]:
        """Image placeholder and marker tokens (never sampled): from the config and the processor."""
        ids = {getattr(model.config, a, None) for a in _VISION_TOKEN_ATTRS}
        vocab = processor.tokenizer.get_vocab()
        ids |= {vocab.get(getattr(processor, a, None) or "") for a in _PROCESSOR_TOKEN_ATTRS}
        return {int(i) for i in ids if isinstance(i, int) and i >= 0}

    def freeze_vision(self) -> None:
        raise ValueError(_refusal("model.freeze_vision=true", "model.freeze_vision=false"))

    def freeze_connector(self) -> None:
        raise ValueError(_refusal("model.freeze_merger=true", "model.freeze_merger=false"))

    def prompt_positions(self, batch) -> None:
        return None  # the model places its own positions

    def completion_logprobs(self, prompt: dict[str, torch.Tensor], completions: torch.Tensor, mask: torch.Tensor,
                            temperature: float = 1.0, with_entropy: bool = False
                            ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probs [n, T] (and entropy [n, T]) of n completions [n, T] of one prompt (its processor outputs,
        batch 1), from the model's own forward on prompt + completion."""
        inputs = sequence_inputs(prompt, completions, mask)
        T = completions.shape[1]
        L = prompt["input_ids"].shape[1]
        keep = {"logits_to_keep": T + 1} if _takes_logits_to_keep(type(self.core)) else {}
        logits = self.core(**inputs, use_cache=False, **keep).logits
        if logits.shape[1] == L + T:  # an architecture that ignores logits_to_keep
            logits = logits[:, L - 1:]
        # logits[:, t] is at position L-1+t and predicts completion token t.
        return logits_logprobs(logits[:, :T], completions, temperature=temperature, with_entropy=with_entropy)


@functools.cache
def _takes_logits_to_keep(model_class: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def _refusal(setting: str, fix: str) -> str:
    return (f"{setting} is not supported for a model of the generic tier (an architecture other than Qwen2-VL, "
            f"Qwen2.5-VL, Qwen3-VL, run through transformers' own forward and generate); set {fix}")


def check_generic_config(cfg, num_processes: int = 1) -> None:
    """Refuse, before any slow work, what the generic tier does not do, naming every setting to change."""
    wrong = []
    if cfg.rollout.backend != "reference":
        wrong.append((f"rollout.backend={cfg.rollout.backend}", "rollout.backend=reference"))
    if cfg.algorithm.shared_prompt:
        wrong.append(("algorithm.shared_prompt=true", "algorithm.shared_prompt=false"))
    if cfg.model.freeze_vision:
        wrong.append(("model.freeze_vision=true", "model.freeze_vision=false"))
    if cfg.model.freeze_merger:
        wrong.append(("model.freeze_merger=true", "model.freeze_merger=false"))
    if cfg.model.lora_rank:
        wrong.append((f"model.lora_rank={cfg.model.lora_rank}", "model.lora_rank=0"))
    if num_processes > 1:
        wrong.append((f"{num_processes} processes", "one process"))
    if wrong:
        raise ValueError(
            f"model.path={cfg.model.path} is a model of the generic tier (an architecture other than Qwen2-VL, "
            "Qwen2.5-VL, Qwen3-VL: transformers' own forward and generate, one prompt at a time), which does not "
            f"support {', '.join(w for w, _ in wrong)}; run it with {' '.join(f for _, f in wrong)}"
        )
