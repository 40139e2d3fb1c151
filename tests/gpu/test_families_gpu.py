"""Each family's recipe on a random-weight model of one of its released sizes, bf16 on one GPU: the engine's
greedy rollout (CUDA graphs) equals the cached backend's, and two GRPO steps of the recipe run. Skipped where no
CUDA device exists (CI); run on a GPU machine with `python -m pytest -q tests/gpu/test_families_gpu.py`.
About 20-40 s per family on an H200 (weights drawn on the GPU)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from vlrl.config import Config, ModelConfig, RolloutConfig
from vlrl.config_loader import load_config
from vlrl.metrics import read_metrics
from vlrl.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
CASES = [("qwen2-vl-2b", "qwen2_vl_2b_grpo.yaml"), ("qwen2.5-vl-3b", "qwen2_5_vl_3b_grpo.yaml"),
         ("qwen3-vl-2b", "qwen3_vl_4b_grpo.yaml")]


@pytest.mark.gpu
@pytest.mark.parametrize("like, recipe", CASES)
def test_family_recipe_on_a_released_size(like, recipe, tmp_path, shapes_dir):
    from data_pipelines.synthetic.shapes import WORDS, shape_rows
    from vlrl.data import PromptEncoder, validate_row
    from vlrl.models.policy import load_policy
    from vlrl.models.tiny import build_random_model
    from vlrl.rollout import generate

    model_dir = build_random_model(tmp_path / "model", like=like, words=WORDS, device="cuda")
    policy = load_policy(ModelConfig(dtype="bfloat16"), model_dir, device="cuda")
    rows = [validate_row(r, i) for i, r in enumerate(shape_rows("count", 4, seed=1, image_size=224))]
    batch = PromptEncoder.for_policy(policy, 3136, 200704)(rows, group_size=1)
    outs = {b: generate(policy, batch, RolloutConfig(backend=b, max_new_tokens=16), greedy=True)
            for b in ("cached", "engine")}
    assert outs["engine"].completion_ids.tolist() == outs["cached"].completion_ids.tolist()
    del policy
    torch.cuda.empty_cache()

    cfg = load_config(Config, ROOT / "configs" / recipe, [
        f"model.path={model_dir}", f"data.path={shapes_dir}", f"trainer.output_dir={tmp_path / 'run'}",
        "trainer.total_steps=2", "trainer.eval_every=0", "trainer.save_every=0", "rollout.max_new_tokens=64",
        "trainer.progress_bar=false", "data.unknown_tokens=ignore",
    ])
    Trainer(cfg).fit()
    steps = [ln for ln in read_metrics(tmp_path / "run") if "loss/loss" in ln]
    assert len(steps) == 2 and all(math.isfinite(s["loss/loss"]) for s in steps)
