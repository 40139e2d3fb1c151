"""What a run answered, per true answer, from the completions it saved (`trainer.save_completions=N`).

For each saved step: per true answer, the most frequent answers inside `<answer>…</answer>` ("(none)" when a
completion has no tags); and per answer word, how many samples used it rightly / wrongly and the sum of their
group-relative advantages (reward minus the group's mean, as `algorithm.advantage=group` with `scale_rewards=none` computes them).
That is how docs/tiny_demo_tuning.md traced the colour collapse:

    vlrl train trainer.seed=1 trainer.save_completions=10 trainer.output_dir=runs/s1
    python scripts/answers_by_truth.py runs/s1/completions.jsonl --task colour --group-size 16 --from-step 80
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict

TAGGED = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.S)


def answer_of(completion: str) -> str:
    match = TAGGED.search(completion)
    return match.group(1) if match else "(none)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("completions", help="RUN_DIR/completions.jsonl")
    ap.add_argument("--task", help="only rows of this task")
    ap.add_argument("--group-size", type=int, default=16, help="rollout.group_size of the run (default 16)")
    ap.add_argument("--from-step", type=int, default=0, help="first step shown")
    ap.add_argument("--top", type=int, default=3, help="answers shown per true answer (default 3)")
    args = ap.parse_args()

    by_step: dict[int, list[dict]] = defaultdict(list)
    with open(args.completions) as f:
        for line in f:
            row = json.loads(line)
            by_step[row["step"]].append(row)
    for step in sorted(s for s in by_step if s >= args.from_step):
        rows, answered = by_step[step], defaultdict(Counter)
        words: dict[str, dict[str, list]] = defaultdict(lambda: {"right": [0, 0.0], "wrong": [0, 0.0]})
        for g in range(0, len(rows), args.group_size):
            group = rows[g:g + args.group_size]  # a group's completions are contiguous in the file
            if args.task and group[0]["task"] != args.task:
                continue
            mean = sum(r["scores"]["total"] for r in group) / len(group)
            for r in group:
                word = answer_of(r["completion"])
                answered[r["answer"]][word] += 1
                side = words[word]["right" if word == r["answer"] else "wrong"]
                side[0] += 1
                side[1] += r["scores"]["total"] - mean
        print(f"step {step}")
        for truth, counts in sorted(answered.items()):
            print(f"  {truth!r} answered: " + ", ".join(f"{w} {n}" for w, n in counts.most_common(args.top)))
        for word in sorted(w for w in words if w in answered):
            (nr, ar), (nw, aw) = words[word]["right"], words[word]["wrong"]
            print(f"  {word!r}: right {nr} (advantage {ar:+.1f}), wrong {nw} (advantage {aw:+.1f})")


if __name__ == "__main__":
    main()
