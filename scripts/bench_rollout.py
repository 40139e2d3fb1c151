"""Rollout speed on a GPU: each backend on a random-weight model with Qwen2.5-VL-3B's exact layout, built
offline (`vlrl.models.tiny.build_random_model`, the same as `vlrl models random --like qwen2.5-vl-3b`).

    python scripts/bench_rollout.py                      # 8 prompts x G=8, 448x448 images, 256 new tokens, bf16
    python scripts/bench_rollout.py --backends engine cached --repeats 5
    python scripts/bench_rollout.py --device cpu --tiny  # smoke test: tiny model, CPU, small sizes
    python scripts/bench_rollout.py --json figures.json  # also write the figures (after each backend)

Every completion is forced to its full length (EOS ids are banned alongside the vision placeholders), so each
backend decodes exactly prompts x G x new-tokens tokens. Per backend it prints the median over the repeats of
the whole rollout, of the vision tower and of the prompt prefill (each timed alone, by the calls the backend
makes: images once per prompt for `engine`/`cached`, G times for `reference`), decode = rollout - vision -
prefill, decode tokens/s, and the peak GPU memory above the loaded model. The `engine` backend captures its
CUDA graphs inside each rollout, so their capture is part of its decode time. `engine-eager` is the engine
with `rollout.cuda_graphs=false`. `--json OUT` writes the same figures as JSON, rewritten after each backend so
that a run cut short still leaves the backends it finished (`scripts/gpu_check.py` reads it).
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

BACKENDS = ("engine", "engine-eager", "cached", "reference")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--tiny", action="store_true", help="the tiny test model and small sizes (a smoke test)")
    ap.add_argument("--like", default="qwen2.5-vl-3b", help="released model shape to copy")
    ap.add_argument("--model-dir", default="", help="where the random (or, with --tiny, tiny) model is written "
                    "(reused if present)")
    ap.add_argument("--prompts", type=int, default=None, help="prompts per rollout (default 8; tiny 2)")
    ap.add_argument("--group-size", type=int, default=None, help="samples per prompt (default 8; tiny 2)")
    ap.add_argument("--image-size", type=int, default=None, help="square image side in pixels (default 448; tiny 56)")
    ap.add_argument("--new-tokens", type=int, default=None, help="forced completion length (default 256; tiny 16)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rollouts per backend, after one warm-up")
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--json", default="", metavar="OUT", help="also write the figures to this JSON file")
    args = ap.parse_args()
    small = dict(prompts=2, group_size=2, image_size=56, new_tokens=16)
    large = dict(prompts=8, group_size=8, image_size=448, new_tokens=256)
    for key, value in (small if args.tiny else large).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def load(args: argparse.Namespace, device: torch.device, tmp: str):
    """The policy (EOS banned, so completions run to full length) and its dtype name."""
    from data_pipelines.synthetic.shapes import WORDS
    from vlrl.config import ModelConfig
    from vlrl.models.policy import load_policy
    from vlrl.models.tiny import build_random_model, build_tiny_model

    pixels = args.image_size**2
    if args.tiny:
        path, dtype = Path(args.model_dir or Path(tmp) / "tiny"), "float32"
        if not (path / "config.json").exists():
            build_tiny_model(path, words=WORDS)
    else:
        path, dtype = Path(args.model_dir or Path(tmp) / args.like), "bfloat16"
        if not (path / "config.json").exists():
            start = time.perf_counter()
            build_random_model(path, like=args.like, words=WORDS, dtype=dtype, min_pixels=pixels, max_pixels=pixels,
                               device=args.device)
            print(f"built random {args.like} in {path} ({time.perf_counter() - start:.0f} s)")
    cfg = ModelConfig(dtype=dtype, attn_implementation="sdpa", min_pixels=pixels, max_pixels=pixels)
    policy = load_policy(cfg, path, device)
    forced = dataclasses.replace(policy, banned_token_ids=tuple(sorted({*policy.banned_token_ids,
                                                                         *policy.eos_token_ids})))
    return forced, dtype


def make_batch(policy, args: argparse.Namespace):
    """`prompts` rows, each one random-noise RGB image of image_size^2 and a short question."""
    from PIL import Image

    from vlrl.data import PromptEncoder, validate_row

    gen = torch.Generator().manual_seed(0)
    rows = []
    for i in range(args.prompts):
        pixels = torch.randint(0, 256, (args.image_size, args.image_size, 3), generator=gen, dtype=torch.uint8)
        rows.append(validate_row({"id": f"bench-{i}", "images": [Image.fromarray(pixels.numpy())],
                                  "problem": "what colour is the shape ?", "answer": "red", "task": "colour",
                                  "data_source": "bench"}, i))
    pixels = args.image_size**2
    return PromptEncoder(policy.processor, pixels, pixels)(rows, args.group_size)


def timed(fn, device: torch.device) -> float:
    """Seconds `fn()` takes, with the device's queued work finished before and after."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


@torch.no_grad()
def stage_times(policy, batch, per_sample: bool, device: torch.device) -> tuple[float, float]:
    """(vision s, prefill s) of one rollout's prompt work, each timed alone: per prompt (`engine`, `cached`)
    or per sample (`reference`, which encodes and prefills every prompt G times)."""
    from vlrl.rollout.reference import _repeat_images

    G = batch.group_size if per_sample else 1
    pixel_values, grid = _repeat_images(batch, G) if per_sample else (batch.pixel_values, batch.image_grid_thw)
    ids, mask, mm = (t.repeat_interleave(G, 0) for t in (batch.input_ids, batch.attention_mask, batch.mm_token_type_ids))
    vision = timed(lambda: policy.image_features(pixel_values, grid), device)
    features = policy.image_features(pixel_values, grid)
    positions = policy.rope_positions(ids, mm, grid, mask)

    def prefill():
        hidden, _ = policy.forward_tokens(ids, features, positions, mask, use_cache=True)
        policy.lm_head(hidden[:, -1])

    return vision, timed(prefill, device)


def run_backend(policy, batch, name: str, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Median figures of `repeats` rollouts (after one warm-up) of backend `name`."""
    from vlrl.config import RolloutConfig
    from vlrl.rollout import generate
    from vlrl.rollout.sampling import prompt_seed

    cfg = RolloutConfig(backend=name.split("-")[0], group_size=args.group_size, max_new_tokens=args.new_tokens,
                        cuda_graphs=name != "engine-eager")
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if cuda else 0
    totals, tokens = [], []
    for r in range(args.repeats + 1):
        out = []
        seconds = timed(lambda r=r, out=out: out.append(generate(policy, batch, cfg, seeds=[
            prompt_seed(0, r, j) for j in range(batch.num_prompts)])), device)
        if r:  # the first rollout warms up
            totals.append(seconds)
            tokens.append(int(out[0].completion_mask.sum()))
    peak = (torch.cuda.max_memory_allocated() - base) / 2**30 if cuda else float("nan")
    stages = [stage_times(policy, batch, name == "reference", device) for _ in range(args.repeats)]
    total = statistics.median(totals)
    vision = statistics.median(s[0] for s in stages)
    prefill = statistics.median(s[1] for s in stages)
    decode = total - vision - prefill
    # Vision and prefill are timed apart from the rollout: on a noisy machine (the CPU smoke test under load) they
    # can add up to more than the whole rollout, and a decode time <= 0 has no rate.
    return dict(rollout_s=total, vision_ms=vision * 1e3, prefill_ms=prefill * 1e3, decode_s=decode,
                decode_tok_s=statistics.median(tokens) / decode if decode > 0 else float("nan"),
                rollout_tok_s=statistics.median(tokens) / total,
                peak_gib=peak, tokens=statistics.median(tokens))


def describe(device: torch.device) -> str:
    import platform

    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    return (f"{name} ({device.type}), torch {torch.__version__}, transformers {transformers.__version__}, "
            f"{torch.get_num_threads()} CPU threads")


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_rollout.py: no CUDA device here. Run it on a GPU machine, or use `--device cpu --tiny` "
                 "for a CPU smoke test of the script.")
    if device.type == "cpu" and not args.tiny:
        sys.exit("bench_rollout.py: --device cpu runs only with --tiny (a 3B model on CPU takes hours).")
    print("command:", "python " + " ".join(sys.argv))
    print("device:", describe(device))
    with tempfile.TemporaryDirectory() as tmp:
        policy, dtype = load(args, device, tmp)
    batch = make_batch(policy, args)
    N = args.prompts * args.group_size
    report = dict(command="python " + " ".join(sys.argv), device=describe(device),
                  model="tiny" if args.tiny else args.like, dtype=dtype, prompts=args.prompts,
                  group_size=args.group_size, image_size=args.image_size, new_tokens=args.new_tokens,
                  image_tokens=int(batch.image_tokens[0]), prompt_len=int(batch.input_ids.shape[1]),
                  repeats=args.repeats, backends={}, error=None)
    write_json(args.json, report)
    print(f"model: {'tiny' if args.tiny else args.like} (random weights, {dtype}); {args.prompts} prompts x G="
          f"{args.group_size} = {N} completions of {args.new_tokens} forced tokens; {args.image_size}x"
          f"{args.image_size} images ({int(batch.image_tokens[0])} image tokens); padded prompt length "
          f"{batch.input_ids.shape[1]}; median of {args.repeats} rollouts after 1 warm-up")
    print(f"{'backend':>13} {'rollout s':>10} {'vision ms':>10} {'prefill ms':>11} {'decode s':>9} "
          f"{'decode tok/s':>13} {'peak GiB':>9}  (peak: allocated above the loaded model)")
    for name in args.backends:
        r = run_backend(policy, batch, name, args, device)
        report["backends"][name] = r
        if r["tokens"] != N * args.new_tokens:
            report["error"] = f"{name}: decoded {r['tokens']} tokens, expected {N * args.new_tokens} (forcing failed)"
            write_json(args.json, report)
            sys.exit(report["error"])
        write_json(args.json, report)
        peak = f"{r['peak_gib']:.2f}" if device.type == "cuda" else "n/a"
        print(f"{name:>13} {r['rollout_s']:10.3f} {r['vision_ms']:10.1f} {r['prefill_ms']:11.1f} "
              f"{r['decode_s']:9.3f} {r['decode_tok_s']:13,.0f} {peak:>9}")


if __name__ == "__main__":
    main()
