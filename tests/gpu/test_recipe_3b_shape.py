"""The 3B recipe on a random-weight model of Qwen2.5-VL-3B's exact layout: 2 GRPO steps on one GPU.
Skipped where no CUDA device exists (CI); run on a GPU machine with `python -m pytest -q tests/gpu`.
`VLRL_RANDOM_3B_DIR=DIR` reuses a model that `vlrl models random --like qwen2.5-vl-3b DIR` wrote (as
`scripts/gpu_check.sh` does); without it the test builds one in its temporary directory."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from vlrl.config import Config
from vlrl.config_loader import load_config
from vlrl.metrics import read_metrics
from vlrl.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.gpu
def test_qwen2_5_vl_3b_recipe_runs_two_steps(tmp_path, shapes_dir):
    from data_pipelines.synthetic.shapes import WORDS
    from vlrl.models.tiny import build_random_model

    model_dir = Path(os.environ.get("VLRL_RANDOM_3B_DIR") or tmp_path / "qwen3b_random")
    if not (model_dir / "config.json").exists():
        build_random_model(model_dir, like="qwen2.5-vl-3b", words=WORDS, device="cuda")
    cfg = load_config(Config, ROOT / "configs" / "qwen2_5_vl_3b_grpo.yaml", [
        f"model.path={model_dir}", f"data.path={shapes_dir}", f"trainer.output_dir={tmp_path / 'run'}",
        "trainer.total_steps=2", "trainer.eval_every=0", "trainer.save_every=0", "rollout.max_new_tokens=64",
        "trainer.progress_bar=false", "data.unknown_tokens=ignore",  # the demo vocabulary lacks the suffix's words
    ])
    torch.cuda.reset_peak_memory_stats()
    Trainer(cfg).fit()
    steps = [ln for ln in read_metrics(tmp_path / "run") if "loss/loss" in ln]
    assert len(steps) == 2 and all(math.isfinite(s["loss/loss"]) for s in steps)
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB;",
          {k: round(v, 3) for k, v in steps[-1].items() if k.startswith("perf/")})
