"""`vlrl rewards score` and `vlrl rewards list`: the reward mix, offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlrl.commands import fail

REWARDS_SCORE_HELP = """Score completions offline with the reward mix training uses.

Reads INPUT.jsonl, one JSON object per line:
  completion (str, required)   the model's text
  answer     (required)        ground truth: text, number, letter, or boxes ([[x1,y1,x2,y2], ...] or their text)
  task       (str, required)   routes reward terms (reward.per_task) and the accuracy verifier
  reward     (object)          the row's override: {"terms": [...]}, {"weights": {...}}, {"params": {...}},
                               or a V-Triune reward_model object {"verifier": ..., "accuracy_ratio": ...}
  image_size [w, h]            original image size (image_sizes: [[w, h], ...] for several images)
  resized_size [w, h]          the size the model saw after resizing (resized_sizes likewise)
  data_source (str)            groups the summary
  progress   (0-1)             training progress, for schedules (dynamic IoU threshold)
  meta       (object)          row meta, e.g. {"options": ["cat", "dog"]} for multiple choice
  num_tokens, max_tokens (int) completion length and limit, for the overlong penalty
  id                           copied to the output; other fields are ignored

Writes one JSON line per input, in order (to OUT only once every line is scored: an error leaves an existing
OUT untouched): {"line": n, "id": ..., "total": x, "<component>": value or null}
(null where a term does not apply), then a summary on stderr: lines, time, mean of each component overall
and per data_source, parse failures and timeouts. --config takes the same reward section as training: a
training recipe (its reward: section is used) or a YAML file holding only that section. A training run with
trainer.save_completions=N writes RUN_DIR/completions.jsonl in this input format.

  vlrl rewards score completions.jsonl -o scores.jsonl --config configs/qwen2_5_vl_3b_grpo.yaml
  vlrl rewards score rows.jsonl normalize_weights=true workers=4 timeout_s=2
"""


def run_score(args: argparse.Namespace) -> int:
    import contextlib
    import json

    from vlrl.atomic import atomic_file
    from vlrl.config_loader import ConfigError
    from vlrl.rewards.offline import LineError, load_reward_config, score_file

    try:
        config = load_reward_config(args.config, list(args.overrides))
    except ConfigError as e:
        return fail(str(e))
    if not Path(args.input).is_file():  # before OUT is touched
        return fail(f"input file not found: {args.input}")
    try:
        # OUT is written under a temporary name and replaces the old OUT only once every line is scored: an
        # input error (or a kill) leaves the old OUT as it was. OUT may even be the input file.
        with contextlib.ExitStack() as stack:
            to_file = args.output not in (None, "-")
            out = stack.enter_context(atomic_file(args.output)) if to_file else sys.stdout
            summary, errors = score_file(args.input, out, config, batch_size=args.batch_size,
                                         skip_invalid=args.skip_invalid, progress_bar=not args.quiet)
    except (LineError, ValueError, FileNotFoundError) as e:
        return fail(str(e))
    for message in errors[:10]:
        print(f"skipped: {message}", file=sys.stderr)
    if len(errors) > 10:
        print(f"skipped: ... and {len(errors) - 10} more", file=sys.stderr)
    rate = summary.lines / summary.seconds if summary.seconds else 0.0
    print(f"scored {summary.lines} lines in {summary.seconds:.2f} s ({rate:.0f} lines/s); skipped "
          f"{summary.skipped} invalid; {summary.parse_failures} reward calls failed, {summary.timeouts} timed out",
          file=sys.stderr)
    if summary.metrics:
        print(json.dumps({k: round(v, 6) for k, v in summary.metrics.items()}, indent=1), file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    import inspect

    from vlrl.rewards import get_reward, registered_rewards
    from vlrl.rewards.batched import is_batched

    for name in registered_rewards():
        fn = get_reward(name)
        params = [p for p in list(inspect.signature(fn).parameters.values())[1:] if p.kind != p.VAR_KEYWORD]
        doc = (inspect.getdoc(fn) or "").split("\n\n")[0].replace("\n", " ")
        batched = "  [batched: scores the step's completions together, in the trainer's process]" if is_batched(fn) else ""
        print(f"{name}({', '.join(f'{p.name}={p.default!r}' for p in params)}){batched}")
        print(f"    {doc}")
    return 0


def add_parsers(sub) -> None:
    from vlrl.config import RewardConfig
    from vlrl.config_loader import format_help

    rewards = sub.add_parser("rewards", help="score completions offline; list the built-in rewards")
    rewards_sub = rewards.add_subparsers(dest="what", required=True)
    score = rewards_sub.add_parser("score", help="score a JSONL file of completions (same code as training)",
                                   description=REWARDS_SCORE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=format_help(RewardConfig).replace("reward.", ""))
    score.add_argument("input", metavar="INPUT.jsonl", help="completions to score, one JSON object per line")
    score.add_argument("overrides", nargs="*", metavar="key=value",
                       help="overrides of the reward section, e.g. normalize_weights=true workers=0")
    score.add_argument("-o", "--output", metavar="OUT.jsonl", help="where to write the scores (default: stdout)")
    score.add_argument("--config", metavar="CONFIG.yaml", help="training recipe or reward-section YAML "
                       "(default: the built-in reward defaults)")
    score.add_argument("--batch-size", type=int, default=1024, help="lines scored per batch (default 1024)")
    score.add_argument("--skip-invalid", action="store_true",
                       help="skip (and count) malformed lines instead of stopping at the first one")
    score.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    score.set_defaults(fn=run_score)
    listing = rewards_sub.add_parser("list", help="the registered rewards, their params and defaults")
    listing.set_defaults(fn=run_list)
