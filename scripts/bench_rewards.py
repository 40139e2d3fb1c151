"""Offline reward scoring speed: `vlrl rewards score` on N lines of mixed tasks.

    python scripts/bench_rewards.py [--lines 10000] [--workers 0 2] [--seed 0]

Writes N JSONL lines spread over eight tasks (colour text, count, multiple choice, math, OCR, yes/no,
grounding, detection) with right, wrong, untagged and malformed completions, then times the real CLI
(`python -m vlrl.cli rewards score`, a fresh process each time, start-up included) for each worker count.
Prints the command, the machine and, per worker count, the wall time and lines per second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DETECTION = [{"bbox_2d": [10, 20, 110, 140], "label": "cat"}, {"bbox_2d": [200, 40, 300, 150], "label": "dog"}]
# task -> (answer, [completion bodies]: right ones first, then wrong ones)
TASKS = {
    "colour": ("red", ["red", "Red.", "blue", "green cube"]),
    "count": ("3", ["3", "three", "4", "3 or 4"]),
    "mcq": ("B", ["B", "(B) dog", "the answer is C", "A"]),
    "math": ("\\frac{1}{2}", ["\\boxed{\\frac{1}{2}}", "0.5", "x = 1/2", "\\frac{2}{3}", "\\sqrt{2}+1"]),
    "ocr": ("STOP AHEAD", ["STOP AHEAD", "stop ahed", "GO", "S T O P"]),
    "yes_no": ("yes", ["Yes, it is.", "yes", "No.", "maybe"]),
    "grounding": ("[10, 20, 110, 140]", ["[10, 20, 110, 140]", "[12, 18, 108, 139]", "[0, 0, 5, 5]", "[1, 2"]),
    "detection": (json.dumps(DETECTION), [json.dumps(DETECTION), json.dumps(DETECTION[:1]), "[[0, 0, 1, 1]]", "[]"]),
}


def make_lines(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        task = list(TASKS)[i % len(TASKS)]
        answer, bodies = TASKS[task]
        body = rng.choice(bodies)
        form = rng.randrange(4)
        completion = (f"<think>Looking at the image.</think><answer>{body}</answer>" if form < 2
                      else body if form == 2 else f"<answer>{body}")
        line = {"id": i, "completion": completion, "answer": answer, "task": task, "data_source": f"bench_{task}",
                "progress": rng.random(), "num_tokens": rng.randint(5, 1024), "max_tokens": 1024}
        if task in ("grounding", "detection"):
            line.update(image_size=[640, 480], resized_size=[644, 476])
        if task == "mcq":
            line["meta"] = {"options": ["cat", "dog", "bird", "fish"]}
        lines.append(line)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("command:", "python " + " ".join(sys.argv))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "lines.jsonl"
        src.write_text("".join(json.dumps(line) + "\n" for line in make_lines(args.lines, args.seed)))
        reference = None
        for workers in args.workers:
            out = Path(tmp) / f"scores_{workers}.jsonl"
            cmd = [sys.executable, "-m", "vlrl.cli", "rewards", "score", str(src), "-o", str(out), "-q",
                   f"workers={workers}"]
            start = time.perf_counter()
            result = subprocess.run(cmd, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if result.returncode != 0:
                sys.exit(f"failed: {' '.join(cmd)}\n{result.stderr}")
            scores = out.read_text()
            same = "" if reference is None else (" (scores identical to workers=0)" if scores == reference
                                                 else " (SCORES DIFFER from the first run)")
            reference = reference or scores
            summary = next(ln for ln in result.stderr.splitlines() if ln.startswith("scored"))
            print(f"workers={workers}: {seconds:.2f} s wall for {args.lines} lines "
                  f"({args.lines / seconds:.0f} lines/s, process start included){same}")
            print(f"  {summary}")


if __name__ == "__main__":
    main()
