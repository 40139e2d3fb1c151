"""Shared fixtures: a tiny Qwen2.5-VL and a small synthetic dataset, built offline once per session."""

from __future__ import annotations

import os

import pytest
import torch

from vlrl.config import Config
from vlrl.config_loader import load_config


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (the README's test command): one worker per core, at most four (each worker holds its own tiny
    models, and the distributed tests start two more processes each); one where CUDA is there, so that the GPU
    tests never share the device."""
    return 1 if torch.cuda.is_available() else max(1, min(4, _cores()))


# Under pytest-xdist each worker takes its share of the cores for torch's threads, and so do the processes a test
# starts (`vlrl train`, the two-process launches): N workers each running 2-thread kernels on 2 cores spend their
# time waiting on each other (measured: the suite took as long with two workers as with one).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = str(max(1, _cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, _threads)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]) if os.environ["OMP_NUM_THREADS"].isdigit()
                          else int(_threads))


def pytest_configure(config):
    # `-n` without `--dist`: xdist's default ("load") deals the tests out in chunks up front, so the worker that
    # draws the long integration tests runs minutes after the other has finished (the suite on 2 cores: 597 s);
    # "worksteal" lets an idle worker take tests queued on a busy one (424 s). An explicit --dist is kept.
    explicit = any(a.startswith("--dist") for a in config.invocation_params.args)
    if getattr(config.option, "numprocesses", None) and config.option.dist == "load" and not explicit:
        config.option.dist = "worksteal"


def pytest_collection_modifyitems(config, items):
    # The full reward fuzz runs only when asked for by name (`-m full_fuzz`): minutes on a quiet machine.
    if "full_fuzz" not in (config.getoption("markexpr") or ""):
        skip_fuzz = pytest.mark.skip(reason="full fuzz: python -m pytest -q -m full_fuzz tests/unit/test_rewards_fuzz.py")
        for item in items:
            if "full_fuzz" in item.keywords:
                item.add_marker(skip_fuzz)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from data_pipelines.synthetic.shapes import WORDS
    from vlrl.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), words=WORDS, seed=0)


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


def _fresh_logprobs(policy, batch, rollouts, temperature: float) -> torch.Tensor:
    """Log-probs [N, T] of the sampled tokens from one plain HF forward of prompt + completion (no cache, images
    repeated per sample): independent of the backends' cache sharing and position bookkeeping."""
    from vlrl.rollout.reference import _repeat_images

    G = batch.group_size
    ids = torch.cat([batch.input_ids.repeat_interleave(G, 0), rollouts.completion_ids], 1)
    attn = torch.cat([batch.attention_mask.repeat_interleave(G, 0), rollouts.completion_mask], 1)
    mm = torch.cat([batch.mm_token_type_ids.repeat_interleave(G, 0), torch.zeros_like(rollouts.completion_ids)], 1)
    pixel_values, grid = _repeat_images(batch, G)
    policy.core.model.rope_deltas = None
    with torch.no_grad():
        logits = policy.core(input_ids=ids, attention_mask=attn, mm_token_type_ids=mm, pixel_values=pixel_values,
                             image_grid_thw=grid).logits.float()
    L, T = batch.input_ids.shape[1], rollouts.completion_ids.shape[1]
    logp = (logits[:, L - 1:L - 1 + T] / temperature).log_softmax(-1)
    return logp.gather(-1, rollouts.completion_ids.unsqueeze(-1)).squeeze(-1)


@pytest.fixture(scope="session")
def fresh_logprobs():
    """The independent log-prob check used by the rollout tests: fresh_logprobs(policy, batch, rollouts, T)."""
    return _fresh_logprobs
