"""Score a JSONL file of completions with a reward mix: the built-in verifiers plus a reward of your own.

    python examples/score_completions.py                      # scores a small demo file it writes first
    python examples/score_completions.py completions.jsonl --out scores.jsonl

Each input line holds "completion", "answer", "task" (and optionally "reward", "image_sizes", "meta",
"problem", ...: the format `vlrl rewards score` reads and `vlrl train` writes to RUN_DIR/completions.jsonl).
The scores are those training would give: the same mixer, the same verifiers.
"""

import argparse
import json
from pathlib import Path

import vlrl

DEMO = [
    {"id": "a", "completion": "<think>three circles</think><answer>3</answer>", "answer": "3", "task": "count"},
    {"id": "b", "completion": "<answer>4</answer>", "answer": "3", "task": "count"},
    {"id": "c", "completion": "<answer>(B) a cat</answer>", "answer": "B", "task": "mcq"},
    {"id": "d", "completion": "<answer>[10, 10, 50, 50]</answer>", "answer": "[12, 8, 50, 52]", "task": "grounding",
     "image_sizes": [[100, 100]]},
]


def thinks(inp: vlrl.RewardInput) -> float:
    """Our own term: 1 when the completion reasons inside <think> before answering."""
    return 1.0 if "<think>" in inp.completion and "</think>" in inp.completion else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", nargs="?", help="JSONL of completions (default: a demo file written next to --out)")
    parser.add_argument("--out", default="runs/scores.jsonl")
    args = parser.parse_args()
    source = args.input
    if source is None:
        source = Path(args.out).with_name("demo_completions.jsonl")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("".join(json.dumps(line) + "\n" for line in DEMO))

    mix = {"terms": [{"name": "accuracy", "weight": 1.0}, {"name": "thinks", "weight": 0.25}], "workers": 0}
    scores = vlrl.score_completions(source, overrides=mix, rewards={"thinks": thinks}, output=args.out)
    for s in scores:
        print(f"{s.get('id', s['line'])}: total {s['total']:.3f}  accuracy {s['accuracy']:.3f}  thinks {s['thinks']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
