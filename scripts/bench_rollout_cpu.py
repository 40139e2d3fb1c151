"""Rollout speed on the tiny default (CPU): the `engine` and `cached` backends against the transformers
`generate` reference.

    python scripts/bench_rollout_cpu.py [--prompts 32] [--group-size 8] [--max-new-tokens 8] [--repeats 5]

Prints the command, the machine and milliseconds per rollout (median of the repeats) for each backend, and each
backend's speed relative to the reference.
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
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from data_pipelines.synthetic.shapes import WORDS, shape_rows
    from vlrl.config import ModelConfig, RolloutConfig
    from vlrl.data import PromptEncoder, validate_row
    from vlrl.models.policy import load_policy
    from vlrl.models.tiny import build_tiny_model
    from vlrl.rollout import generate
    from vlrl.rollout.sampling import prompt_seed

    print("command:", "python " + " ".join(sys.argv))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        policy = load_policy(ModelConfig(), build_tiny_model(tmp, words=WORDS))
    half = args.prompts // 2
    raw = shape_rows("colour", half, seed=0) + shape_rows("count", args.prompts - half, seed=0)
    rows = [validate_row(r, i) for i, r in enumerate(raw)]
    batch = PromptEncoder(policy.processor, 56 * 56, 112 * 112)(rows, args.group_size)
    policy.prompt_positions(batch)
    backends = ("engine", "cached", "reference")
    times: dict[str, list[float]] = {b: [] for b in backends}
    tokens: dict[str, int] = {}
    # Backends take turns within each repeat, so load from other work on the machine falls on all of them.
    for r in range(args.repeats + 1):
        for backend in backends:
            cfg = RolloutConfig(backend=backend, max_new_tokens=args.max_new_tokens)
            start = time.perf_counter()
            seeds = [prompt_seed(0, r, j) for j in range(args.prompts)]  # engine and cached: the same samples
            out = generate(policy, batch, cfg, seeds=seeds)
            if r:  # the first round warms up
                times[backend].append(time.perf_counter() - start)
            tokens[backend] = int(out.completion_mask.sum())
    medians = {b: statistics.median(t) for b, t in times.items()}
    for backend in backends:
        med = medians[backend]
        print(f"{backend:>9}: {med * 1000:7.1f} ms per rollout of {args.prompts}x{args.group_size} "
              f"({tokens[backend] / med:,.0f} completion tokens/s)")
    ref, cached, engine = medians["reference"], medians["cached"], medians["engine"]
    print(f"speed-up over reference: engine {ref / engine:.2f}x, cached {ref / cached:.2f}x; "
          f"engine over cached {cached / engine:.2f}x")

if __name__ == "__main__":
    main()
