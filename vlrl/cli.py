"""`vlrl` command line: train, models, data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TRAIN_HELP = """Train a VLM with GRPO-family RL from verifiable rewards.

With no argument this runs the embedded default (configs/tiny_cpu.yaml): a tiny Qwen2.5-VL built offline
learns two synthetic visual tasks on CPU in a few minutes. Give a YAML recipe and/or key=value overrides to
train a real checkpoint, e.g.

  vlrl train configs/qwen2_5_vl_3b_grpo.yaml model.path=/models/Qwen2.5-VL-3B-Instruct data.path=/data/rl
  vlrl train trainer.total_steps=50 optim.lr=1e-3
  vlrl train --resume runs/tiny trainer.total_steps=300
"""


def _train(args: argparse.Namespace) -> int:
    from vlrl.config import Config
    from vlrl.config_loader import ConfigError, load_config

    overrides = list(args.overrides)
    yaml_path = None
    if overrides and "=" not in overrides[0]:
        yaml_path = overrides.pop(0)
    if args.resume:
        if yaml_path:
            print("error: --resume takes its config from RUN_DIR/config.yaml; give only key=value overrides",
                  file=sys.stderr)
            return 2
        yaml_path = str(Path(args.resume) / "config.yaml")
        overrides.append(f"trainer.output_dir={args.resume}")
    try:
        cfg = load_config(Config, yaml_path, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from vlrl.trainer import Trainer

    trainer = Trainer(cfg, resume=bool(args.resume))
    result = trainer.fit()
    if trainer.accelerator.is_main_process:
        summary = ", ".join(f"{k}={v:.3f}" for k, v in sorted(result.items()) if k.startswith("eval/accuracy"))
        print(f"done: {cfg.trainer.output_dir} ({summary or 'no eval'})")
    return 0


def _models_tiny(args: argparse.Namespace) -> int:
    from vlrl.models.tiny import build_tiny_model

    print(build_tiny_model(args.out, seed=args.seed, min_pixels=args.min_pixels, max_pixels=args.max_pixels))
    return 0


def _models_random(args: argparse.Namespace) -> int:
    from vlrl.models.tiny import build_random_model

    print(build_random_model(args.out, like=args.like, dtype=args.dtype, seed=args.seed))
    return 0


def _data_synth(args: argparse.Namespace) -> int:
    from data_pipelines.synthetic.shapes import build_shapes_dataset

    ds = build_shapes_dataset(args.out, args.train_rows, args.eval_rows, seed=args.seed, image_size=args.image_size,
                              tasks=tuple(args.tasks))
    print(f"{args.out}: " + ", ".join(f"{k}={len(v)} rows" for k, v in ds.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from vlrl.config import Config
    from vlrl.config_loader import format_help

    parser = argparse.ArgumentParser(prog="vlrl", description="RL from verifiable rewards for vision-language models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a policy (default: the tiny CPU demo)", description=TRAIN_HELP,
                           epilog=format_help(Config), formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("overrides", nargs="*", metavar="[CONFIG.yaml] key=value",
                       help="an optional YAML recipe, then dotted overrides (see the option list below)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    train.set_defaults(fn=_train)

    models = sub.add_parser("models", help="build checkpoints offline").add_subparsers(dest="what", required=True)
    tiny = models.add_parser("tiny", help="write a tiny random Qwen2.5-VL (HF format) for CPU demos and tests")
    tiny.add_argument("out", help="output directory")
    tiny.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    tiny.add_argument("--min-pixels", type=int, default=56 * 56, help="processor min_pixels (default 3136)")
    tiny.add_argument("--max-pixels", type=int, default=112 * 112, help="processor max_pixels (default 12544)")
    tiny.set_defaults(fn=_models_tiny)
    rand = models.add_parser("random", help="write a random-weight model with a released model's exact shape")
    rand.add_argument("out", help="output directory")
    rand.add_argument("--like", required=True, choices=["qwen2.5-vl-3b", "qwen2.5-vl-7b"], help="shape to copy")
    rand.add_argument("--dtype", default="bfloat16", help="parameter dtype (default bfloat16)")
    rand.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    rand.set_defaults(fn=_models_random)

    data = sub.add_parser("data", help="build datasets").add_subparsers(dest="what", required=True)
    synth = data.add_parser("synth", help="write the synthetic shapes dataset (colour, count) with a held-out split")
    synth.add_argument("out", help="output directory (datasets.save_to_disk format)")
    synth.add_argument("--train-rows", type=int, default=4000, help="training rows per task (default 4000)")
    synth.add_argument("--eval-rows", type=int, default=128, help="held-out rows per task (default 128)")
    synth.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    synth.add_argument("--image-size", type=int, default=56, help="image side in pixels (default 56)")
    synth.add_argument("--tasks", nargs="+", default=["colour", "count"], help="tasks to include")
    synth.set_defaults(fn=_data_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
