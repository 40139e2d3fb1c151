"""The model-family seam: what rollout, update, reference pass, evaluation and `vlrl serve` need from a
vision-language model, written once here for the Qwen-VL layout, with the few points where families differ left
to one module per family (`qwen2_vl.py`, `qwen2_5_vl.py`, `qwen3_vl.py`).

Rollout and update both call the language model directly on embeddings (token embeddings with the image
features scattered in) and the model's own 3-D rotary positions. That keeps one implementation of what the
model sees, lets each image be encoded once per prompt and shared by its G samples (gradients flow through the
sharing), and avoids the model's stateful `rope_deltas` cache.

The Qwen-VL layout, common to the three families:
- the model is `model.visual` (vision tower ending in a merger that maps groups of merge_size**2 patches to one
  token of the language model's width) + `model.language_model` + `lm_head`;
- an image is `grid_thw.prod()` patch rows of `pixel_values` and `grid_thw.prod() / merge_size**2` placeholder
  tokens in the text; rotary positions are [3, B, L] (temporal, height, width) from the model's
  `get_rope_index`;
- a generated token sits one past the prompt's largest position, on all three axes (`generated_positions`).

What a family adds: how the tower's output before its connector is laid out (`vision_states`, reused when the
tower is frozen), what else the language model takes besides embeddings (Qwen3-VL: deepstack features added to
the hidden states at the image positions of its first layers), the connector modules that stay trainable with
a frozen tower, the names of the tower's projections for LoRA, and the frame a grounding answer's boxes use.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import ClassVar

import torch

# Tokens of the Qwen-VL vocabulary that mark or stand for vision input: never sampled.
VISION_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>",
                 "<|vision_pad|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>")

# LoRA targets by module path (peft matches a regex against the whole name): the language model's layers only,
# unless the vision tower's blocks are asked for too. Their projections are named alike, so names alone would
# adapt both.
LANGUAGE_LAYERS = r"model\.language_model\.layers\.\d+\.\w+\."
VISION_BLOCKS = r"model\.visual\.blocks\.\d+\.\w+\."


@dataclass
class ImageFeatures:
    """The vision side's contribution for a set of image tokens, row i for image token i (in text order)."""

    embeds: torch.Tensor  # [image tokens, H]: placed at the image placeholders
    deepstack: tuple[torch.Tensor, ...] = ()  # [image tokens, H] per early decoder layer (Qwen3-VL), else ()

    def select(self, index: torch.Tensor) -> ImageFeatures:
        """The rows `index` (e.g. a prompt's features repeated for each of its sequences)."""
        return ImageFeatures(self.embeds[index], tuple(d[index] for d in self.deepstack))

    def zero(self) -> torch.Tensor:
        """0 * (sum of every output): adds nothing, but puts every producing parameter in the graph."""
        return (self.embeds.sum() + sum(d.sum() for d in self.deepstack)) * 0.0


def next_positions(prompt_positions: torch.Tensor) -> torch.Tensor:
    """[P]: the position of each prompt's first generated token, one past its largest position on any axis
    (prompt_positions [3, P, L]). The one place this rule is written."""
    return prompt_positions.amax(dim=(0, 2)) + 1


def generated_positions(first: torch.Tensor, offsets: torch.Tensor | int, axes: int = 3) -> torch.Tensor:
    """[axes, n, T] rotary positions of generated tokens: token t of row i at first[i] + offsets[t] on every axis
    (first [n] from `next_positions`, offsets [T], e.g. arange(T); an int is one step, T = 1)."""
    pos = first.unsqueeze(-1) + (offsets.to(first.device) if isinstance(offsets, torch.Tensor) else offsets)
    return pos.unsqueeze(0).expand(axes, *pos.shape)


@dataclass
class Policy:
    """A loaded model and its processor, with the model internals rollout and update use. Subclassed once per
    family; `vlrl.models.policy.make_policy` picks the subclass by the checkpoint's model_type."""

    model: torch.nn.Module  # the HF *ForConditionalGeneration (possibly wrapped by accelerate)
    processor: object
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    banned_token_ids: tuple[int, ...]  # vision placeholders: never sampled
    adapter: object | None = None  # the peft PeftModel holding `model` when LoRA is on (`vlrl.models.lora`)

    # ---- family facts (overridden per family) ------------------------------------------------------------
    model_type: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    # The frame of boxes in this family's grounding answers, as rewards' `box_format` names it.
    box_format: ClassVar[str] = "abs"
    # Parameter-name prefixes under model.visual of the connector: trainable with model.freeze_vision.
    connector_prefixes: ClassVar[tuple[str, ...]] = ("merger.",)
    # Leaf names of the vision blocks' linear layers (LoRA targets with model.lora_vision).
    vision_projections: ClassVar[tuple[str, ...]] = ()
    # Whether the language model takes a prepared decode mask as {layer type: mask} (else the mask itself).
    mask_by_layer_type: ClassVar[bool] = True
    # The generic tier (`vlrl.models.generic`): transformers' own forward and generate, one prompt at a time.
    generic: ClassVar[bool] = False

    @contextmanager
    def without_adapter(self) -> Iterator[None]:
        """Run the base model: LoRA adapters (and peft's trained copy of the connector) switched off. This is the
        starting model, so it serves as the KL reference without a second copy in memory."""
        with self.adapter.disable_adapter() if self.adapter is not None else nullcontext():
            yield

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def core(self):
        """The unwrapped HF model."""
        model = self.model
        while hasattr(model, "module"):
            model = model.module
        return model

    @property
    def visual(self) -> torch.nn.Module:
        return self.core.model.visual

    @property
    def language_model(self) -> torch.nn.Module:
        return self.core.model.language_model

    @property
    def device(self) -> torch.device:
        return next(self.core.parameters()).device

    @property
    def lm_head(self) -> torch.nn.Linear:
        return self.core.lm_head

    @classmethod
    def vision_token_ids(cls, model, processor) -> set[int]:
        """Ids of the vision placeholder and marker tokens (never sampled)."""
        vocab = processor.tokenizer.get_vocab()
        return {vocab[t] for t in VISION_TOKENS if t in vocab} | {model.config.image_token_id,
                                                                   model.config.video_token_id}

    # ---- training set-up ---------------------------------------------------------------------------------
    def connector_modules(self) -> list[str]:
        """Module names under model.visual of the connector (peft's modules_to_save when it trains)."""
        return [p.rstrip(".") for p in self.connector_prefixes]

    def freeze_vision(self) -> None:
        """Freeze the vision tower except its connector (which maps frozen features into the language model's
        space)."""
        for name, param in self.visual.named_parameters():
            param.requires_grad_(name.startswith(self.connector_prefixes))

    def freeze_connector(self) -> None:
        for name, param in self.visual.named_parameters():
            if name.startswith(self.connector_prefixes):
                param.requires_grad_(False)

    @property
    def vision_tower_frozen(self) -> bool:
        """No parameter of the vision tower outside the connector trains (model.freeze_vision, no LoRA on it)."""
        return not any(p.requires_grad for n, p in self.visual.named_parameters()
                       if not n.startswith(self.connector_prefixes))

    def shard_unit_classes(self) -> list[str]:
        """Class names of the modules FSDP2 shards one by one: the decoder layer and the vision block."""
        return [type(self.language_model.layers[0]).__name__, type(self.visual.blocks[0]).__name__]

    @classmethod
    def lora_target_pattern(cls, target_modules, lora_vision: bool) -> str:
        """The regex of module names that get LoRA adapters."""
        pattern = LANGUAGE_LAYERS + "(" + "|".join(target_modules) + ")"
        if lora_vision:
            pattern = f"({pattern})|({VISION_BLOCKS}({'|'.join(cls.vision_projections)}))"
        return pattern

    # ---- vision ------------------------------------------------------------------------------------------
    def image_features(self, pixel_values: torch.Tensor | None, image_grid_thw: torch.Tensor | None,
                       vision_states: torch.Tensor | None = None) -> ImageFeatures | None:
        """Encode images once: pixel patches [num_patches, C*T*p*p] -> features of their image tokens. Given
        `vision_states` (the tower's output before its connector, from `vision_states`), only the connector
        runs. None without images."""
        if vision_states is not None:
            return self.features_from_states(vision_states)
        if pixel_values is None:
            return None
        out = self.visual(pixel_values.to(self.visual.dtype), grid_thw=image_grid_thw, return_dict=True)
        # Qwen3-VL's tower also returns its deepstack features (one tensor per deepstack block)
        return ImageFeatures(out.pooler_output, tuple(getattr(out, "deepstack_features", None) or ()))

    def vision_states(self, pixel_values: torch.Tensor | None, image_grid_thw: torch.Tensor | None
                      ) -> torch.Tensor | None:
        """The vision tower's output before its connector, [num_patches, C'], row i belonging to patch i (as
        `pixel_values`), so the states of any subset of images are a slice and `image_features(...,
        vision_states=slice)` gives their features. With a frozen tower (model.freeze_vision) the update reuses
        them from the rollout and runs only the (trainable) connector."""
        if pixel_values is None:
            return None
        out = self.visual(pixel_values.to(self.visual.dtype), grid_thw=image_grid_thw, return_dict=True)
        return out.last_hidden_state

    def features_from_states(self, states: torch.Tensor) -> ImageFeatures:
        return ImageFeatures(self.visual.merger(states))

    def blank_image(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """The smallest image the vision tower takes (one merged token, all zeros): (pixel patches
        [merge**2, C*T*p*p], grid [1, 3])."""
        vc = self.core.config.vision_config
        merge = vc.spatial_merge_size
        channels = getattr(vc, "in_channels", getattr(vc, "in_chans", 3))
        width = channels * vc.temporal_patch_size * vc.patch_size**2
        pixels = torch.zeros(merge * merge, width, dtype=self.visual.dtype, device=device)
        return pixels, torch.tensor([[1, merge, merge]], device=device)

    def image_features_or_blank(self, pixel_values: torch.Tensor | None, image_grid_thw: torch.Tensor | None,
                                vision_states: torch.Tensor | None, device: torch.device | str
                                ) -> tuple[ImageFeatures | None, torch.Tensor | None]:
        """(features, None) when there are images; else (None, a zero scalar that has run the vision tower on a
        blank image). A text-only micro-batch adds the scalar to its output (value and gradients unchanged):
        under DDP a rank whose tower got no gradient while another's did would wait forever for its reduction
        buckets, and under FSDP / ZeRO-3 every rank must run the same modules, since each module's forward
        gathers its shards collectively. DDP's find_unused_parameters would cover only the first case, and
        costs a graph walk every step."""
        features = self.image_features(pixel_values, image_grid_thw, vision_states)
        if features is not None:
            return features, None
        blank, grid = self.blank_image(device)
        return None, self.image_features(blank, grid).zero()

    # ---- language model ----------------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, features: ImageFeatures | None) -> torch.Tensor:
        """Token embeddings [B, L, H] with the image features at the image placeholders."""
        embeds = self.language_model.get_input_embeddings()(input_ids)
        if features is not None:
            mask = (input_ids == self.core.config.image_token_id).unsqueeze(-1)
            if int(mask.sum()) != features.embeds.shape[0]:
                raise ValueError(
                    f"{int(mask.sum())} image placeholder tokens but {features.embeds.shape[0]} image features: "
                    "a prompt was truncated or its images do not match its text"
                )
            embeds = embeds.masked_scatter(mask, features.embeds.to(embeds.dtype))
        return embeds

    def language_inputs(self, input_ids: torch.Tensor, features: ImageFeatures | None) -> dict:
        """What the language model takes besides embeddings, positions, mask and cache ({} for most families)."""
        return {}

    def forward_tokens(self, input_ids: torch.Tensor, features: ImageFeatures | None, positions: torch.Tensor,
                       attention_mask, past_key_values=None, use_cache: bool = False):
        """The language model on tokens with image features placed in: (last hidden states [B, L, H], cache)."""
        return self.hidden_states(self.embed(input_ids, features), positions, attention_mask,
                                  past_key_values=past_key_values, use_cache=use_cache,
                                  **self.language_inputs(input_ids, features))

    def hidden_states(self, embeds: torch.Tensor, position_ids: torch.Tensor, attention_mask,
                      past_key_values=None, use_cache: bool = False, **extra):
        """Run the language model on embeddings: returns (last hidden states [B, L, H], cache)."""
        lm = self.language_model
        out = lm(inputs_embeds=embeds, position_ids=position_ids, attention_mask=attention_mask,
                 use_cache=use_cache, **{_cache_kwarg(type(lm)): past_key_values}, **extra)
        has_cache_field = "cache" in getattr(type(out), "__dataclass_fields__", {})
        return out.last_hidden_state, out.cache if has_cache_field else out.past_key_values

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

    def decode_mask(self, valid: torch.Tensor):
        """The attention mask of one decode step over a static KV cache, in the prepared form the language model
        takes instead of building its own: valid [B, S] (True = key slot holds a real token) -> mask
        [B, 1, 1, S] (as {layer type: mask} where the model takes that), bool for sdpa (True attends), additive
        for eager (0 or the dtype's minimum).

        Building it here avoids transformers' mask builder, which inspects the mask's values (a device sync,
        and a branch on data) and so cannot run inside a CUDA graph."""
        text_cfg = self.core.config.text_config
        impl = text_cfg._attn_implementation
        if set(getattr(text_cfg, "layer_types", None) or ["full_attention"]) != {"full_attention"}:
            raise ValueError("the static decode path assumes full attention in every layer (no sliding window)")
        mask = valid[:, None, None, :]
        if impl == "eager":
            dtype = self.language_model.embed_tokens.weight.dtype
            mask = torch.zeros(mask.shape, dtype=dtype, device=valid.device).masked_fill(~mask, torch.finfo(dtype).min)
        elif impl != "sdpa":
            raise ValueError(f"the 'engine' rollout backend runs attention through 'sdpa' or 'eager', not {impl!r}; "
                             "set model.attn_implementation=sdpa or use rollout.backend=cached")
        return {"full_attention": mask} if self.mask_by_layer_type else mask


@functools.cache
def _cache_kwarg(model_class: type) -> str:
    """The name a language model's forward takes its KV cache by: transformers 5.24 renamed `past_key_values`
    to `cache` (the old name warns, and goes in 5.40)."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"
