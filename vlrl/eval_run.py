"""`vlrl eval`: score saved models on a schema-v1 split with the trainer's own evaluation (`vlrl.evaluation`).

A model is an HF directory, a vlrl run's checkpoint (`checkpoints/step_N`, `final`, or the run directory for its
newest checkpoint), a LoRA checkpoint (its base model with the adapter, loaded as a resumed run loads it) or an
FSDP2 sharded checkpoint (assembled in this process, as `vlrl export` does). A checkpoint inside a run directory
is evaluated with that run's config.yaml — prompt, pixels, rewards, rollout, split and row limit — and, when the
trainer evaluated at its step, gives exactly the trainer's `eval/…` metrics; the rows go through the trainer's
start-up filters (row limit, prompt length, unknown words) in the same order.

Output, written whole or not at all (`vlrl.atomic`): OUT/summary.json (per model: overall and per data_source
metrics, the trainer-style flat metrics, model, data, split, k, rows, time, the settings used),
OUT/completions/<label>.jsonl (every completion with its row fields and scores) and OUT/table.txt (the table
printed at the end: data sources by models).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from vlrl.config import Config, EvalSettings
from vlrl.config_loader import config_to_dict, load_config

SUMMARY_FILE = "summary.json"
TABLE_FILE = "table.txt"
COMPLETIONS_DIR = "completions"
# sections of a run's config.yaml (`vlrl train`'s or `vlrl sft`'s) that eval does not read
RUN_ONLY_SECTIONS = ("algorithm", "optim", "trainer", "sft")


class EvalError(ValueError):
    """A model, dataset or option `vlrl eval` cannot use; the message names it and what would do."""


@dataclass
class ModelSpec:
    """One MODEL argument, resolved."""

    given: str  # as typed
    checkpoint: Path  # the directory loaded (a run directory resolves to its newest checkpoint)
    kind: str  # "hf" (HF directory or plain checkpoint), "lora" (adapter) or "sharded" (FSDP2)
    run_dir: Path | None  # the vlrl run holding it, whose config.yaml sets the defaults
    step: int | None  # the run's step of this checkpoint
    label: str  # name in the table and file names


# ---- models ------------------------------------------------------------------------------------------------
def resolve_model(text: str) -> ModelSpec:
    """What MODEL names; EvalError when it names nothing evaluable."""
    from vlrl.checkpoint import is_sharded_checkpoint, latest_checkpoint
    from vlrl.models.check import check_model_path, looks_like_hub_id
    from vlrl.models.lora import is_adapter_checkpoint

    path = Path(text).expanduser()
    if not path.exists():
        if looks_like_hub_id(text):  # as model.path: a hub id only when written org/name
            check_model_path(text, key="MODEL")
            return ModelSpec(text, path, "hf", None, None, text.replace("/", "--"))
        raise EvalError(f"MODEL {text}: no such file or directory ({path.resolve()}); give an HF model directory, a "
                        "vlrl run directory or one of its checkpoints (RUN/final, RUN/checkpoints/step_N)")
    if not path.is_dir():
        raise EvalError(f"MODEL {text} is a file; expected a model or checkpoint directory")
    if (path / "config.yaml").is_file() and (path / "checkpoints").is_dir():  # a run directory
        ckpt = latest_checkpoint(path)
        if ckpt is None:
            raise EvalError(f"MODEL {text} is a vlrl run directory with no complete checkpoint under "
                            f"{path / 'checkpoints'}")
        path = ckpt
    real = path.resolve()
    run_dir = real.parent.parent if real.parent.name == "checkpoints" else None
    if run_dir is not None and not (run_dir / "config.yaml").is_file():
        run_dir = None
    match = re.fullmatch(r"step_(\d+)", real.name)
    step = int(match.group(1)) if run_dir is not None and match else None
    if is_adapter_checkpoint(path):
        kind = "lora"
    elif is_sharded_checkpoint(path):
        kind = "sharded"
    else:
        kind = "hf"
        try:
            check_model_path(path, key="MODEL")
        except ValueError as e:
            raise EvalError(str(e)) from None
    label = f"{run_dir.name}-{real.name}" if run_dir is not None else real.name
    return ModelSpec(text, path, kind, run_dir, step, label)


def unique_labels(specs: list[ModelSpec]) -> None:
    """Make labels distinct (a suffix -2, -3, ... on repeats), in place."""
    seen: dict[str, int] = {}
    for spec in specs:
        n = seen.get(spec.label, 0) + 1
        seen[spec.label] = n
        if n > 1:
            spec.label = f"{spec.label}-{n}"


def adapter_base(spec: ModelSpec, settings: EvalSettings, base_override: str | None) -> str:
    """The base model of a LoRA checkpoint: model.path when given on the command line, else the one its
    adapter_config.json names."""
    from vlrl.models.lora import ADAPTER_CONFIG

    if base_override:
        return base_override
    base = json.loads((spec.checkpoint / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise EvalError(f"MODEL {spec.given}: {ADAPTER_CONFIG} names no base model; give it with model.path=BASE")
    return base


def load_model(spec: ModelSpec, settings: EvalSettings, device, base_override: str | None = None):
    """The `Policy` of `spec` on `device`, in model.dtype."""
    import torch

    from vlrl.models.check import check_model_path
    from vlrl.models.policy import load_policy, make_policy

    m = dataclasses.replace(settings.model, gradient_checkpointing=False)
    if spec.kind == "lora":
        base = adapter_base(spec, settings, base_override)
        check_model_path(base, key=f"the base model of {spec.given}")
        if m.lora_rank:  # the run's LoRA settings: as a resumed run loads it
            return load_policy(m, base, device, adapter_path=spec.checkpoint)
        return _merged_adapter(spec.checkpoint, base, m, device)
    m = dataclasses.replace(m, lora_rank=0)
    if spec.kind == "sharded":
        from transformers import AutoProcessor

        from vlrl.checkpoint import assemble_sharded

        model = assemble_sharded(spec.checkpoint, getattr(torch, m.dtype), attn_implementation=m.attn_implementation)
        processor = AutoProcessor.from_pretrained(str(spec.checkpoint))
        processor.tokenizer.padding_side = "left"
        return make_policy(model.to(device), processor)
    return load_policy(m, str(spec.checkpoint) if spec.checkpoint.exists() else spec.given, device)


def _merged_adapter(ckpt: Path, base: str, m, device):
    """A LoRA checkpoint outside a run (no model.lora_* settings): peft reads the adapter's own config, and the
    adapter is merged into the base weights."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlrl.models.policy import make_policy

    model = AutoModelForImageTextToText.from_pretrained(base, dtype=getattr(torch, m.dtype),
                                                        attn_implementation=m.attn_implementation)
    model = PeftModel.from_pretrained(model, str(ckpt)).merge_and_unload().to(device)
    processor = AutoProcessor.from_pretrained(base)
    processor.tokenizer.padding_side = "left"
    return make_policy(model, processor)


# ---- settings ----------------------------------------------------------------------------------------------
@dataclass
class Resolved:
    """The settings of one model and what follows from them."""

    settings: EvalSettings
    split: str
    data_path: str
    progress: float
    base_override: str | None


def model_settings(spec: ModelSpec, config: str | None, overrides: list[str], data: str | None) -> Resolved:
    """Defaults < the run's config.yaml (or --config) < key=value overrides < --data."""
    yaml_path = config or (str(spec.run_dir / "config.yaml") if spec.run_dir is not None else None)
    overrides = [*overrides, *([f"data.path={data}"] if data else [])]
    settings = load_config(EvalSettings, yaml_path, overrides, ignore_sections=RUN_ONLY_SECTIONS)
    e, d = settings.eval, settings.data
    if e.k < 1:
        raise EvalError(f"eval.k must be >= 1, got {e.k}")
    if e.n is not None and e.n < e.k:
        raise EvalError(f"eval.n={e.n} is below eval.k={e.k}: pass@k needs at least k samples per row")
    if e.batch_size < 1:
        raise EvalError(f"eval.batch_size must be >= 1, got {e.batch_size}")
    split = e.split or d.eval_split
    if not split:
        raise EvalError("no split to evaluate: data.eval_split is empty; name one with eval.split=NAME")
    data_path = d.path
    if data_path == "synthetic":
        generated = spec.run_dir / "data" if spec.run_dir is not None else None
        if generated is None or not (generated / "dataset_dict.json").exists():
            raise EvalError(f"MODEL {spec.given}: no dataset: data.path is 'synthetic' (generated by a training run "
                            "into RUN_DIR/data) and no run's data is at hand; give one with --data DATA")
        data_path = str(generated)
    progress = e.progress
    if progress is None:
        progress = 1.0
        if spec.step is not None:
            total = load_config(Config, spec.run_dir / "config.yaml", ignore_sections=("sft",)).trainer.total_steps
            progress = spec.step / total
    base = next((o.split("=", 1)[1] for o in overrides if o.startswith("model.path=")), None)
    return Resolved(settings, split, data_path, progress, base)


# ---- data --------------------------------------------------------------------------------------------------
def open_split(r: Resolved):
    """The split to evaluate, opened (not decoded); EvalError naming the dataset and split when it has none."""
    from vlrl.data import load_rows
    from vlrl.data.schema import SchemaError

    try:
        return load_rows(r.data_path, r.split)
    except SchemaError as e:
        if "no split" in str(e) or "no parquet files for split" in str(e):
            raise EvalError(f"dataset {r.data_path} has no split {r.split!r} to evaluate ({e}); choose one with "
                            "eval.split=NAME") from None
        raise


def load_eval_rows(r: Resolved, processor, context: int | None):
    """The split's rows the trainer would evaluate: at most data.max_eval_rows, without prompts over
    data.max_prompt_tokens, after data.unknown_tokens. Returns (rows, dropped records)."""
    import logging

    from vlrl.data import PromptEncoder
    from vlrl.data.validation import drop_long_prompts, prompt_limit, scan_split
    from vlrl.data.vocab import check_unknown_tokens

    s, d = r.settings, r.settings.data
    rows = open_split(r)
    if len(rows) > d.max_eval_rows:
        logging.getLogger(__name__).warning("%s split %r: evaluating the first %d of %d rows (data.max_eval_rows)",
                                            r.data_path, r.split, d.max_eval_rows, len(rows))
        rows = rows.select(range(d.max_eval_rows))
    label = f"data.path={r.data_path}, split {r.split!r}"
    scan = scan_split(rows, label)
    limit = prompt_limit(d.max_prompt_tokens, context, s.rollout.max_new_tokens)
    encoder = PromptEncoder(processor, s.model.min_pixels, s.model.max_pixels, d.system_prompt, d.prompt_suffix)
    kept, dropped = drop_long_prompts({"eval": (rows, scan, label)}, encoder, limit, SUMMARY_FILE)
    rows = check_unknown_tokens(processor.tokenizer, {"eval": kept["eval"]}, d.unknown_tokens, d.system_prompt,
                                d.prompt_suffix)["eval"]
    return rows, dropped


# ---- one model ---------------------------------------------------------------------------------------------
def evaluate_model(spec: ModelSpec, r: Resolved, rewards=None) -> tuple[dict, list[dict]]:
    """(summary, completion lines) of one model; `rewards`: reward functions by name (`RewardMixer`)."""
    import torch

    from vlrl.data import PromptEncoder
    from vlrl.data.rows import RowReader
    from vlrl.evaluation import encode_rows, evaluate, greedy_metrics, sampled_metrics
    from vlrl.models.check import check_model_path
    from vlrl.rewards import RewardMixer
    from vlrl.rollout.sampling import prompt_seed

    s, e = r.settings, r.settings.eval
    start = time.monotonic()
    device = e.device if e.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    source = adapter_base(spec, s, r.base_override) if spec.kind == "lora" else spec.checkpoint
    context = check_model_path(source if Path(source).exists() else spec.given, key="MODEL").context
    policy = load_model(spec, s, device, r.base_override)
    rows, dropped = load_eval_rows(r, policy.processor, context)
    kept, skipped = RowReader(rows).rows(range(len(rows)))  # a row whose image fails to decode is left out
    gone = {sk.index for sk in skipped}
    indices = [i for i in range(len(rows)) if i not in gone]
    encoder = PromptEncoder(policy.processor, s.model.min_pixels, s.model.max_pixels, s.data.system_prompt,
                            s.data.prompt_suffix)
    mixer = RewardMixer(s.reward, rewards=rewards)
    try:
        greedy = evaluate(policy, encode_rows(kept, encoder, 1, e.batch_size), mixer, s.rollout, r.progress)
        metrics = {**greedy_metrics(greedy.scores, term=s.reward.accuracy_term), "eval/skipped_rows": len(skipped)}
        results = [("greedy", greedy)]
        n = e.n or e.k
        if e.k > 1:
            seeds = [prompt_seed(e.seed, 0, i) for i in indices]
            sampled = evaluate(policy, encode_rows(kept, encoder, n, e.batch_size), mixer, s.rollout, r.progress,
                               seeds=seeds)
            metrics.update(sampled_metrics(sampled.scores, n, e.k, e.pass_threshold, term=s.reward.accuracy_term))
            results.append(("sampled", sampled))
    finally:
        mixer.close()
    summary = {
        "label": spec.label, "model": spec.given, "checkpoint": str(spec.checkpoint.resolve()), "kind": spec.kind,
        "run": str(spec.run_dir) if spec.run_dir is not None else None, "step": spec.step,
        "data": r.data_path, "split": r.split, "k": e.k, "n": n if e.k > 1 else None, "rows": len(kept),
        "skipped_rows": len(skipped), "dropped_rows": len(dropped), "progress": r.progress,
        "temperature": s.rollout.temperature if e.k > 1 else None, "device": device,
        "seconds": round(time.monotonic() - start, 3),
        **split_metrics(metrics, [row.data_source for row in kept]),
        "metrics": metrics, "settings": config_to_dict(s),
    }
    return summary, completion_lines(spec.label, results)


def split_metrics(metrics: dict[str, float], sources: list[str]) -> dict:
    """{"overall": {name: value}, "per_source": {source: {name: value, "rows": n}}} from flat `eval/...` metrics
    and the data source of each evaluated row."""
    overall = {}
    per_source = {s: {"rows": sources.count(s)} for s in sorted(set(sources))}
    for key, value in metrics.items():
        parts = key.split("/", 2)
        if len(parts) == 2 and parts[1] != "skipped_rows":
            overall[parts[1]] = value
        elif len(parts) == 3 and parts[2] in per_source:
            per_source[parts[2]][parts[1]] = value
    return {"overall": overall, "per_source": per_source}


def completion_lines(label: str, results) -> list[dict]:
    """One line per completion: the row fields `vlrl rewards score` reads (so the file can be scored again) and
    the scores it got, as RUN_DIR/completions.jsonl writes them."""
    from vlrl.rewards.offline import input_line, score_values

    lines = []
    for decoding, ev in results:
        G = ev.group_size
        for i, (inp, spec) in enumerate(zip(ev.inputs, ev.specs, strict=True)):
            lines.append({"id": ev.rows[i // G].id, "model": label, "decoding": decoding, "sample": i % G,
                          **input_line(inp, spec), "scores": score_values(ev.scores, i)})
    return lines


# ---- several models ----------------------------------------------------------------------------------------
def comparison_table(summaries: list[dict]) -> str:
    """Blocks of data sources (rows) by models (columns): greedy accuracy, then pass@k and mean@k when sampled."""
    names = ["accuracy"]
    for s in summaries:
        for name in s["overall"]:
            if name.startswith(("pass@", "mean@")) and name not in names:
                names.append(name)
    labels = [s["label"] for s in summaries]
    sources = sorted({src for s in summaries for src in s["per_source"]})
    width = max([len(x) for x in sources] + [len("all"), len("accuracy (greedy)"), 12])
    cols = [max(len(label), 6) for label in labels]
    blocks = []
    for name in names:
        title = "accuracy (greedy)" if name == "accuracy" else name
        lines = [f"{title:<{width}}  " + "  ".join(f"{label:>{c}}" for label, c in zip(labels, cols, strict=True))]
        for src in [*sources, "all"]:
            cells = []
            for s, c in zip(summaries, cols, strict=True):
                value = s["overall"].get(name) if src == "all" else s["per_source"].get(src, {}).get(name)
                cells.append(f"{value:>{c}.3f}" if value is not None else f"{'-':>{c}}")
            lines.append(f"{src:<{width}}  " + "  ".join(cells))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_outputs(out: Path, summaries: list[dict], completions: list[list[dict]], table: str,
                  overwrite: bool) -> None:
    """OUT/summary.json, OUT/table.txt and OUT/completions/<label>.jsonl, all appearing at once."""
    from vlrl.atomic import atomic_dir

    with atomic_dir(out, replace=overwrite) as tmp:
        (tmp / SUMMARY_FILE).write_text(json.dumps({"models": summaries}, indent=1) + "\n")
        (tmp / TABLE_FILE).write_text(table + "\n")
        (tmp / COMPLETIONS_DIR).mkdir()
        for summary, lines in zip(summaries, completions, strict=True):
            with (tmp / COMPLETIONS_DIR / f"{summary['label']}.jsonl").open("w") as f:
                f.writelines(json.dumps(line) + "\n" for line in lines)


def default_out(specs: list[ModelSpec]) -> Path:
    return Path("runs/eval") / "_vs_".join(spec.label for spec in specs)


def run_eval(models: list[str], data: str | None = None, overrides: list[str] = (), config: str | None = None,
             out: str | None = None, overwrite: bool = False, rewards=None) -> tuple[Path, list[dict], str]:
    """Evaluate `models`, write OUT; returns (OUT, summaries, table). Every model and the settings are checked,
    and OUT is refused when it holds something and not `overwrite`, before any model is loaded. `rewards`:
    reward functions the reward terms name, as Python objects (`vlrl.rewards.mixer.RewardMixer`)."""
    from vlrl.atomic import refuse_non_empty

    specs = [resolve_model(m) for m in models]
    unique_labels(specs)
    resolved = [model_settings(spec, config, list(overrides), data) for spec in specs]
    for r in resolved:
        open_split(r)  # a missing dataset or split fails now, not after a model has loaded
    out_dir = Path(out) if out else default_out(specs)
    if not overwrite:
        try:
            refuse_non_empty(out_dir)
        except FileExistsError as e:
            raise EvalError(f"--out {out_dir}: {e}; or pass --overwrite to replace it") from None
    summaries, completions = [], []
    for spec, r in zip(specs, resolved, strict=True):
        summary, lines = evaluate_model(spec, r, rewards)
        summaries.append(summary)
        completions.append(lines)
    table = comparison_table(summaries)
    write_outputs(out_dir, summaries, completions, table, overwrite)
    return out_dir, summaries, table
