"""Update speed on the tiny default (CPU): each prompt once per micro-batch (`algorithm.shared_prompt=true`)
against every row as prompt + completion.

    python scripts/bench_update_cpu.py [--prompts 32] [--group-size 16] [--max-new-tokens 4]
                                       [--micro-batch-size 512] [--repeats 5] [--checkpointing] [--threads N]

One "update epoch" is what `update_policy` does once per PPO epoch: forward and backward of every micro-batch
and an optimiser step (SGD with lr 0 here, so every repeat sees the same weights); "log-probs" is one no-grad
pass (old / reference log-probs). The two modes alternate within each repeat (median of the repeats, after a
warm-up), so a busy machine slows both alike. Prints the command, the machine, the token counts through the
language model and the times.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--group-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=4)
    ap.add_argument("--micro-batch-size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--checkpointing", action="store_true", help="activation checkpointing of the LM layers")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from accelerate import Accelerator

    from data_pipelines.synthetic.shapes import WORDS, shape_rows
    from vlrl.config import AlgorithmConfig, ModelConfig, RolloutConfig
    from vlrl.data import PromptEncoder, validate_row
    from vlrl.models.policy import load_policy
    from vlrl.models.tiny import build_tiny_model
    from vlrl.rollout import generate
    from vlrl.update import (
        CompletionForward,
        LossTotals,
        Optimisation,
        UpdateBatch,
        batch_logprobs,
        micro_batches,
        update_policy,
    )

    print("command:", "python " + " ".join(sys.argv))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        policy = load_policy(ModelConfig(freeze_vision=False, gradient_checkpointing=args.checkpointing),
                             build_tiny_model(tmp, words=WORDS))
    half = args.prompts // 2
    raw = shape_rows("colour", half, seed=0) + shape_rows("count", args.prompts - half, seed=0)
    batch = PromptEncoder(policy.processor, 56 * 56, 112 * 112)([validate_row(r, i) for i, r in enumerate(raw)],
                                                                args.group_size)
    policy.prompt_positions(batch)
    rollouts = generate(policy, batch, RolloutConfig(max_new_tokens=args.max_new_tokens),
                        generator=torch.Generator().manual_seed(0))
    N, (P, L), T = len(rollouts.texts), batch.input_ids.shape, rollouts.completion_ids.shape[1]
    print(f"batch: {P} prompts x {args.group_size} = {N} rows, prompt length L={L} (padded), completion T={T}")
    print(f"LM tokens per pass: per-sequence {N * (L + T):,}, prompt once {P * L + N * (T - 1):,}")

    accelerator = Accelerator(cpu=True)
    forward = CompletionForward(policy.model)
    optimizer = torch.optim.SGD([p for p in forward.parameters() if p.requires_grad], lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    cfg = AlgorithmConfig(updates_per_batch=1)
    rows = torch.arange(N)
    totals = LossTotals(float(rollouts.completion_mask.sum()), float(N), args.max_new_tokens)
    advantages = torch.linspace(-1, 1, N)
    times = {(mode, what): [] for mode in (False, True) for what in ("update", "logprobs")}
    for r in range(args.repeats + 1):
        for shared in (False, True):
            chunks = micro_batches(batch, rollouts, rows, args.micro_batch_size, shared_prompt=shared)
            start = time.perf_counter()
            forward.train()
            update_policy(policy, forward, accelerator, Optimisation(optimizer, scheduler, 1.0),
                          UpdateBatch(chunks, advantages, totals, 1.0), cfg)
            middle = time.perf_counter()
            forward.eval()
            batch_logprobs(policy, forward, chunks, 1.0, cfg)
            if r:  # the first round warms up
                times[shared, "update"].append(middle - start)
                times[shared, "logprobs"].append(time.perf_counter() - middle)
    for what in ("update", "logprobs"):
        per_seq, shared = (statistics.median(times[m, what]) for m in (False, True))
        label = "update epoch (fwd+bwd+step)" if what == "update" else "log-probs (no grad)"
        print(f"{label:>28}: per-sequence {per_seq * 1000:7.1f} ms, prompt once {shared * 1000:7.1f} ms "
              f"({per_seq / shared:.2f}x)")


if __name__ == "__main__":
    main()
