"""Train the tiny model on a dataset made in memory, with two rewards of your own.

    python examples/train_custom_reward.py                 # 60 steps, a few minutes on a laptop CPU
    python examples/train_custom_reward.py --steps 2 --out /tmp/api_run

The task: which colour is the square? The rows are plain dicts with PIL images; the rewards are a vlrl reward
(one completion at a time) and a reward written for TRL's GRPOTrainer, used unchanged. The tiny model is built
offline from the dataset's words; on a real checkpoint set "model.path" instead.
"""

import argparse
import random
import re

from PIL import Image

import vlrl

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220), "yellow": (230, 220, 40)}


def colour_rows(n: int, seed: int) -> list[dict]:
    """n rows: a square of one colour on white; the answer is its colour's name."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        name = rng.choice(sorted(COLOURS))
        image = Image.new("RGB", (56, 56), "white")
        x, y = rng.randint(0, 28), rng.randint(0, 28)
        image.paste(COLOURS[name], (x, y, x + 28, y + 28))
        rows.append({"id": f"sq{seed}-{i}", "image": image, "problem": "<image> what colour is the square ?",
                     "answer": name, "task": "colour", "level": "easy"})  # `level`: an extra column, kept in meta
    return rows


def tagged(text: str) -> str | None:
    """The text inside the last <answer>...</answer>, or None."""
    found = re.findall(r"<answer>(.*?)</answer>", text, flags=re.DOTALL)
    return found[-1].strip() if found else None


def names_a_colour(inp: vlrl.RewardInput) -> float:
    """A vlrl reward (one completion at a time): 1 when the tagged answer is a colour name, any colour (shaping;
    the exact answer does the real work)."""
    return 1.0 if tagged(inp.completion) in COLOURS else 0.0


def exact_answer(completions, solution, **kwargs):
    """A reward in TRL's style: lists in, a list of floats out (None would mean "does not apply")."""
    return [1.0 if tagged(c) == s else 0.0 for c, s in zip(completions, solution, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", default="runs/api_custom_reward")
    args = parser.parse_args()

    cfg = vlrl.load_config(overrides={
        "trainer.output_dir": args.out, "trainer.total_steps": args.steps, "trainer.eval_every": args.steps,
        "trainer.save_every": max(1, args.steps // 2), "trainer.progress_bar": False, "trainer.seed": 0,
        # two rewards of ours (named below) and a built-in one, mixed by weight; the term named "accuracy" is
        # what evaluations report as eval/accuracy (here ours replaces the built-in verifier of that name)
        "reward.terms": [{"name": "accuracy", "weight": 1.0}, {"name": "names_a_colour", "weight": 0.2},
                         {"name": "format", "weight": 0.5, "params": {"partial_credit": True}}],
    })
    rewards = {"accuracy": vlrl.trl_reward(exact_answer, columns={"solution": "answer"}),
               "names_a_colour": names_a_colour}

    def report(step: int, metrics: dict) -> None:  # a callback: every step and every evaluation
        if "eval/accuracy" in metrics:
            print(f"step {step}: held-out accuracy {metrics['eval/accuracy']:.2f}")
        elif step % 10 == 0 or step == args.steps:
            print(f"step {step}: reward {metrics['reward/mean']:.3f}")

    trainer = vlrl.Trainer(cfg, train_dataset=colour_rows(256, seed=1), eval_dataset=colour_rows(32, seed=2),
                           rewards=rewards, callbacks=[report], overwrite=True)
    trainer.fit()
    print(f"done: {args.out} (metrics.jsonl, final/; evaluate it with vlrl.evaluate or `vlrl eval {args.out}`)")


if __name__ == "__main__":
    main()
