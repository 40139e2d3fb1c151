"""Evaluation: rows decoded by the training rollout and scored by the training reward mix.

One code path serves the trainer's held-out evaluation (`Trainer.evaluate`, every `trainer.eval_every` steps)
and `vlrl eval` (any checkpoint, any schema-v1 split), so the accuracy `vlrl eval` reports for a checkpoint is
the number the trainer logged at that step:

- `encode_rows` turns rows into prompt batches (`group_size` completions each);
- `evaluate` decodes them — greedily, or sampled with one seed per prompt (`vlrl.rollout.sampling`) so a row's
  samples do not depend on the batch it is in — and scores every completion with `RewardMixer.score`;
- `greedy_metrics` are the trainer's `eval/…` metrics; `sampled_metrics` add pass@k and mean@k.

A completion's accuracy is its `accuracy` reward component, or its total reward where the mix has no accuracy
term; a term that did not apply (NaN) counts 0. pass@k follows Chen et al. 2021 (Codex, arXiv 2107.03374): with
n samples of a prompt of which c are correct, 1 - C(n-c, k) / C(n, k) is an unbiased estimate of the chance that
at least one of k samples is correct. Here a sample is correct when its accuracy reaches `threshold` (1 by
default, so a partial credit such as an OCR similarity of 0.8 is not a pass); mean@k is the mean accuracy of the
samples, partial credit included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from vlrl.config import RolloutConfig
from vlrl.data import PromptBatch, PromptEncoder, Row
from vlrl.rewards import RewardMixer
from vlrl.rewards.mixer import Scores
from vlrl.rollout import RolloutBackend, Rollouts, make_backend
from vlrl.scoring import reward_inputs

EVAL_BATCH = 64  # completions per rollout call (the trainer's held-out evaluation: 64 greedy prompts)


@dataclass
class Evaluation:
    """The scored completions of an evaluation: `group_size` per row, rows in order (row r's completions are
    r*G .. r*G+G-1)."""

    rows: list[Row]  # [R]
    group_size: int  # G: 1 for greedy decoding
    texts: list[str]  # [R*G]
    inputs: list  # [R*G] RewardInput, as the mixer scored them
    specs: list  # [R*G] each row's reward override (or None)
    scores: Scores  # [R*G]


def encode_rows(rows: Sequence[Row], encoder: PromptEncoder, group_size: int = 1,
                batch_size: int = EVAL_BATCH) -> list[PromptBatch]:
    """Prompt batches of `rows` in order, about `batch_size` completions each (at least one prompt)."""
    per_batch = max(1, batch_size // group_size)
    return [encoder(rows[s:s + per_batch], group_size) for s in range(0, len(rows), per_batch)]


def evaluate(policy, batches: Sequence[PromptBatch], mixer: RewardMixer, rollout_cfg: RolloutConfig,
             progress: float, seeds: Sequence[int] | None = None, device=None,
             run: Callable[[Callable[[], list[Rollouts]]], list[Rollouts]] | None = None,
             backend: RolloutBackend | None = None) -> Evaluation:
    """Decode and score `batches` (from `encode_rows`): greedy without `seeds`, else sampled at
    `rollout_cfg.temperature` with seeds[i] driving prompt i (counted over all batches). `progress` (0-1) is
    what the rewards' schedules see (the trainer passes step / total_steps). `run(decode)` calls `decode`, which
    decodes every batch, as the caller needs (the trainer: with FSDP2's weights gathered once); default: calls it.
    Every batch goes to `device` (default the policy's). `backend`: the rollout backend to decode with (the
    trainer's own; default one made for `policy` and `rollout_cfg`)."""
    device = device if device is not None else policy.device
    batches = [batch.to(device) for batch in batches]
    starts = [sum(b.num_prompts for b in batches[:i]) for i in range(len(batches))]

    backend = backend if backend is not None else make_backend(policy, rollout_cfg)

    def decode() -> list[Rollouts]:
        if seeds is None:
            return [backend.generate(batch, greedy=True) for batch in batches]
        return [backend.generate(batch, seeds=list(seeds[s:s + batch.num_prompts]))
                for batch, s in zip(batches, starts, strict=True)]

    decoded = run(decode) if run is not None else decode()
    rows, texts, inputs, specs, parts = [], [], [], [], []
    for batch, rollouts in zip(batches, decoded, strict=True):
        batch_inputs, batch_specs = reward_inputs(batch, rollouts, progress, rollout_cfg.max_new_tokens)
        parts.append(mixer.score(batch_inputs, batch_specs))
        rows += batch.rows
        texts += rollouts.texts
        inputs += batch_inputs
        specs += batch_specs
    group = batches[0].group_size if batches else 1
    scores = Scores.concat(parts) if parts else Scores(torch.zeros(0), {}, [])
    return Evaluation(rows=rows, group_size=group, texts=texts, inputs=inputs, specs=specs, scores=scores)


def accuracies(scores: Scores, term: str = "accuracy") -> torch.Tensor:
    """Accuracy of each completion [N]: the component `term` (reward.accuracy_term), else the total; NaN (did not
    apply) is 0."""
    acc = scores.components.get(term)
    return torch.nan_to_num(acc if acc is not None else scores.total, nan=0.0)


def means_by_source(values: dict[str, torch.Tensor], sources) -> dict[str, float]:
    """Each named [R] tensor's mean over all rows (`name`) and over each data source's rows (`name/<source>`);
    `sources` [R] names each row's source."""
    out = {name: v.mean().item() for name, v in values.items()}
    for source in sorted(set(sources)):
        sel = torch.tensor([s == source for s in sources])
        out.update({f"{name}/{source}": v[sel].mean().item() for name, v in values.items()})
    return out


def greedy_metrics(scores: Scores, prefix: str = "eval", term: str = "accuracy") -> dict[str, float]:
    """The trainer's evaluation metrics of greedy completions (one per row): `{prefix}/reward`,
    `{prefix}/accuracy` (of the component `term`, see `accuracies`) and both per data source,
    `{prefix}/accuracy/<source>`, `{prefix}/reward/<source>`."""
    total, acc, sources = scores.total, accuracies(scores, term), scores.data_sources
    if not len(sources):
        return {}
    return means_by_source({f"{prefix}/reward": total, f"{prefix}/accuracy": acc}, sources)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (needs k <= n).

    >>> pass_at_k(4, 1, 2)  # 1 - C(3, 2) / C(4, 2) = 1 - 3/6
    0.5
    """
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 < k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every choice of k samples holds a correct one
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def sampled_metrics(scores: Scores, group_size: int, k: int, threshold: float = 1.0,
                    prefix: str = "eval", term: str = "accuracy") -> dict[str, float]:
    """pass@k and mean@k over rows of `group_size` (n) samples each, overall and per data source:
    `{prefix}/pass@k`, `{prefix}/mean@k`, `{prefix}/pass@k/<source>`, `{prefix}/mean@k/<source>`. Each is a
    mean over rows (every row weighs the same), as greedy accuracy is."""
    acc = accuracies(scores, term).view(-1, group_size)  # [R, n]
    if not acc.numel():
        return {}
    correct = (acc >= threshold).sum(-1).tolist()
    passed = torch.tensor([pass_at_k(group_size, c, k) for c in correct], dtype=torch.float64)
    mean = acc.double().mean(-1)
    sources = scores.data_sources[::group_size]
    return means_by_source({f"{prefix}/pass@{k}": passed, f"{prefix}/mean@{k}": mean}, sources)
