"""The greedy probe (``algorithm.greedy_probe_prompts``): how far one step's update moves the policy's belief in
its own greedy answers, logged as ``rollout/greedy_logprob_delta``.

Definition. The probes are the step's first k prompts (k = greedy_probe_prompts), whichever processes hold them.
Before the update, decode each greedily (the rollout backend, group size 1): completion y, EOS or stop token
included, as the update's mask counts it. The metric is the mean over the probes of

    sum_t log pi_after(y_t | x, y_<t) - sum_t log pi_before(y_t | x, y_<t)

at ``rollout.temperature`` (the distribution the loss trains), both from the update's own forward. Positive: the
update made the model's current answer more likely (on prompts it was just trained on, e.g. sharpening); a large
negative value means it moved away from what it would answer now.

So that every process runs the same decode and forwards (collectives under FSDP and DDP), each probes the first
min(k, its share) of its own prompts and only those among the step's first k are counted: the metric is the
same for any number of processes.

Cost: one greedy decode of k prompts (as many decode steps as the longest greedy answer, up to
``rollout.max_new_tokens``: with a long completion limit about the rollout's own decode time, since decoding is
bound by steps, not rows) and two no-grad forwards of k rows. Off by default for that reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlrl.config import AlgorithmConfig
from vlrl.update import batch_logprobs, padded_micro_batches, with_full_parameters


@dataclass
class GreedyProbe:
    """The probes of this rank: their micro-batches and summed log-probs before the update."""

    chunks: list  # `padded_micro_batches` of the k probe rows
    mask: torch.Tensor  # [k, T] the greedy completions' masks
    before: torch.Tensor  # [k] summed log-probs of each greedy completion before the update
    counted: torch.Tensor  # [k] bool: the probe is one of the step's first greedy_probe_prompts prompts


def _summed_logprobs(policy, forward, probe_chunks, mask, temperature: float, cfg: AlgorithmConfig) -> torch.Tensor:
    logp = batch_logprobs(policy, forward, probe_chunks, temperature, cfg)  # [k, T]
    return (logp * mask.to(logp.dtype)).sum(-1)


def start_probe(policy, forward, backend, encode, accelerator, rows, first: int, temperature: float,
                cfg: AlgorithmConfig) -> GreedyProbe | None:
    """Decode the greedy answers to the first ``cfg.greedy_probe_prompts`` of ``rows`` (this rank's prompts of the
    step, the first being the step's prompt number ``first``) and take their log-probs, before the update; None
    when the option is 0. ``encode`` is the trainer's `PromptEncoder`. Every rank must call it."""
    k = min(cfg.greedy_probe_prompts, len(rows))
    if k <= 0:
        return None
    device = accelerator.device
    batch = encode(rows[:k], 1).to(device)
    greedy = with_full_parameters(policy, forward, lambda: backend.generate(batch, greedy=True))
    chunks = padded_micro_batches(accelerator, batch, greedy, torch.arange(k, device=device), cfg)
    mask = greedy.completion_mask
    counted = first + torch.arange(k, device=device) < cfg.greedy_probe_prompts
    return GreedyProbe(chunks, mask, _summed_logprobs(policy, forward, chunks, mask, temperature, cfg), counted)


def finish_probe(probe: GreedyProbe, policy, forward, accelerator, temperature: float, cfg: AlgorithmConfig
                 ) -> dict[str, float]:
    """``{"rollout/greedy_logprob_delta": mean over the step's first greedy_probe_prompts prompts of after - before}``,
    after the update. Every rank must call it."""
    after = _summed_logprobs(policy, forward, probe.chunks, probe.mask, temperature, cfg)
    delta = accelerator.gather((after - probe.before).double())
    counted = accelerator.gather(probe.counted)
    return {"rollout/greedy_logprob_delta": delta[counted].mean().item()}
