"""A frozen vision tower's output, kept from the rollout, replaces re-encoding the images in the update
(rollout.reuse_vision): the features and the whole training step are the same as encoding again."""

from __future__ import annotations

import tempfile

import torch

from data_pipelines.synthetic.shapes import shape_rows
from vlrl.config import ModelConfig
from vlrl.data import PromptEncoder, validate_row
from vlrl.models.policy import load_policy
from vlrl.trainer import Trainer


def test_vision_states_give_the_towers_features_for_any_subset_of_images(tiny_model_dir):
    policy = load_policy(ModelConfig(freeze_vision=True), tiny_model_dir)
    rows = [validate_row(r, i) for i, r in enumerate(shape_rows("count", 3, seed=5, image_size=112))]
    batch = PromptEncoder(policy.processor, 56 * 56, 112 * 112)(rows, group_size=1)
    grid, pv = batch.image_grid_thw, batch.pixel_values
    with torch.no_grad():
        whole = policy.image_features(pv, grid)
        states = policy.vision_states(pv, grid)
        assert states.shape[0] == pv.shape[0]  # one row per patch, as pixel_values
        torch.testing.assert_close(policy.image_features(None, None, states).embeds, whole.embeds, rtol=1e-5,
                                   atol=1e-6)
        # Image 1 alone: its rows of the states give what encoding image 1 alone gives.
        start = [0, *grid.prod(-1).cumsum(0).tolist()]
        alone = policy.image_features(pv[start[1]:start[2]], grid[1:2])
        part = policy.image_features(None, None, states[start[1]:start[2]])
        torch.testing.assert_close(part.embeds, alone.embeds, rtol=1e-5, atol=1e-6)
    assert policy.vision_tower_frozen
    assert not load_policy(ModelConfig(freeze_vision=False), tiny_model_dir).vision_tower_frozen


def test_training_step_is_the_same_with_and_without_reuse(tiny_config, monkeypatch):
    results, towers = [], []
    for reuse in (False, True):
        trainer = Trainer(tiny_config(f"rollout.reuse_vision={reuse}", "model.freeze_vision=true",
                                      "algorithm.updates_per_batch=2", "optim.eps=1.0", "optim.lr=0.2",
                                      "algorithm.micro_batch_size=6", f"trainer.output_dir={tempfile.mkdtemp()}"))
        visual = trainer.policy.core.model.visual
        calls = []
        handle = visual.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        trainer.train_step(0)
        handle.remove()
        towers.append(len(calls))
        results.append({n: p.detach().clone() for n, p in trainer.policy.core.named_parameters() if p.requires_grad})
    # Without reuse the tower runs in the rollout and in every micro-batch of the old-log-prob pass and of both
    # epochs; with it, once per step.
    assert towers[1] == 1 and towers[0] > 3
    assert any("merger" in n for n in results[0])  # the merger trains, and gets the same update
    for name in results[0]:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=1e-4, atol=1e-6)
