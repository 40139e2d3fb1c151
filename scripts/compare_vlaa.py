"""The three arms of VLAA-Thinking's SFT-vs-RL comparison (arXiv 2504.11468) — GRPO only, SFT only, SFT then
GRPO — on one synthetic dataset, with the tiny model on CPU, evaluated in one `vlrl eval` table.

    python scripts/compare_vlaa.py [--out runs/compare_vlaa] [--rows-per-task 150] [--grpo-steps 40] ...

Each stage is a `vlrl` command, printed before it runs (in this process, so the imports are paid once):

1. `vlrl data build`: shapes colour and count questions; the programmatic teacher writes a verified reasoning
   chain for every row: rl/ (train, test) and chains/.
2. `vlrl models tiny --reasoning`: one random tiny model whose words cover the chains; every arm starts from it.
3. GRPO only: `vlrl train` on rl/train.
4. SFT only: `vlrl sft` on the chains (the rows of rl/test are left out: `sft.eval_data`).
5. SFT then GRPO: `vlrl train model.path=<SFT>/final`, with the settings of arm 3.
6. `vlrl eval` of the base model and the three arms on rl/test, with the same decoding for all.

Every arm gets the same completion budget (`--max-new-tokens`, enough for a whole chain), so no arm is cut short.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlrl.cli import main  # noqa: E402


def run(*argv: str) -> None:
    print("$ vlrl " + " ".join(shlex.quote(a) for a in argv), flush=True)
    start = time.monotonic()
    code = main(list(argv))
    if code:
        raise SystemExit(f"vlrl {argv[0]} failed with exit status {code}")
    print(f"  ({time.monotonic() - start:.0f} s)", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/compare_vlaa", help="everything goes here (refused if it exists)")
    p.add_argument("--rows-per-task", type=int, default=150, help="shapes rows per task (colour, count)")
    p.add_argument("--eval-fraction", type=float, default=0.2, help="share of rows held out as rl/test")
    p.add_argument("--grpo-steps", type=int, default=40, help="GRPO steps of arms 1 and 3")
    p.add_argument("--prompts-per-step", type=int, default=16, help="GRPO prompts per step")
    p.add_argument("--group-size", type=int, default=8, help="GRPO samples per prompt")
    p.add_argument("--sft-epochs", type=float, default=3.0, help="SFT passes over the chains")
    p.add_argument("--sft-batch-size", type=int, default=16, help="SFT rows per step")
    p.add_argument("--sft-lr", type=float, default=5e-3, help="SFT peak learning rate (cosine); GRPO keeps vlrl "
                   "train's default (5e-4)")
    p.add_argument("--max-new-tokens", type=int, default=96, help="completion budget of every arm and of eval")
    p.add_argument("--eval-rows", type=int, default=256, help="at most this many rl/test rows are evaluated")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def compare(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists: give another --out or remove it")
    data, base = out / "data", out / "base_model"
    common = ["trainer.progress_bar=false", "trainer.report_to=[]", f"trainer.seed={args.seed}",
              "trainer.eval_every=0", "trainer.save_every=0", f"rollout.max_new_tokens={args.max_new_tokens}"]
    grpo = [f"data.path={data / 'rl'}", f"trainer.total_steps={args.grpo_steps}",
            f"data.prompts_per_step={args.prompts_per_step}", f"rollout.group_size={args.group_size}", *common]
    start = time.monotonic()
    run("data", "build", f"output_dir={data}", "teacher.kind=programmatic", f"seed={args.seed}",
        f"curate.eval_fraction={args.eval_fraction}",
        f"sources=[{{kind: shapes, params: {{tasks: [colour, count], rows_per_task: {args.rows_per_task}}}}}]")
    run("models", "tiny", str(base), "--vocab-from", str(data / "chains"), "--splits", "train", "--reasoning",
        "--seed", str(args.seed))
    run("train", f"model.path={base}", f"trainer.output_dir={out / 'grpo'}", *grpo)
    run("sft", f"model.path={base}", f"data.path={data / 'chains'}", f"sft.eval_data={data / 'rl'}",
        f"sft.epochs={args.sft_epochs}", f"sft.batch_size={args.sft_batch_size}", f"optim.lr={args.sft_lr}",
        f"trainer.output_dir={out / 'sft'}", *common)
    run("train", f"model.path={out / 'sft' / 'final'}", f"trainer.output_dir={out / 'sft_grpo'}", *grpo)
    run("eval", str(base), str(out / "grpo" / "final"), str(out / "sft" / "final"), str(out / "sft_grpo" / "final"),
        "--data", str(data / "rl"), "--out", str(out / "eval"), f"rollout.max_new_tokens={args.max_new_tokens}",
        f"data.max_eval_rows={args.eval_rows}", "reward.workers=0")
    print(f"\nall stages: {time.monotonic() - start:.0f} s; the table: {out / 'eval' / 'table.txt'}")


if __name__ == "__main__":
    compare(parse_args())
