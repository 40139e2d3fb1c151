"""`vlrl` command line: train, sft, eval, report, export, rewards, models, data, serve."""

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
  vlrl train --overwrite                      (start the demo over in runs/tiny)

A directory that already holds a run (metrics.jsonl, tensorboard/, checkpoints/) is refused unless --resume
continues it or --overwrite deletes it first; or choose another with trainer.output_dir=DIR.
"""


DATA_BUILD_HELP = """\
Build an RL dataset and a reasoning-chain dataset from images, in six stages:
  1 collect  read the sources (image folders, HF datasets, COCO, RefCOCO, VLAA-Thinking, Orsta,
             synthetic shapes and digits) into schema-v1 rows; malformed rows are dropped and counted
  2 caption  a teacher VLM describes each image (setting, objects, verbatim text)
  3 distill  a teacher reasoner answers from caption + question, with <think>/<answer> tags
  4 rewrite  chains are rewritten to speak of the image, not of the caption
  5 verify   chains whose answer the training verifier rejects are dropped
  6 curate   dedupe, rule filters, visual-token budget, split into rl/ and chains/
Teacher replies are cached in OUTPUT_DIR/teacher_cache.sqlite: rerunning after a crash or a kill sends only
the requests that have no reply yet. OUTPUT_DIR/README.md and card.json count rows in and out per stage and
source, and every dropped row with its reason is in OUTPUT_DIR/drops.jsonl.
Example, with a local model as the teacher:
  vlrl serve /models/Qwen2.5-VL-7B-Instruct --port 8000 &
  vlrl data build configs/data/shapes_digits.yaml teacher.kind=openai teacher.model=Qwen2.5-VL-7B-Instruct
"""


def _fail(message: str) -> int:
    """The one-line error a user's mistake gets (no traceback): printed to stderr; the exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


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
        return _fail(str(e))
    import time

    from vlrl.data.schema import SchemaError
    from vlrl.data.vocab import UnknownTokensError
    from vlrl.metrics import read_metrics, summary_table
    from vlrl.models.check import ModelPathError
    from vlrl.run_dir import RunDirError
    from vlrl.trackers import TrackerError
    from vlrl.trainer import Trainer

    # Bad input (model path, dataset, rows) is the user's to fix: one message, no traceback.
    try:
        trainer = Trainer(cfg, resume=bool(args.resume), overwrite=args.overwrite)
        start = time.monotonic()
        result = trainer.fit()
        seconds = time.monotonic() - start
    except (SchemaError, UnknownTokensError, ModelPathError, RunDirError, TrackerError, FileNotFoundError) as e:
        return _fail(str(e))
    trainer.close()
    if trainer.accelerator.is_main_process:
        print(summary_table(read_metrics(cfg.trainer.output_dir), seconds, first_step=trainer.start_step))
        summary = ", ".join(f"{k}={v:.3f}" for k, v in sorted(result.items()) if k.startswith("eval/accuracy"))
        print(f"done: {cfg.trainer.output_dir} ({summary or 'no eval'})")
        print(_end_of_run_report(cfg.trainer.output_dir))
    return 0


def _sft(args: argparse.Namespace) -> int:
    from vlrl.config import SFTConfig
    from vlrl.config_loader import ConfigError, load_config

    overrides = list(args.overrides)
    yaml_path = overrides.pop(0) if overrides and "=" not in overrides[0] else None
    try:
        cfg = load_config(SFTConfig, yaml_path, overrides)
    except ConfigError as e:
        return _fail(str(e))
    from vlrl.data.schema import SchemaError
    from vlrl.data.vocab import UnknownTokensError
    from vlrl.models.check import ModelPathError
    from vlrl.run_dir import RunDirError
    from vlrl.sft import SFTDataError, SFTRun
    from vlrl.trackers import TrackerError

    try:
        run = SFTRun(cfg, overwrite=args.overwrite)
        result = run.fit()
    except (SchemaError, UnknownTokensError, ModelPathError, RunDirError, TrackerError, SFTDataError,
            FileNotFoundError) as e:
        return _fail(str(e))
    if run.accelerator.is_main_process:
        summary = ", ".join(f"{k}={v:.3f}" for k, v in sorted(result.items()) if k.startswith("eval/accuracy"))
        print(f"done: {cfg.trainer.output_dir}/final after {cfg.trainer.total_steps} steps "
              f"({summary or 'no eval'})")
    return 0


def _end_of_run_report(run_dir: str) -> str:
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
training. rollout.* sets that evaluation's decoding (max_new_tokens must hold a whole chain). metrics.jsonl
has loss/sft, sft/target_tokens, loss/grad_norm, optim/lr, perf/... per step and eval/... per evaluation.
The algorithm section of vlrl train does not apply. A run directory that holds a run is refused unless
--overwrite.
"""


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


def _eval(args: argparse.Namespace) -> int:
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
        return _fail("no MODEL given: vlrl eval MODEL [MODEL ...] [--data DATA] [key=value ...]")
    try:
        out, summaries, table = run_eval(models, data=args.data, overrides=overrides,
                                         config=args.config, out=args.out, overwrite=args.overwrite)
    except (EvalError, ConfigError, SchemaError, UnknownTokensError, ModelPathError, FileNotFoundError) as e:
        return _fail(str(e))
    print(table)
    print()
    for s in summaries:
        print(f"{s['label']}: {s['rows']} rows of {s['data']} split {s['split']!r} in {s['seconds']:.1f} s")
    print(f"wrote {out}/summary.json, {out}/table.txt, {out}/completions/")
    return 0


def _report(args: argparse.Namespace) -> int:
    from vlrl.report import REPORT_FILE, ReportError, write_report

    out = args.output or (Path(args.runs[0]) / REPORT_FILE if len(args.runs) == 1 else Path(REPORT_FILE))
    try:
        print(write_report(args.runs, out))
    except ReportError as e:
        return _fail(str(e))
    return 0


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


def _rewards_score(args: argparse.Namespace) -> int:
    import contextlib
    import json

    from vlrl.atomic import atomic_file
    from vlrl.config_loader import ConfigError
    from vlrl.rewards.offline import LineError, load_reward_config, score_file

    try:
        config = load_reward_config(args.config, list(args.overrides))
    except ConfigError as e:
        return _fail(str(e))
    if not Path(args.input).is_file():  # before OUT is touched
        return _fail(f"input file not found: {args.input}")
    try:
        # OUT is written under a temporary name and replaces the old OUT only once every line is scored: an
        # input error (or a kill) leaves the old OUT as it was. OUT may even be the input file.
        with contextlib.ExitStack() as stack:
            to_file = args.output not in (None, "-")
            out = stack.enter_context(atomic_file(args.output)) if to_file else sys.stdout
            summary, errors = score_file(args.input, out, config, batch_size=args.batch_size,
                                         skip_invalid=args.skip_invalid, progress_bar=not args.quiet)
    except (LineError, ValueError, FileNotFoundError) as e:
        return _fail(str(e))
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


def _rewards_list(args: argparse.Namespace) -> int:
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


def _models_tiny(args: argparse.Namespace) -> int:
    from vlrl.atomic import refuse_non_empty
    from vlrl.models.tiny import build_tiny_model

    try:
        refuse_non_empty(args.out)  # at once, not after reading the data and building the model
    except FileExistsError as e:  # OUT is written whole or not at all, never over another directory
        return _fail(str(e))
    try:
        words = _vocabulary_texts(args.vocab_from, args.splits, args.system_prompt, args.prompt_suffix,
                                  args.reasoning)
    except (FileNotFoundError, ValueError) as e:
        return _fail(f"--vocab-from: {e}")
    print(build_tiny_model(args.out, words=words, family=args.family, seed=args.seed, min_pixels=args.min_pixels,
                           max_pixels=args.max_pixels))
    return 0


def _vocabulary_texts(data: str | None, splits: list[str], system_prompt: str, prompt_suffix: str,
                      reasoning: bool = False) -> list[str]:
    """The texts whose words make a tiny model's vocabulary: those of `splits` of the dataset at `data` (splits
    it lacks are skipped; at least one must exist), else the built-in synthetic set's words."""
    from vlrl.data.schema import SchemaError, load_rows
    from vlrl.data.vocab import dataset_texts

    if not data:
        from data_pipelines.synthetic.shapes import WORDS

        return [*WORDS, system_prompt, prompt_suffix]
    found, missing = [], []
    for split in splits:
        try:
            found.append(load_rows(data, split))
        except SchemaError as e:
            if "no split" not in str(e) and "no parquet files for split" not in str(e):
                raise
            missing.append(split)
    if not found:
        raise ValueError(f"{data} has none of the splits {splits}")
    if missing:
        print(f"--vocab-from: {data} has no split {missing}; using {[s for s in splits if s not in missing]}",
              file=sys.stderr)
    return list(dataset_texts(found, system_prompt, prompt_suffix, reasoning))


def _models_random(args: argparse.Namespace) -> int:
    from data_pipelines.synthetic.shapes import WORDS
    from vlrl.atomic import refuse_non_empty
    from vlrl.models.shapes import parse_overrides, resolve_shape
    from vlrl.models.tiny import build_random_model

    try:
        overrides = parse_overrides(args.set)
        resolve_shape(args.like, overrides)  # a bad --set fails here, not after the output check
    except ValueError as e:
        return _fail(str(e))
    try:
        refuse_non_empty(args.out)  # at once, not after building billions of random weights
    except FileExistsError as e:
        return _fail(str(e))
    try:
        print(build_random_model(args.out, like=args.like, overrides=overrides, words=WORDS, dtype=args.dtype,
                                 seed=args.seed, device=args.device))
    except ValueError as e:  # overrides that make no valid config of the family
        return _fail(f"--like {args.like} {' '.join('--set ' + s for s in args.set)}: {e}")
    return 0


def _data_synth(args: argparse.Namespace) -> int:
    from data_pipelines.synthetic.shapes import build_shapes_dataset

    try:
        ds = build_shapes_dataset(args.out, args.train_rows, args.eval_rows, seed=args.seed,
                                  image_size=args.image_size, tasks=tuple(args.tasks))
    except FileExistsError as e:
        return _fail(str(e))
    print(f"{args.out}: " + ", ".join(f"{k}={len(v)} rows" for k, v in ds.items()))
    return 0


def _data_build(args: argparse.Namespace) -> int:
    import logging

    from data_pipelines.build import build
    from data_pipelines.config import BuildConfig
    from data_pipelines.sources.annotations import SourceError
    from vlrl.config_loader import ConfigError, load_config

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = list(args.overrides)
    yaml_path = None
    if overrides and "=" not in overrides[0]:
        yaml_path = overrides.pop(0)
    try:
        cfg = load_config(BuildConfig, yaml_path, overrides)
        card = build(cfg, config_name=yaml_path or "")
    except (ConfigError, SourceError) as e:
        return _fail(str(e))
    out = cfg.output_dir
    for s in card["stages"]:
        print(f"{s['stage']:>9}: {s['rows_in']:>6} in -> {s['rows_out']:>6} out"
              + (f"  dropped {s['drops']}" if s["drops"] else ""))
    rl, chains = card["outputs"]["rl_train"]["rows"], card["outputs"]["chains"]["rows"]
    if not card["teachers"]:
        print("RL-only build: no teacher configured (teacher.kind=none), so no caption/distill/rewrite/verify stage")
    print(f"RL set: {out}/rl ({rl} train, {card['outputs']['rl_test']['rows']} test); reasoning chains: "
          f"{out}/chains ({chains}); card: {out}/README.md; {card['dropped']} dropped rows in {out}/drops.jsonl")
    print(f"train on it: vlrl train data.path={out}/rl model.path=tiny (a tiny model with this set's words) or "
          "model.path=CHECKPOINT")
    return 0


SERVE_HELP = """Serve a local checkpoint over an OpenAI-compatible chat-completions API.

Answers come from vlrl's own rollout backend (the code training samples with), so greedy replies equal the
training rollout's on the same prompt. Any OpenAI client works, and `vlrl data build` uses it as a teacher
(teacher.kind=openai teacher.base_url=http://127.0.0.1:8000/v1).

Routes:
  POST /v1/chat/completions  messages (content: a string, or parts {"type": "text", "text": ...} and
                             {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}),
                             max_tokens (or max_completion_tokens; capped by --max-new-tokens), temperature
                             (default 1; 0 = greedy), top_p, n, stop, seed. No streaming.
  GET  /v1/models            the served model's name
  GET  /health               {"status": "ok", "requests_served": n, "requests_failed": m}

The server is offline: images come inline as base64 data URLs; http(s) image URLs are refused (400), and
file:// URLs or local paths are read only with --allow-local-files. Requests are generated one at a time.
A line "serving MODEL on http://HOST:PORT" is printed once the server accepts connections.

  vlrl serve runs/tiny/final --port 8000
  vlrl serve /models/Qwen2.5-VL-3B-Instruct --model-name qwen2.5-vl-3b --max-new-tokens 2048
"""


def _serve(args: argparse.Namespace) -> int:
    from vlrl.serve import serve

    if args.port < 0 or args.port > 65535:
        return _fail(f"--port must be 0-65535, got {args.port}")
    if args.max_prompt_tokens is not None and args.max_prompt_tokens < 1:
        return _fail(f"--max-prompt-tokens must be >= 1, got {args.max_prompt_tokens}")
    if args.max_new_tokens < 1:
        return _fail(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    from vlrl.models.check import ModelPathError, check_model_path

    try:  # before the weights load: a wrong path or an unsupported model fails at once, with a message
        check_model_path(args.model, key="MODEL")
    except ModelPathError as e:
        return _fail(str(e))
    serve(args.model, host=args.host, port=args.port, model_name=args.model_name,
          max_new_tokens=args.max_new_tokens, dtype=args.dtype, device=args.device,
          allow_local_files=args.allow_local_files, quiet=args.quiet,
          min_pixels=args.min_pixels, max_pixels=args.max_pixels, max_prompt_tokens=args.max_prompt_tokens)
    return 0


def _add_serve_parser(sub) -> None:
    serve = sub.add_parser("serve", help="serve a checkpoint over an OpenAI-compatible HTTP API",
                           description=SERVE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("model", metavar="MODEL", help="HF-format checkpoint directory (e.g. runs/tiny/final)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free port, printed)")
    serve.add_argument("--model-name", default="", help="name reported in responses and /v1/models "
                       "(default: the checkpoint directory's name)")
    serve.add_argument("--max-new-tokens", type=int, default=1024,
                       help="cap on tokens generated per completion; larger max_tokens are cut to it (default 1024)")
    serve.add_argument("--max-prompt-tokens", type=int, default=None,
                       help="longest prompt accepted, in tokens (text and image); longer ones get a 400 that states "
                       "the limit (default: the model's context minus --max-new-tokens, at most 8192)")
    serve.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                       help="parameter dtype (default auto: bfloat16 on CUDA, float32 on CPU)")
    serve.add_argument("--device", default="auto", help="torch device, e.g. cpu, cuda, cuda:1 (default auto)")
    serve.add_argument("--allow-local-files", action="store_true",
                       help="also read images from file:// URLs and local paths (off: only data URLs)")
    serve.add_argument("--min-pixels", type=int, default=None,
                       help="smallest image area after resizing (default: the checkpoint processor's)")
    serve.add_argument("--max-pixels", type=int, default=None,
                       help="largest image area after resizing (default: the checkpoint processor's)")
    serve.add_argument("-q", "--quiet", action="store_true", help="no per-request log lines on stderr")
    serve.set_defaults(fn=_serve)


def _export(args: argparse.Namespace) -> int:
    from vlrl.checkpoint import export_checkpoint

    try:
        out = export_checkpoint(args.checkpoint, args.out)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        return _fail(str(e))
    print(f"wrote {out}")
    return 0


def _data_sources(args: argparse.Namespace) -> int:
    import inspect

    from data_pipelines.sources.params import describe, format_params
    from data_pipelines.sources.registry import SOURCES

    print("A source section is {kind, name, params}; each kind's params (from its options dataclass):")
    for kind, source in SOURCES.items():
        doc = inspect.getdoc(source.load) or ""
        print(f"\n{kind}: {doc.splitlines()[0] if doc else ''}")
        print("\n".join(format_params(describe(source.options))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from vlrl.config import Config, RewardConfig
    from vlrl.config_loader import format_help
    from vlrl.models.families import FAMILIES
    from vlrl.models.shapes import RELEASED_SHAPES, shapes_help

    parser = argparse.ArgumentParser(prog="vlrl", description="RL from verifiable rewards for vision-language models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    train.set_defaults(fn=_train)

    from vlrl.config import SFTConfig

    sft = sub.add_parser("sft", help="supervised fine-tuning on reasoning chains or answers (the SFT arm)",
                         description=SFT_HELP, epilog=format_help(SFTConfig),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    sft.add_argument("overrides", nargs="*", metavar="[CONFIG.yaml] key=value",
                     help="an optional YAML file (sections of vlrl train's config plus sft), then dotted overrides")
    sft.add_argument("--overwrite", action="store_true", help="start over in a directory that holds an earlier run "
                     "(its outputs are deleted first; a built tiny_model/ and data/ are kept)")
    sft.set_defaults(fn=_sft)

    from vlrl.config import EvalSettings

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
    ev.set_defaults(fn=_eval, overrides=[])

    report = sub.add_parser("report", help="draw runs into one static HTML page (curves, samples with images)",
                            description=REPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (trainer.output_dir)")
    report.add_argument("-o", "--output", help="the page to write (default RUN_DIR/report.html for one run, "
                        "./report.html for several)")
    report.set_defaults(fn=_report)

    export = sub.add_parser("export", help="turn a checkpoint (LoRA adapter, FSDP2 shards) into a plain HF model directory")
    export.add_argument("checkpoint", metavar="CHECKPOINT", help="e.g. runs/tiny/final or runs/tiny/checkpoints/step_000100")
    export.add_argument("out", metavar="OUT", help="directory to write (from_pretrained loads it)")
    export.set_defaults(fn=_export)

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
    score.set_defaults(fn=_rewards_score)
    listing = rewards_sub.add_parser("list", help="the registered rewards, their params and defaults")
    listing.set_defaults(fn=_rewards_list)

    models = sub.add_parser("models", help="build checkpoints offline").add_subparsers(dest="what", required=True)
    tiny = models.add_parser("tiny", help="write a tiny random Qwen VL model (HF format) for CPU demos and tests")
    tiny.add_argument("out", help="output directory")
    tiny.add_argument("--family", choices=list(FAMILIES), default="qwen2_5_vl",
                      help="model family, a transformers model_type (default qwen2_5_vl)")
    tiny.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    tiny.add_argument("--min-pixels", type=int, default=56 * 56, help="processor min_pixels (default 3136)")
    tiny.add_argument("--max-pixels", type=int, default=112 * 112, help="processor max_pixels (default 12544)")
    tiny.add_argument("--vocab-from", metavar="DATA", default=None,
                      help="schema-v1 dataset (save_to_disk directory or parquet) whose problems and answers give the "
                      "word vocabulary, as model.path=tiny does for training data (default: the built-in synthetic "
                      "set's words)")
    tiny.add_argument("--splits", nargs="+", default=["train", "test"],
                      help="splits of --vocab-from read for words (default: train test; absent ones are skipped)")
    tiny.add_argument("--system-prompt", default="", help="also add the words of this system prompt (data.system_prompt)")
    tiny.add_argument("--prompt-suffix", default="", help="also add the words of this suffix (data.prompt_suffix)")
    tiny.add_argument("--reasoning", action="store_true", help="also add the words of --vocab-from's reasoning "
                      "chains (a model to fine-tune on them with vlrl sft, e.g. its chains/ set)")
    tiny.set_defaults(fn=_models_tiny)
    rand = models.add_parser("random", help="write a random-weight model with a released model's exact shape",
                             epilog=shapes_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    rand.add_argument("out", help="output directory")
    rand.add_argument("--like", required=True, choices=list(RELEASED_SHAPES), metavar="NAME",
                      help="released shape to copy (listed below)")
    rand.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                      help="change one field of the shape, SECTION text or vision, FIELD a transformers config field "
                      "of the family (e.g. --set text.num_hidden_layers=2); repeatable")
    rand.add_argument("--dtype", default="bfloat16", help="parameter dtype (default bfloat16)")
    rand.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    rand.add_argument("--device", default="cpu", help="where the weights are drawn: cpu (default) or cuda (faster)")
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
    from data_pipelines.config import BuildConfig

    build = data.add_parser("build", help="run the dataset pipeline: collect, caption, distill, rewrite, verify, "
                            "curate", description=DATA_BUILD_HELP, epilog=format_help(BuildConfig),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    build.add_argument("overrides", nargs="*", metavar="[CONFIG.yaml] key=value",
                       help="an optional build recipe (default: built-in defaults, a small shapes set with the "
                       "programmatic teacher), then dotted overrides")
    build.set_defaults(fn=_data_build)
    sources = data.add_parser("sources", help="list the source kinds of `vlrl data build` and their params")
    sources.set_defaults(fn=_data_sources)
    _add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # argparse stops filling a positional list once an option follows it, so `key=value` overrides written
    # after options (`vlrl rewards score IN -o OUT workers=0`) come back unrecognised: they are overrides too.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any("=" not in e or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
