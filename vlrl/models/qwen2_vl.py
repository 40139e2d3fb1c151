"""Qwen2-VL: the layout `vlrl.models.base` describes, as it is. The vision tower's blocks run on patches in
order (no attention windows), so its last hidden state is already the per-patch state the merger takes.
Grounding answers give boxes on a 0-1000 grid of the image."""

from __future__ import annotations

from vlrl.models.base import Policy


class Qwen2VLPolicy(Policy):
    model_type = "qwen2_vl"
    display_name = "Qwen2-VL"
    box_format = "rel1000"
    vision_projections = ("qkv", "proj", "fc1", "fc2")
