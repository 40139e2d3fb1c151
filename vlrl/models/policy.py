"""The policy: a Qwen2.5-VL model and its processor, with the few model internals rollout and update need.

Rollout and update both call the language model directly on embeddings (token embeddings with the image
features scattered in) and 3-D rotary positions computed here. That keeps one implementation of what the
model sees, lets each image be encoded once per prompt and shared by its G samples (gradients flow through
the sharing), and avoids the model's stateful `rope_deltas` cache. This module is the one place that knows
the Qwen2.5-VL layout; another family plugs in here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from vlrl.config import ModelConfig

VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
                 "<|vision_pad|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>")


@dataclass
class Policy:
    model: torch.nn.Module  # Qwen2_5_VLForConditionalGeneration (possibly wrapped by accelerate)
    processor: object  # Qwen2_5_VLProcessor
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    banned_token_ids: tuple[int, ...]  # vision placeholders: never sampled
    adapter: object | None = None  # the peft PeftModel holding `model` when LoRA is on (`vlrl.models.lora`)

    @contextmanager
    def without_adapter(self) -> Iterator[None]:
        """Run the base model: LoRA adapters (and peft's trained copy of the merger) switched off. This is the
        starting model, so it serves as the KL reference without a second copy in memory."""
        with self.adapter.disable_adapter() if self.adapter is not None else nullcontext():
            yield

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def core(self):
        """The unwrapped `Qwen2_5_VLForConditionalGeneration`."""
        model = self.model
        while hasattr(model, "module"):
            model = model.module
        return model

    @property
    def device(self) -> torch.device:
        return next(self.core.parameters()).device

    # ---- model pieces ------------------------------------------------------------------------------------
    def image_features(self, pixel_values: torch.Tensor | None, image_grid_thw: torch.Tensor | None,
                       vision_states: torch.Tensor | None = None) -> torch.Tensor | None:
        """Encode images once: pixel patches [num_patches, C*T*p*p] -> merged features [num_image_tokens, H].
        Given `vision_states` (the tower's output before the merger, from `vision_states`), only the merger runs."""
        if vision_states is not None:
            return self.core.model.visual.merger(vision_states)
        if pixel_values is None:
            return None
        visual = self.core.model.visual
        out = visual(pixel_values.to(visual.dtype), grid_thw=image_grid_thw, return_dict=True)
        return out.pooler_output

    @property
    def vision_tower_frozen(self) -> bool:
        """No parameter of the vision tower outside the merger trains (model.freeze_vision, no LoRA on it)."""
        return not any(p.requires_grad for n, p in self.core.model.visual.named_parameters()
                       if not n.startswith("merger."))

    def vision_states(self, pixel_values: torch.Tensor | None, image_grid_thw: torch.Tensor | None
                      ) -> torch.Tensor | None:
        """The vision tower's output before the merger, [num_patches, C], row i belonging to patch i (as
        `pixel_values`), so the states of any subset of images are a slice and `image_features(...,
        vision_states=slice)` gives their features. With a frozen tower (model.freeze_vision) the update reuses
        them from the rollout and runs only the (trainable) merger.

        The tower runs its blocks on merge groups permuted into attention windows and undoes the permutation
        after the merger; here it is undone on the states instead (the merger maps each group of
        spatial_merge_size**2 consecutive rows on its own)."""
        if pixel_values is None:
            return None
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import get_vision_window_index

        visual = self.core.model.visual
        out = visual(pixel_values.to(visual.dtype), grid_thw=image_grid_thw, return_dict=True)
        window_index, _ = get_vision_window_index(image_grid_thw, spatial_merge_size=visual.spatial_merge_size,
                                                  window_size=visual.window_size, patch_size=visual.patch_size)
        states = out.last_hidden_state
        unit, width = visual.spatial_merge_size**2, states.shape[-1]
        return states.view(-1, unit, width)[torch.argsort(window_index)].reshape(-1, width)

    def blank_image(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """The smallest image the vision tower takes (one merged token, all zeros): (pixel patches
        [merge**2, C*T*p*p], grid [1, 3]). Used where a forward must run the tower without an image."""
        vc = self.core.config.vision_config
        merge = vc.spatial_merge_size
        channels = getattr(vc, "in_channels", getattr(vc, "in_chans", 3))
        width = channels * vc.temporal_patch_size * vc.patch_size**2
        visual = self.core.model.visual
        pixels = torch.zeros(merge * merge, width, dtype=next(visual.parameters()).dtype, device=device)
        return pixels, torch.tensor([[1, merge, merge]], device=device)

    def embed(self, input_ids: torch.Tensor, image_embeds: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings [B, L, H] with `image_embeds` [num_image_tokens, H] at the image placeholders."""
        embeds = self.core.model.get_input_embeddings()(input_ids)
        if image_embeds is not None:
            mask = (input_ids == self.core.config.image_token_id).unsqueeze(-1)
            if int(mask.sum()) != image_embeds.shape[0]:
                raise ValueError(
                    f"{int(mask.sum())} image placeholder tokens but {image_embeds.shape[0]} image features: "
                    "a prompt was truncated or its images do not match its text"
                )
            embeds = embeds.masked_scatter(mask, image_embeds.to(embeds.dtype))
        return embeds

    def rope_positions(self, input_ids: torch.Tensor, mm_token_type_ids: torch.Tensor,
                       image_grid_thw: torch.Tensor | None, attention_mask: torch.Tensor) -> torch.Tensor:
        """3-D rotary positions [3, B, L] (temporal, height, width) for left-padded sequences."""
        if image_grid_thw is None:
            pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            return pos.unsqueeze(0).expand(3, -1, -1)
        pos, _ = self.core.model.get_rope_index(
            input_ids, mm_token_type_ids=mm_token_type_ids, image_grid_thw=image_grid_thw,
            attention_mask=attention_mask,
        )
        return pos

    def prompt_positions(self, batch) -> torch.Tensor:
        """Rotary positions [3, P, L] of a PromptBatch's prompts, computed once and kept on the batch."""
        if batch.positions is None:
            batch.positions = self.rope_positions(batch.input_ids, batch.mm_token_type_ids, batch.image_grid_thw,
                                                  batch.attention_mask)
        return batch.positions

    def hidden_states(self, embeds: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor,
                      past_key_values=None, use_cache: bool = False):
        """Run the language model: returns (last hidden states [B, L, H], cache)."""
        lm = self.core.model.language_model
        out = lm(inputs_embeds=embeds, position_ids=position_ids, attention_mask=attention_mask,
                 use_cache=use_cache, **{_cache_kwarg(type(lm)): past_key_values})
        has_cache_field = "cache" in getattr(type(out), "__dataclass_fields__", {})
        return out.last_hidden_state, out.cache if has_cache_field else out.past_key_values

    def decode_mask(self, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        """The attention mask of one decode step over a static KV cache, in the prepared form the language model
        takes instead of building its own: valid [B, S] (True = key slot holds a real token) -> {layer type:
        mask [B, 1, 1, S]}, bool for sdpa (True attends), additive for eager (0 or the dtype's minimum).

        Building it here avoids transformers' mask builder, which inspects the mask's values (a device sync,
        and a branch on data) and so cannot run inside a CUDA graph."""
        text_cfg = self.core.config.text_config
        impl = text_cfg._attn_implementation
        if set(text_cfg.layer_types) != {"full_attention"}:
            raise ValueError("the static decode path assumes full attention in every layer (no sliding window)")
        mask = valid[:, None, None, :]
        if impl == "eager":
            dtype = self.core.model.language_model.embed_tokens.weight.dtype
            mask = torch.zeros(mask.shape, dtype=dtype, device=valid.device).masked_fill(~mask, torch.finfo(dtype).min)
        elif impl != "sdpa":
            raise ValueError(f"the 'engine' rollout backend runs attention through 'sdpa' or 'eager', not {impl!r}; "
                             "set model.attn_implementation=sdpa or use rollout.backend=cached")
        return {"full_attention": mask}

    @property
    def lm_head(self) -> torch.nn.Linear:
        return self.core.lm_head


@functools.cache
def _cache_kwarg(model_class: type) -> str:
    """The name a language model's forward takes its KV cache by: transformers 5.24 renamed `past_key_values`
    to `cache` (the old name warns, and goes in 5.40)."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


# LoRA targets by module path (peft matches a regex against the whole name): the language model's layers
# only, unless the vision tower's blocks are asked for too. Their projections are named alike, so names alone
# would adapt both.
LANGUAGE_LAYERS = r"model\.language_model\.layers\.\d+\.\w+\."
VISION_BLOCKS = r"model\.visual\.blocks\.\d+\.\w+\."
VISION_PROJECTIONS = ("qkv", "proj", "gate_proj", "up_proj", "down_proj")
MERGER = "merger"  # model.visual.merger


def lora_target_pattern(cfg: ModelConfig) -> str:
    """The regex of module names that get LoRA adapters."""
    pattern = LANGUAGE_LAYERS + "(" + "|".join(cfg.lora_target_modules) + ")"
    if cfg.lora_vision:
        pattern = f"({pattern})|({VISION_BLOCKS}({'|'.join(VISION_PROJECTIONS)}))"
    return pattern


def load_policy(cfg: ModelConfig, path: str | Path, device: torch.device | str = "cpu",
                adapter_path: str | Path | None = None) -> Policy:
    """Load model + processor from an HF-format directory (or hub id, only when the user names one); with
    `cfg.lora_rank`, wrap it in LoRA adapters, loaded from `adapter_path` when given (a LoRA checkpoint)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    dtype = getattr(torch, cfg.dtype)
    model = AutoModelForImageTextToText.from_pretrained(
        str(path), dtype=dtype, attn_implementation=cfg.attn_implementation
    ).to(device)
    processor = AutoProcessor.from_pretrained(str(path))
    processor.tokenizer.padding_side = "left"
    if cfg.freeze_vision:
        # The merger (connector) stays trainable: it maps frozen features into the language model's space.
        for name, param in model.model.visual.named_parameters():
            param.requires_grad_(name.startswith("merger."))
    if cfg.freeze_merger:
        model.model.visual.merger.requires_grad_(False)
    if cfg.gradient_checkpointing:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if cfg.lora_rank > 0:
        from vlrl.models.lora import add_lora

        adapter = add_lora(model, cfg, base_path=path, weights=adapter_path)
        return make_policy(model, processor, adapter)
    return make_policy(model, processor)


def make_policy(model, processor, adapter=None) -> Policy:
    tok = processor.tokenizer
    text_cfg = model.config.text_config
    eos = text_cfg.eos_token_id
    eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    eos_ids |= {gen_eos} if isinstance(gen_eos, int) else set(gen_eos or [])
    if tok.eos_token_id is not None:
        eos_ids.add(tok.eos_token_id)
    pad = tok.pad_token_id if tok.pad_token_id is not None else text_cfg.pad_token_id
    vocab = tok.get_vocab()
    banned = {vocab[t] for t in VISION_TOKENS if t in vocab}
    banned |= {model.config.image_token_id, model.config.video_token_id}
    return Policy(model=model, processor=processor, eos_token_ids=tuple(sorted(eos_ids)),
                  pad_token_id=int(pad if pad is not None else sorted(eos_ids)[0]),
                  banned_token_ids=tuple(sorted(banned)), adapter=adapter)
