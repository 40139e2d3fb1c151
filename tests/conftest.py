"""Shared fixtures: a tiny Qwen2.5-VL and a small synthetic dataset, built offline once per session."""

from __future__ import annotations

import pytest
import torch

from vlrl.config import Config
from vlrl.config_loader import load_config


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from vlrl.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), seed=0)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
    from data_pipelines.synthetic.shapes import build_shapes_dataset

    out = tmp_path_factory.mktemp("shapes")
    build_shapes_dataset(out, train_rows_per_task=64, eval_rows_per_task=8, seed=0)
    return out


@pytest.fixture
def tiny_config(tiny_model_dir, shapes_dir, tmp_path):
    """A config for a few fast CPU steps on the tiny model; extend with overrides."""

    def make(*overrides: str) -> Config:
        return load_config(Config, None, [
            f"model.path={tiny_model_dir}", f"data.path={shapes_dir}", f"trainer.output_dir={tmp_path / 'run'}",
            "data.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=6",
            "trainer.total_steps=2", "trainer.eval_every=0", "trainer.save_every=0", "trainer.progress_bar=false",
            "trainer.device=cpu", "data.max_eval_rows=16", "optim.warmup_steps=0", "data.source_weights={}",
            *overrides,
        ])

    return make
