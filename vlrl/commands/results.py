"""`vlrl eval`, `vlrl report`, `vlrl export`: the commands that read runs and checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from vlrl.commands import fail

EVAL_HELP = """Score models on a schema-v1 dataset split with the trainer's own evaluation: the same prompt encoding,
rollout (vlrl.rollout.generate) and reward mix (vlrl.rewards.RewardMixer) as training.

Reports greedy accuracy and reward per data_source and overall and, with eval.k > 1, pass@k (the unbiased
estimate 1 - C(n-c, k)/C(n, k) from eval.n samples per row, c of them with accuracy >= eval.pass_threshold) and
mean@k (mean accuracy of the samples), sampled at rollout.temperature with one seed per row (eval.seed).

MODEL is an HF model directory (or hub id org/name), a vlrl run directory (its newest checkpoint), a run's
checkpoint (RUN/final, RUN/checkpoints/step_N), a LoRA checkpoint (its base model, named in adapter_config.json
or by model.path=BASE, with the adapter) or an FSDP2 sharded checkpoint (assembled in memory, as vlrl export
does). A checkpoint inside a run directory is evaluated with that run's config.yaml (prompt suffix, system
prompt, pixels, rewards, rollout, split and data.max_eval_rows), so at a step where the trainer evaluated, the
numbers equal its eval/ metrics in metrics.jsonl; --config CONFIG.yaml (a training recipe) replaces it, and
key=value overrides change any key listed below. Several MODELs are compared in one table (rows: data sources,
columns: models), each with its own run's settings.

The split is eval.split, else data.eval_split ('test'); at most data.max_eval_rows rows (256; raise it to
evaluate a whole benchmark); prompts over data.max_prompt_tokens are left out, as in training.

Writes OUT (default runs/eval/<label>, labels joined by _vs_ for several models), whole or not at all, and
refuses an OUT that holds anything unless --overwrite:
  summary.json               per model: overall and per data_source metrics, rows, time, model, data, split,
                             k, n, the trainer-style eval/... metrics and the settings used
  table.txt                  the table printed at the end
  completions/<label>.jsonl  every completion ("decoding": greedy or sampled, "sample": its index) with its
                             row fields (the input format of vlrl rewards score) and its "scores"

  vlrl eval runs/tiny/final                                  (the run's held-out split and settings)
  vlrl eval runs/tiny/checkpoints/step_000100 runs/tiny/final --out runs/eval/tiny_100_vs_200
  vlrl eval /models/Qwen2.5-VL-3B-Instruct --data /data/my_rl_set eval.split=test data.max_eval_rows=5000 \
      data.prompt_suffix="Answer inside <answer></answer>." rollout.max_new_tokens=1024
  vlrl eval runs/a/final eval.k=8 rollout.temperature=1.0     (pass@8, mean@8 besides greedy accuracy)
  vlrl eval runs/lora/final /models/base --data /data/set    (a LoRA checkpoint against its base model)
"""


REPORT_HELP = """Draw one or several runs into one self-contained HTML page (no server, no network): reward,
reward components and accuracy per data source (train and held-out), completion length, clip fraction,
entropy, KL, learning rate, stage times, several runs overlaid; then each run's latest rollout samples with
their images and scores. Needs the report extra: pip install 'vlrl[report]'.

  vlrl report runs/tiny                          (writes runs/tiny/report.html)
  vlrl report runs/a runs/b -o compare.html
"""


def run_eval(args: argparse.Namespace) -> int:
    import re

    from vlrl.config_loader import ConfigError
    from vlrl.data.schema import SchemaError
    from vlrl.data.vocab import UnknownTokensError
    from vlrl.eval_run import EvalError, run_eval
    from vlrl.models.check import ModelPathError

    # argparse gives MODEL and the key=value overrides after it as one list: a section.key=... is an override.
    is_override = re.compile(r"^[A-Za-z_]\w*(\.[\w#]+)+=").match
    models = [m for m in args.models if not is_override(m)]
    overrides = [m for m in args.models if is_override(m)] + list(args.overrides)
    if not models:
        return fail("no MODEL given: vlrl eval MODEL [MODEL ...] [--data DATA] [key=value ...]")
    try:
        out, summaries, table = run_eval(models, data=args.data, overrides=overrides,
                                         config=args.config, out=args.out, overwrite=args.overwrite)
    except (EvalError, ConfigError, SchemaError, UnknownTokensError, ModelPathError, FileNotFoundError) as e:
        return fail(str(e))
    print(table)
    print()
    for s in summaries:
        print(f"{s['label']}: {s['rows']} rows of {s['data']} split {s['split']!r} in {s['seconds']:.1f} s")
    print(f"wrote {out}/summary.json, {out}/table.txt, {out}/completions/")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from vlrl.report import REPORT_FILE, ReportError, write_report

    out = args.output or (Path(args.runs[0]) / REPORT_FILE if len(args.runs) == 1 else Path(REPORT_FILE))
    try:
        print(write_report(args.runs, out))
    except ReportError as e:
        return fail(str(e))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from vlrl.checkpoint import export_checkpoint

    try:
        out = export_checkpoint(args.checkpoint, args.out)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        return fail(str(e))
    print(f"wrote {out}")
    return 0


def add_parsers(sub) -> None:
    from vlrl.config import EvalSettings
    from vlrl.config_loader import format_help

    ev = sub.add_parser("eval", help="score checkpoints on a dataset split (greedy accuracy, pass@k, mean@k)",
                        description=EVAL_HELP, epilog=format_help(EvalSettings),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("models", nargs="+", metavar="MODEL", help="model directories or checkpoints, then optional "
                    "key=value overrides")
    ev.add_argument("--data", metavar="DATA", help="schema-v1 dataset (save_to_disk directory or parquet); default: "
                    "the run's data.path")
    ev.add_argument("--config", metavar="CONFIG.yaml", help="settings file (a training recipe or config.yaml) "
                    "instead of the run's config.yaml")
    ev.add_argument("--out", metavar="DIR", help="output directory (default runs/eval/<label>)")
    ev.add_argument("--overwrite", action="store_true", help="replace an OUT that holds an earlier evaluation")
    ev.set_defaults(fn=run_eval, overrides=[])

    report = sub.add_parser("report", help="draw runs into one static HTML page (curves, samples with images)",
                            description=REPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (trainer.output_dir)")
    report.add_argument("-o", "--output", help="the page to write (default RUN_DIR/report.html for one run, "
                        "./report.html for several)")
    report.set_defaults(fn=run_report)

    export = sub.add_parser("export", help="turn a checkpoint (LoRA adapter, FSDP2 shards) into a plain HF model directory")
    export.add_argument("checkpoint", metavar="CHECKPOINT", help="e.g. runs/tiny/final or runs/tiny/checkpoints/step_000100")
    export.add_argument("out", metavar="OUT", help="directory to write (from_pretrained loads it)")
    export.set_defaults(fn=run_export)
