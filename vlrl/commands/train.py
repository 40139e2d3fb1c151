"""`vlrl train` and `vlrl sft`: the two commands that train a model, and the report a run ends with."""

from __future__ import annotations

import argparse
from pathlib import Path

from vlrl.commands import fail

TRAIN_HELP = """Train a VLM with GRPO-family RL from verifiable rewards.

With no argument this runs the embedded default (configs/tiny_cpu.yaml): a tiny Qwen2.5-VL built offline
learns two synthetic visual tasks on CPU in a few minutes. Give a YAML recipe and/or key=value overrides to
train a real checkpoint, e.g.

  vlrl train configs/qwen2_5_vl_3b_grpo.yaml model.path=/models/Qwen2.5-VL-3B-Instruct data.path=/data/rl
  vlrl train trainer.total_steps=50 optim.lr=1e-3
  vlrl train --resume runs/tiny trainer.total_steps=300
  vlrl train --overwrite                      (start the demo over in runs/tiny)

A directory that already holds a run (metrics.jsonl, tensorboard/, checkpoints/) is refused unless --resume
continues it or --overwrite deletes it first; or choose another with trainer.output_dir=DIR.
"""


SFT_HELP = """Supervised fine-tuning on a dataset's reasoning chains or answers: the SFT arm of an SFT-vs-RL
comparison (VLAA-Thinking, arXiv 2504.11468). The loss is the cross-entropy of the target tokens given the
prompt, mean over the step's target tokens; prompt tokens are never predicted.

The target (sft.target) is the row's reasoning chain ('reasoning', e.g. the chains/ set of vlrl data build:
used as is when it holds <answer>...</answer>, else wrapped in <think>...</think><answer>ANSWER</answer>) or
<answer>ANSWER</answer> ('answer'), then the end-of-turn token: the layout the format and accuracy rewards read.
Model loading, prompt encoding (chat template, images), checkpoints, metrics and trackers are vlrl train's, so
RUN_DIR/final is the HF-format checkpoint vlrl train and vlrl eval start from:

  vlrl data build configs/data/shapes_digits.yaml                 (rl/ and chains/)
  vlrl sft data.path=runs/data/shapes_digits/chains sft.eval_data=runs/data/shapes_digits/rl \\
      sft.epochs=3 rollout.max_new_tokens=128 trainer.output_dir=runs/sft
  vlrl eval runs/sft/final --data runs/data/shapes_digits/rl
  vlrl train model.path=runs/sft/final data.path=runs/data/shapes_digits/rl rollout.max_new_tokens=128

Steps: trainer.total_steps, or sft.epochs passes over the data; sft.batch_size rows per step. The held-out
split (data.eval_split of sft.eval_data, else of data.path; '' for none) is evaluated greedily as vlrl train
does, at the start, every trainer.eval_every steps and at the end, and its rows (by id) are left out of
training. rollout.* sets that evaluation's decoding (max_new_tokens must hold a whole chain). Rows whose
prompt is over data.max_prompt_tokens are left out, counted and listed in RUN_DIR/dropped_rows.jsonl, as in
vlrl train. metrics.jsonl has loss/sft, sft/target_tokens, loss/grad_norm, optim/lr, perf/... per step and
eval/... per evaluation.
The algorithm section of vlrl train does not apply. A run directory that holds a run is refused unless
--resume RUN_DIR continues it from its newest complete checkpoint or --overwrite starts it over.
"""


def config_source(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """(YAML path or None, overrides) of `vlrl train`/`vlrl sft`: an optional recipe, then key=value overrides;
    with --resume RUN_DIR, the run's own config.yaml (a recipe is refused: the run's settings are its own)."""
    overrides = list(args.overrides)
    yaml_path = overrides.pop(0) if overrides and "=" not in overrides[0] else None
    if not args.resume:
        return yaml_path, overrides
    if yaml_path:
        raise ValueError("--resume takes its config from RUN_DIR/config.yaml; give only key=value overrides")
    return str(Path(args.resume) / "config.yaml"), [*overrides, f"trainer.output_dir={args.resume}"]


def user_errors() -> tuple[type[Exception], ...]:
    """What a run raises for input that is the user's to fix (model path, dataset, rows, run directory,
    trackers): `vlrl train` and `vlrl sft` print one message for it, no traceback."""
    from vlrl.data.schema import SchemaError
    from vlrl.data.vocab import UnknownTokensError
    from vlrl.models.check import ModelPathError
    from vlrl.run_dir import RunDirError
    from vlrl.trackers import TrackerError

    return SchemaError, UnknownTokensError, ModelPathError, RunDirError, TrackerError, FileNotFoundError


def accuracy_summary(result: dict[str, float]) -> str:
    """The last evaluation's accuracies for the `done:` line."""
    return ", ".join(f"{k}={v:.3f}" for k, v in sorted(result.items()) if k.startswith("eval/accuracy")) or "no eval"


def run_train(args: argparse.Namespace) -> int:
    from vlrl.config import Config
    from vlrl.config_loader import ConfigError, load_config

    try:
        cfg = load_config(Config, *config_source(args))
    except (ConfigError, ValueError) as e:
        return fail(str(e))
    import time

    from vlrl.metrics import read_metrics, summary_table
    from vlrl.trainer import Trainer

    try:
        trainer = Trainer(cfg, resume=bool(args.resume), overwrite=args.overwrite)
        start = time.monotonic()
        result = trainer.fit()
        seconds = time.monotonic() - start
    except user_errors() as e:
        return fail(str(e))
    trainer.close()
    if trainer.accelerator.is_main_process:
        print(summary_table(read_metrics(cfg.trainer.output_dir), seconds, first_step=trainer.start_step))
        print(f"done: {cfg.trainer.output_dir} ({accuracy_summary(result)})")
        print(end_of_run_report(cfg.trainer.output_dir))
    return 0


def run_sft(args: argparse.Namespace) -> int:
    from vlrl.config import SFTConfig
    from vlrl.config_loader import ConfigError, load_config

    try:
        cfg = load_config(SFTConfig, *config_source(args))
    except (ConfigError, ValueError) as e:
        return fail(str(e))
    from vlrl.sft import SFTDataError, SFTRun

    try:
        run = SFTRun(cfg, overwrite=args.overwrite, resume=bool(args.resume))
        result = run.fit()
    except (*user_errors(), SFTDataError) as e:
        return fail(str(e))
    if run.accelerator.is_main_process:
        print(f"done: {cfg.trainer.output_dir}/final after {cfg.trainer.total_steps} steps "
              f"({accuracy_summary(result)})")
    return 0


def end_of_run_report(run_dir: str) -> str:
    """Write RUN_DIR/report.html where matplotlib is installed, and say where it is or how to make it. A report
    that fails is a message, never a failed training run."""
    from vlrl.report import REPORT_FILE, ReportError, write_report

    out = Path(run_dir) / REPORT_FILE
    try:
        write_report([run_dir], out)
    except ReportError as e:
        return f"report: {e}; then: vlrl report {run_dir}"
    except Exception as e:  # noqa: BLE001 - the run itself succeeded
        return f"report: not written ({type(e).__name__}: {e}); try: vlrl report {run_dir}"
    return f"report: {out} (open it in a browser; compare runs with: vlrl report {run_dir} OTHER_RUN -o cmp.html)"


def add_parsers(sub) -> None:
    from vlrl.config import Config, SFTConfig
    from vlrl.config_loader import format_help

    train = sub.add_parser("train", help="train a policy (default: the tiny CPU demo)", description=TRAIN_HELP,
                           epilog=format_help(Config), formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("overrides", nargs="*", metavar="[CONFIG.yaml] key=value",
                       help="an optional YAML recipe, then dotted overrides (see the option list below)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest complete "
                       "checkpoint")
    train.add_argument("--overwrite", action="store_true",
                       help="start over in a directory that holds an earlier run: its metrics, TensorBoard events, "
                       "completions and checkpoints are deleted first (a built tiny_model/ and data/ are kept). "
                       "Without it, or --resume, such a directory is refused. A flag, not a config key, so that "
                       "no saved config.yaml can delete a run when it is reused")
    train.set_defaults(fn=run_train)

    sft = sub.add_parser("sft", help="supervised fine-tuning on reasoning chains or answers (the SFT arm)",
                         description=SFT_HELP, epilog=format_help(SFTConfig),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    sft.add_argument("overrides", nargs="*", metavar="[CONFIG.yaml] key=value",
                     help="an optional YAML file (sections of vlrl train's config plus sft), then dotted overrides")
    sft.add_argument("--resume", metavar="RUN_DIR", help="continue the SFT run in RUN_DIR from its newest complete "
                     "checkpoint (its config.yaml; key=value overrides apply on top)")
    sft.add_argument("--overwrite", action="store_true", help="start over in a directory that holds an earlier run "
                     "(its outputs are deleted first; a built tiny_model/ and data/ are kept)")
    sft.set_defaults(fn=run_sft)
