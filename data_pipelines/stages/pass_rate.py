"""Optional difficulty filter: drop RL rows the policy always solves or never solves.

A group whose G samples all score the same gives GRPO no signal (its advantages are all zero), so rows the
starting policy solves k times out of k, or 0 times out of k, cost rollout time and teach nothing (the
filter V-Triune applies before training). The pass rate is measured with the training code: the rollout
backend samples k completions per row and ``vlrl.rewards``' ``accuracy`` scores them, routed by task.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import torch
from tqdm.auto import tqdm

from data_pipelines.config import PassRateConfig
from data_pipelines.records import Drop
from vlrl.config import ModelConfig, RewardConfig, RolloutConfig
from vlrl.data import PromptEncoder, validate_row
from vlrl.rewards import RewardInput, RewardMixer

STAGE = "pass_rate"


@dataclass
class PassRateResult:
    ds_in: datasets.Dataset
    drops: list
    stats: dict
    rates: list  # [rows of ds_in] pass rate of each row


def pass_rate_filter(ds: datasets.Dataset, cfg: PassRateConfig, seed: int = 0) -> tuple[datasets.Dataset, PassRateResult]:
    if not cfg.model:
        raise ValueError("pass_rate.model: the pass-rate filter needs the policy checkpoint to measure")
    rates = measure_pass_rates(ds, cfg, seed)
    keep, drops = [], []
    for i, (row_id, rate) in enumerate(zip(ds["id"], rates, strict=True)):
        if rate <= cfg.min_rate:
            drops.append(Drop(row_id, STAGE, "too_hard", f"pass rate {rate:.2f} <= {cfg.min_rate}"))
        elif rate >= cfg.max_rate:
            drops.append(Drop(row_id, STAGE, "too_easy", f"pass rate {rate:.2f} >= {cfg.max_rate}"))
        else:
            keep.append(i)
    stats = {"k": cfg.k, "mean_pass_rate": sum(rates) / len(rates) if rates else 0.0}
    return ds.select(keep), PassRateResult(ds, drops, stats, rates)


def measure_pass_rates(ds: datasets.Dataset, cfg: PassRateConfig, seed: int = 0) -> list[float]:
    """Share of ``cfg.k`` sampled completions per row that the accuracy verifier accepts (score >= 0.5)."""
    from vlrl.models.policy import load_policy
    from vlrl.rollout import generate

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model_cfg = ModelConfig(path=cfg.model, dtype=cfg.dtype, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
    policy = load_policy(model_cfg, cfg.model, device)
    policy.model.eval()
    encoder = PromptEncoder.for_policy(policy, model_cfg.min_pixels, model_cfg.max_pixels)
    rollout = RolloutConfig(group_size=cfg.k, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature)
    mixer = RewardMixer(RewardConfig(terms=[{"name": "accuracy", "weight": 1.0,
                                             "params": {"box_format": cfg.box_format}}], per_task={}, workers=0))
    generator = torch.Generator(device=device).manual_seed(seed)
    rates: list[float] = []
    try:
        for start in tqdm(range(0, len(ds), cfg.batch_prompts), desc=STAGE, unit="batch"):
            rows = [validate_row(ds[i], i) for i in range(start, min(start + cfg.batch_prompts, len(ds)))]
            batch = encoder(rows, cfg.k).to(device)
            with torch.no_grad():
                out = generate(policy, batch, rollout, generator=generator)
            inputs = [
                RewardInput(completion=text, answer=row.answer, task=row.task, data_source=row.data_source,
                            image_sizes=batch.image_sizes[p], resized_sizes=batch.resized_sizes[p], meta=row.meta,
                            progress=1.0)
                for p, row in enumerate(rows) for text in out.texts[p * cfg.k:(p + 1) * cfg.k]
            ]
            acc = torch.nan_to_num(mixer.score(inputs).components["accuracy"], nan=0.0)
            rates += ((acc >= 0.5).float().view(len(rows), cfg.k).mean(dim=1)).tolist()
    finally:
        mixer.close()
    return rates
