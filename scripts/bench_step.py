"""A full GRPO step on a GPU — rollout + reward + update — at the shape of issue 4, on a random-weight model with
Qwen2.5-VL-3B's exact layout built offline (as `vlrl models random --like qwen2.5-vl-3b`).

    python scripts/bench_step.py                          # 8 prompts x G=8, 448x448 images, 256 tokens, bf16
    python scripts/bench_step.py --backend cached --no-shared-prompt
    python scripts/bench_step.py --device cpu --tiny      # smoke test: tiny model, CPU, small sizes
    python scripts/bench_step.py --json figures.json      # also write the figures (after each step)

The run is `configs/qwen2_5_vl_3b_grpo.yaml` (bf16, activation checkpointing, frozen vision tower, one update
per batch) through `vlrl.trainer.Trainer.train_step`, with completions forced to full length (EOS banned next
to the vision placeholders) so every step decodes prompts x G x tokens. It prints the command, the device,
each stage's median seconds over the timed steps (after warm-up steps), the update's model TFLOP/s and MFU
(`vlrl/perf.py`) and the peak GPU memory. `--json OUT` writes the same figures as JSON, rewritten after each step
so that a run cut short still leaves the steps it finished (`scripts/gpu_check.py` reads it).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from figures_json import write_json

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (only with --tiny)")
    ap.add_argument("--tiny", action="store_true", help="the tiny test model and small sizes (a smoke test)")
    ap.add_argument("--like", default="qwen2.5-vl-3b", help="released model shape to copy")
    ap.add_argument("--model-dir", default="", help="where the random (or, with --tiny, tiny) model is written "
                    "(reused if present)")
    ap.add_argument("--backend", default="engine", choices=["engine", "cached", "reference"])
    ap.add_argument("--no-shared-prompt", action="store_true", help="run every row whole in the update")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--steps", type=int, default=3, help="timed steps")
    ap.add_argument("--overrides", nargs="*", default=[], help="extra key=value config overrides")
    ap.add_argument("--json", default="", metavar="OUT", help="also write the figures to this JSON file")
    args = ap.parse_args()
    args.prompts, args.group_size, args.image_size, args.new_tokens = (2, 2, 56, 8) if args.tiny else (8, 8, 448, 256)
    return args


def write_rows(out: Path, n: int, size: int) -> Path:
    """n schema-v1 rows, each a random-noise image and a short counting question."""
    import datasets
    import numpy as np
    from PIL import Image

    from vlrl.data.schema import SCHEMA_FEATURES

    rng = np.random.default_rng(0)
    rows = [{"id": f"r{i}", "images": [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))],
             "problem": "how many shapes are there ?", "answer": "3", "task": "count", "data_source": "bench",
             "reward": "", "reasoning": "", "meta": ""} for i in range(n)]
    datasets.DatasetDict(train=datasets.Dataset.from_list(rows, features=SCHEMA_FEATURES)).save_to_disk(str(out))
    return out


def model_path(args: argparse.Namespace, tmp: Path) -> Path:
    from data_pipelines.synthetic.shapes import WORDS
    from vlrl.models.tiny import build_random_model, build_tiny_model

    if args.tiny:
        path = Path(args.model_dir or tmp / "tiny")
        return path if (path / "config.json").exists() else build_tiny_model(path, words=WORDS)
    path = Path(args.model_dir or tmp / args.like)
    if not (path / "config.json").exists():
        start = time.perf_counter()
        pixels = args.image_size**2
        build_random_model(path, like=args.like, words=WORDS, dtype="bfloat16", min_pixels=pixels,
                           max_pixels=pixels, device=args.device)
        print(f"built random {args.like} in {path} ({time.perf_counter() - start:.0f} s)")
    return path


def make_trainer(args: argparse.Namespace, tmp: Path):
    from vlrl.config import Config
    from vlrl.config_loader import load_config
    from vlrl.trainer import Trainer

    pixels = args.image_size**2
    overrides = [
        f"model.path={model_path(args, tmp)}", f"data.path={write_rows(tmp / 'data', 4 * args.prompts, args.image_size)}",
        f"trainer.output_dir={tmp / 'run'}", f"data.prompts_per_step={args.prompts}",
        f"rollout.group_size={args.group_size}", f"rollout.max_new_tokens={args.new_tokens}",
        f"rollout.backend={args.backend}", f"model.min_pixels={pixels}", f"model.max_pixels={pixels}",
        f"algorithm.shared_prompt={not args.no_shared_prompt}", "data.eval_split=''", "trainer.eval_every=0",
        "trainer.save_every=0", "trainer.progress_bar=false", f"trainer.total_steps={args.warmup + args.steps}",
        # Random weights with the demo's word-level vocabulary: the recipe's English prompt suffix has words it
        # lacks, which only matters for learning, not for timing a step.
        "data.unknown_tokens=ignore", "trainer.save_every_minutes=0",
    ]
    if args.tiny:
        overrides += ["model.dtype=float32", "model.gradient_checkpointing=false", f"trainer.device={args.device}"]
    cfg = load_config(Config, ROOT / "configs" / "qwen2_5_vl_3b_grpo.yaml", overrides + args.overrides)
    trainer = Trainer(cfg)
    # Force full-length completions: EOS joins the banned vision placeholders.
    trainer.policy = dataclasses.replace(
        trainer.policy, banned_token_ids=tuple(sorted({*trainer.policy.banned_token_ids,
                                                       *trainer.policy.eos_token_ids})))
    return trainer


def summary(args: argparse.Namespace, rows: list[dict[str, float]]) -> dict:
    """Figures of the timed steps so far: medians of every perf/ metric, the completion tokens per second of the
    rollout and of the whole step, and the largest peak memory."""
    def median(key):
        values = [r[key] for r in rows if key in r]
        return statistics.median(values) if values else None

    perf = {key: median(key) for key in sorted({k for r in rows for k in r if k.startswith("perf/")})}
    tokens = args.prompts * args.group_size * args.new_tokens
    rollout_s, step_s = perf.get("perf/rollout_s"), perf.get("perf/step_s")
    peaks = [r["perf/peak_gib"] for r in rows if "perf/peak_gib" in r]
    return dict(
        steps_timed=len(rows), step_s=step_s, rollout_s=rollout_s, reward_s=perf.get("perf/reward_s"),
        update_s=perf.get("perf/update_s"), old_logprobs_s=perf.get("perf/old_logprobs_s"),
        rollout_tok_s=tokens / rollout_s if rollout_s else None, step_tok_s=tokens / step_s if step_s else None,
        update_tflops=perf.get("perf/update_tflops"), mfu=perf.get("perf/mfu"),
        peak_gib=max(peaks) if peaks else None, completion_len_mean=median("rollout/length_mean"), perf=perf)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_step.py: no CUDA device here. Run it on a GPU machine, or `--device cpu --tiny` for a smoke test.")
    if device.type == "cpu" and not args.tiny:
        sys.exit("bench_step.py: --device cpu runs only with --tiny.")
    print("command:", "python " + " ".join(sys.argv))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}")
    report = dict(command="python " + " ".join(sys.argv), device=name, torch=torch.__version__,
                  model="tiny" if args.tiny else args.like, backend=args.backend,
                  shared_prompt=not args.no_shared_prompt, prompts=args.prompts, group_size=args.group_size,
                  image_size=args.image_size, new_tokens=args.new_tokens, warmup=args.warmup, steps=[],
                  figures=summary(args, []))
    write_json(args.json, report)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(args, Path(tmp))
        rows = []
        for step in range(args.warmup + args.steps):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            metrics = trainer.train_step(step)
            if device.type == "cuda":
                torch.cuda.synchronize()
            metrics["perf/step_s"] = time.perf_counter() - start
            if device.type == "cuda":
                metrics["perf/peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
            if step >= args.warmup:
                rows.append(metrics)
            report["steps"].append(dict(step=step, warmup=step < args.warmup, **{
                k: v for k, v in metrics.items() if k.startswith("perf/") or k == "rollout/length_mean"}))
            report["figures"] = summary(args, rows)
            write_json(args.json, report)
        tokens = rows[-1]["rollout/length_mean"] if "rollout/length_mean" in rows[-1] else float("nan")
    print(f"{args.prompts} prompts x G={args.group_size}, {args.image_size}x{args.image_size} images, "
          f"{args.new_tokens} forced tokens (mean completion length {tokens:.0f}); backend {args.backend}, "
          f"shared prompt {not args.no_shared_prompt}; median of {args.steps} steps after {args.warmup} warm-up")
    keys = sorted(k for k in rows[0] if k.startswith("perf/"))
    for key in keys:
        print(f"  {key:<24} {statistics.median(r[key] for r in rows):10.3f}")


if __name__ == "__main__":
    main()
