"""What a run settles before any weights load, shared by `vlrl train` (vlrl.trainer) and `vlrl sft` (vlrl.sft):
the run directory (claimed, or its newest checkpoint found for --resume), the data (the built-in synthetic set
generated into the run, splits loaded and every row checked from image headers, prompts over the limit left
out, the vocabulary checked) and the tiny model built from the data's words.

Each step fails with a message naming what to fix before the slow work starts; in a multi-process run the main
process writes and decides, the others wait and get the same answer.
"""

from __future__ import annotations

import json
from pathlib import Path

from accelerate.utils import broadcast_object_list

from vlrl.atomic import write_text_atomic
from vlrl.checkpoint import latest_checkpoint
from vlrl.data import PromptEncoder, load_rows
from vlrl.data.validation import drop_long_prompts, prompt_limit, scan_split
from vlrl.data.vocab import check_unknown_tokens, dataset_texts
from vlrl.models.check import check_model_path
from vlrl.run_dir import RunDirError, check_run_dir, clear_run

DROPPED_ROWS_FILE = "dropped_rows.jsonl"  # rows left out at start-up (prompt over data.max_prompt_tokens)


def claim_run_dir(acc, run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a fresh run over an earlier one (see `vlrl.run_dir`), or clear it with `overwrite`. The
    main process looks and tells the others, so every rank raises or none does."""
    problem = None
    if acc.is_main_process:
        try:
            check_run_dir(run_dir, resume, overwrite)
            if overwrite and (removed := clear_run(run_dir)):
                print(f"--overwrite: removed {', '.join(removed)} from {run_dir}", flush=True)
        except RunDirError as e:
            problem = str(e)
    [problem] = broadcast_object_list([problem])
    if problem:
        raise RunDirError(problem)


def resume_checkpoint(acc, run_dir: Path) -> Path:
    """The newest complete checkpoint; newer incomplete ones (a save killed before saves were atomic, a file
    removed by hand) are skipped with a message."""
    def report(path: Path, reason: str) -> None:
        if acc.is_main_process:
            print(f"--resume: skipping {path}: {reason}", flush=True)

    ckpt = latest_checkpoint(run_dir, report=report)
    if ckpt is None:
        raise RunDirError(f"--resume {run_dir}: no complete checkpoint under {run_dir / 'checkpoints'}; start it "
                          f"over with `vlrl train ... trainer.output_dir={run_dir} --overwrite`")
    return ckpt


def data_path(cfg, run_dir: Path, acc) -> str:
    """data.path, or for the built-in `synthetic` set the folder it is generated into (RUN_DIR/data, once)."""
    d = cfg.data
    if d.path != "synthetic":
        return d.path
    path = run_dir / "data"
    if acc.is_main_process and not (path / "dataset_dict.json").exists():
        from data_pipelines.synthetic.shapes import build_shapes_dataset

        build_shapes_dataset(str(path), d.synthetic_train_rows, d.synthetic_eval_rows, seed=cfg.trainer.seed)
    acc.wait_for_everyone()
    return str(path)


def load_splits(cfg, path: str):
    """(train, eval or None, scans): the splits, eval cut to data.max_eval_rows, every row checked now (image
    headers only) so a bad row stops the run before any slow work."""
    d = cfg.data
    train = load_rows(path, d.train_split)
    evals = load_rows(path, d.eval_split) if d.eval_split else None
    if evals is not None and len(evals) > d.max_eval_rows:
        evals = evals.select(range(d.max_eval_rows))
    scans = {"train": scan_split(train, f"data.path={path}, split {d.train_split!r} (data.train_split)")}
    if evals is not None:
        scans["eval"] = scan_split(evals, f"data.path={path}, split {d.eval_split!r} (data.eval_split)")
    return train, evals, scans


def tiny_words(cfg, train, evals) -> list[str]:
    """The texts whose words make the tiny model's vocabulary. The built-in synthetic set's fixed word list keeps
    the demo's vocabulary (and so its model) the same whatever rows were drawn; any other dataset gives the words
    of its problems and answers."""
    d = cfg.data
    if d.path == "synthetic":
        from data_pipelines.synthetic.shapes import WORDS

        return [*WORDS, d.system_prompt, d.prompt_suffix]
    return list(dataset_texts([train, evals], d.system_prompt, d.prompt_suffix))


def model_path(cfg, run_dir: Path, acc, words) -> Path | str:
    """model.path, or for `tiny` RUN_DIR/tiny_model, built once from `words` (a list, or a function giving it:
    called only when the model is built)."""
    if cfg.model.path != "tiny":
        return cfg.model.path
    path = run_dir / "tiny_model"
    if acc.is_main_process and not (path / "config.json").exists():
        from vlrl.models.tiny import build_tiny_model

        m = cfg.model
        build_tiny_model(path, words=words() if callable(words) else words, seed=cfg.trainer.seed,
                         min_pixels=m.min_pixels, max_pixels=m.max_pixels)
    acc.wait_for_everyone()
    return path


def drop_long(cfg, run_dir: Path, acc, model_dir, train, evals, scans):
    """(train, eval, processor): rows whose prompt is over data.max_prompt_tokens left out
    (`vlrl.data.validation.drop_long_prompts`), counted in the log and listed in RUN_DIR/dropped_rows.jsonl. No
    weights are loaded and no image decoded; the processor's tokenizer serves the vocabulary check."""
    from transformers import AutoProcessor

    d = cfg.data
    info = check_model_path(model_dir)
    limit = prompt_limit(d.max_prompt_tokens, info.context, cfg.rollout.max_new_tokens)
    encoder = PromptEncoder(AutoProcessor.from_pretrained(str(model_dir)), cfg.model.min_pixels, cfg.model.max_pixels,
                            d.system_prompt, d.prompt_suffix, generic=info.generic)
    splits = {"train": (train, scans["train"], f"data.path={d.path}, split {d.train_split!r}")}
    if evals is not None:
        splits["eval"] = (evals, scans["eval"], f"data.path={d.path}, split {d.eval_split!r}")
    kept, dropped = drop_long_prompts(splits, encoder, limit, run_dir / DROPPED_ROWS_FILE)
    if acc.is_main_process:
        write_text_atomic(run_dir / DROPPED_ROWS_FILE, "".join(json.dumps(line) + "\n" for line in dropped))
    return kept["train"], kept.get("eval"), encoder.processor


def check_vocabulary(cfg, tokenizer, train, evals):
    """(train, eval) after `data.unknown_tokens`: the tokenizer must be able to write every problem and answer
    (checked before the model loads)."""
    d = cfg.data
    splits = check_unknown_tokens(tokenizer, {"train": train, "eval": evals}, d.unknown_tokens, d.system_prompt,
                                  d.prompt_suffix)
    return splits["train"], splits["eval"]
