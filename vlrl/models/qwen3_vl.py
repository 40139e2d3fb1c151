"""Qwen3-VL (dense): 16-pixel patches, interleaved mRoPE (both inside transformers' classes and processor), and
deepstack — the outputs of a few vision blocks (`vision_config.deepstack_visual_indexes`) each go through their
own merger (`deepstack_merger_list[j]`) and are added to the language model's hidden states at the image
positions after decoder layer j. The language model takes them as `visual_pos_masks` (where the image tokens
are) and `deepstack_visual_embeds` (one tensor per layer, rows in image-token order), so every forward that has
image tokens passes them; decode steps and completion tokens have none.

Frozen-tower reuse keeps, per patch, the final state and the states after each deepstack block, side by side
in one row ([patches, C * (1 + k)]), so a subset of images is still a slice of rows.
Grounding answers give boxes on a 0-1000 grid of the image."""

from __future__ import annotations

import torch

from vlrl.models.base import ImageFeatures, Policy


class Qwen3VLPolicy(Policy):
    model_type = "qwen3_vl"
    display_name = "Qwen3-VL"
    box_format = "rel1000"
    connector_prefixes = ("merger.", "deepstack_merger_list.")
    vision_projections = ("qkv", "proj", "linear_fc1", "linear_fc2")
    mask_by_layer_type = False  # the text model hands the mask to transformers' builder, which keeps a 4-D one

    def connector_modules(self) -> list[str]:
        return ["merger", *(f"deepstack_merger_list.{j}" for j in range(len(self.visual.deepstack_merger_list)))]

    def vision_states(self, pixel_values, image_grid_thw) -> torch.Tensor | None:
        if pixel_values is None:
            return None
        visual = self.visual
        captured: dict[int, torch.Tensor] = {}
        hooks = [visual.blocks[i].register_forward_hook(
                     lambda _m, _args, out, i=i: captured.__setitem__(i, out[0] if isinstance(out, tuple) else out))
                 for i in visual.deepstack_visual_indexes]
        try:
            out = visual(pixel_values.to(visual.dtype), grid_thw=image_grid_thw, return_dict=True)
        finally:
            for h in hooks:
                h.remove()
        return torch.cat([out.last_hidden_state, *(captured[i] for i in visual.deepstack_visual_indexes)], -1)

    def features_from_states(self, states: torch.Tensor) -> ImageFeatures:
        visual = self.visual
        parts = [p.contiguous() for p in states.chunk(1 + len(visual.deepstack_visual_indexes), dim=-1)]
        return ImageFeatures(visual.merger(parts[0]),
                             tuple(m(p) for m, p in zip(visual.deepstack_merger_list, parts[1:], strict=True)))

    def language_inputs(self, input_ids: torch.Tensor, features: ImageFeatures | None) -> dict:
        if features is None or not features.deepstack:
            return {}
        return {"visual_pos_masks": input_ids == self.core.config.image_token_id,
                "deepstack_visual_embeds": list(features.deepstack)}


class Qwen3VLMoePolicy(Qwen3VLPolicy):
    """Qwen3-VL-MoE (e.g. 30B-A3B): the same vision side and deepstack; the language model's MLPs are mixtures
    of experts, which transformers' decoder layers run inside `forward_tokens` like any other layer. LoRA
    adapts the attention projections (`model.lora_target_modules`); experts stored as fused 3-D weights are
    not nn.Linear modules, so peft does not adapt them."""

    model_type = "qwen3_vl_moe"
    display_name = "Qwen3-VL-MoE"
