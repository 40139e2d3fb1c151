"""Qwen2.5-VL: boxes in absolute pixels of the resized input image, and a vision tower that runs most blocks
inside attention windows, on merge groups permuted into window order; the tower undoes the permutation after
the merger. For the frozen-tower reuse the permutation is undone on the states instead (the merger maps each
group of spatial_merge_size**2 consecutive rows on its own), so row i of the states is patch i."""

from __future__ import annotations

import torch

from vlrl.models.base import Policy


class Qwen2_5_VLPolicy(Policy):  # noqa: N801 - the family's name
    model_type = "qwen2_5_vl"
    display_name = "Qwen2.5-VL"
    box_format = "qwen2_5_vl"
    vision_projections = ("qkv", "proj", "gate_proj", "up_proj", "down_proj")

    def vision_states(self, pixel_values: torch.Tensor | None, image_grid_thw: torch.Tensor | None
                      ) -> torch.Tensor | None:
        if pixel_values is None:
            return None
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import get_vision_window_index

        visual = self.visual
        out = visual(pixel_values.to(visual.dtype), grid_thw=image_grid_thw, return_dict=True)
        window_index, _ = get_vision_window_index(image_grid_thw, spatial_merge_size=visual.spatial_merge_size,
                                                  window_size=visual.window_size, patch_size=visual.patch_size)
        states = out.last_hidden_state
        unit, width = visual.spatial_merge_size**2, states.shape[-1]
        return states.view(-1, unit, width)[torch.argsort(window_index)].reshape(-1, width)
