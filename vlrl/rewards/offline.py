"""Scoring completions offline: ``vlrl rewards score`` reads a JSONL file, scores every line with the
same :class:`~vlrl.rewards.mixer.RewardMixer` training uses, and writes one JSON line of scores per input.

Input lines (one JSON object each)
----------------------------------
=================  ========  ==========================================================================
field              required  meaning
=================  ========  ==========================================================================
``completion``     yes       the model's text (special tokens stripped)
``answer``         yes       ground truth: text, a number, a letter, or boxes (a JSON list, or its text)
``task``           yes       routes the reward terms (``reward.per_task``) and the ``accuracy`` verifier
``reward``         no        the row's own override (``terms``/``weights``/``params``, or V-Triune style)
``image_size``     no        ``[w, h]`` of the original image (``image_sizes``: ``[[w, h], ...]``)
``resized_size``   no        ``[w, h]`` the model saw after resizing (``resized_sizes`` likewise)
``data_source``    no        groups the summary (and metrics in training)
``progress``       no        training progress in [0, 1] (for schedules such as the dynamic IoU threshold)
``meta``           no        the row's meta object (options of a multiple-choice question, ...)
``num_tokens``     no        completion length in tokens, and ``max_tokens`` the length limit (``overlong``)
``problem``        no        the question (TRL-style rewards receive it as ``prompts``)
``id``             no        the row's id; copied to the output (and part of ``random``'s draw)
``step``           no        the train step (1 = first) and ``seed`` the trainer's seed (``random``'s draw)
=================  ========  ==========================================================================

Lines carry no images: rewards that look at them (``judge``) grade the text alone here. Other fields are
ignored. Training writes exactly this format to ``RUN_DIR/completions.jsonl`` when ``trainer.save_completions`` is
set, with the scores it computed.

Output lines: ``{"line": n, "id": ..., "total": x, "<component>": value or null, ...}`` in input order,
``null`` where a term did not apply to that line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml
from tqdm import tqdm

from vlrl.config import Config, RewardConfig
from vlrl.config_loader import ConfigError, load_config
from vlrl.rewards.base import RewardInput
from vlrl.rewards.mixer import RewardMixer

REQUIRED = ("completion", "answer", "task")


class LineError(ValueError):
    """A malformed input line; the message names the file, the line and the field."""


def load_reward_config(path: str | Path | None, overrides: list[str] = ()) -> RewardConfig:
    """The reward section from ``path``: a whole training config (its ``reward:`` section is used) or a
    file holding only the reward section. ``overrides`` are ``key=value`` on the reward section."""
    if path is None:
        return load_config(RewardConfig, None, overrides)
    text = Path(path).read_text() if Path(path).is_file() else None
    if text is None:
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    sections = {f.name for f in dataclasses.fields(Config)}
    if isinstance(data, Mapping) and data and set(data) <= sections:  # a training recipe
        return load_config(Config, path, [f"reward.{o}" for o in overrides]).reward
    return load_config(RewardConfig, path, overrides)


def _sizes(obj: Mapping, single: str, plural: str, where: str) -> tuple:
    if single in obj and plural in obj:
        raise LineError(f"{where}: give {single!r} or {plural!r}, not both")
    value = obj.get(plural) if plural in obj else ([obj[single]] if obj.get(single) is not None else [])
    if value is None:
        return ()
    try:
        sizes = tuple((float(w), float(h)) for w, h in value)
    except (TypeError, ValueError):
        field = plural if plural in obj else single
        raise LineError(f"{where}: field {field!r} must be [w, h] (or a list of them), got {obj[field]!r}") from None
    return tuple((int(w) if w.is_integer() else w, int(h) if h.is_integer() else h) for w, h in sizes)


def parse_line(obj: Any, where: str) -> tuple[RewardInput, Mapping | None]:
    """A RewardInput and the row's reward override from one decoded input line; LineError when invalid."""
    if not isinstance(obj, Mapping):
        raise LineError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in REQUIRED:
        if key not in obj:
            raise LineError(f"{where}: missing required field {key!r} (required: {', '.join(REQUIRED)})")
    if not isinstance(obj["completion"], str):
        raise LineError(f"{where}: field 'completion' must be a string, got {type(obj['completion']).__name__}")
    if not isinstance(obj["task"], str) or not obj["task"]:
        raise LineError(f"{where}: field 'task' must be a non-empty string, got {obj['task']!r}")
    answer = obj["answer"]
    if not isinstance(answer, str):
        answer = json.dumps(answer)  # numbers and box lists arrive as JSON values
    progress = obj.get("progress", 0.0)
    if isinstance(progress, bool) or not isinstance(progress, (int, float)) or not 0.0 <= progress <= 1.0:
        raise LineError(f"{where}: field 'progress' must be a number in [0, 1], got {progress!r}")
    spec = obj.get("reward")
    if spec is not None and not isinstance(spec, Mapping):
        raise LineError(f"{where}: field 'reward' must be an object, got {spec!r}")
    meta = obj.get("meta") or {}
    if not isinstance(meta, Mapping):
        raise LineError(f"{where}: field 'meta' must be an object, got {meta!r}")
    optional = {}
    for key in ("num_tokens", "max_tokens"):
        value = obj.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise LineError(f"{where}: field {key!r} must be a non-negative integer, got {value!r}")
        optional[key] = value
    for key in ("step", "seed"):
        value = obj.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise LineError(f"{where}: field {key!r} must be an integer, got {value!r}")
        optional[key] = value
    source = obj.get("data_source", "")
    problem = obj.get("problem", "")
    if not isinstance(problem, str):
        raise LineError(f"{where}: field 'problem' must be a string, got {type(problem).__name__}")
    inp = RewardInput(
        completion=obj["completion"], answer=answer, task=obj["task"],
        data_source=source if isinstance(source, str) else str(source),
        image_sizes=_sizes(obj, "image_size", "image_sizes", where),
        resized_sizes=_sizes(obj, "resized_size", "resized_sizes", where),
        meta=meta, progress=float(progress), problem=problem,
        row_id="" if obj.get("id") is None else str(obj["id"]), **optional,
    )
    return inp, spec


def input_line(inp: RewardInput, spec: Mapping | None) -> dict:
    """The JSON object :func:`parse_line` reads back as ``(inp, spec)``: the format of completions.jsonl."""
    out: dict[str, Any] = {"completion": inp.completion, "answer": inp.answer, "task": inp.task,
                           "data_source": inp.data_source, "progress": inp.progress}
    if spec:
        out["reward"] = spec
    if inp.problem:
        out["problem"] = inp.problem
    if inp.image_sizes:
        out["image_sizes"] = [list(s) for s in inp.image_sizes]
    if inp.resized_sizes:
        out["resized_sizes"] = [list(s) for s in inp.resized_sizes]
    if inp.meta:
        out["meta"] = dict(inp.meta)
    if inp.num_tokens is not None:
        out["num_tokens"] = inp.num_tokens
    if inp.max_tokens is not None:
        out["max_tokens"] = inp.max_tokens
    if inp.row_id:
        out["id"] = inp.row_id
    for key in ("step", "seed"):
        if getattr(inp, key) is not None:
            out[key] = getattr(inp, key)
    return out


def score_values(scores, i: int) -> dict[str, float | None]:
    """Row ``i`` of a Scores as ``{"total": x, component: value or None}``."""
    out: dict[str, float | None] = {"total": scores.total[i].item()}
    for key, values in scores.components.items():
        v = values[i].item()
        out[key] = None if math.isnan(v) else v
    return out


@dataclass
class Summary:
    lines: int = 0
    skipped: int = 0
    seconds: float = 0.0
    parse_failures: int = 0
    timeouts: int = 0
    metrics: dict | None = None


def _lines(source: Path | Iterable[Mapping]) -> Iterator[tuple[int, str, Any]]:
    """(line number, where, JSON text or an object already decoded) of a JSONL file or of records in memory."""
    if isinstance(source, Path):
        with source.open(encoding="utf-8") as f:
            for n, text in enumerate(f, 1):
                if text.strip():
                    yield n, f"{source}:{n}", text
        return
    for n, obj in enumerate(source, 1):
        yield n, f"completion {n}", obj


def _read(source: Path | Iterable[Mapping], skip_invalid: bool, summary: Summary,
          errors: list[str]) -> Iterator[tuple[int, dict, RewardInput, Mapping | None]]:
    for n, where, text in _lines(source):
        try:
            try:
                obj = json.loads(text) if isinstance(text, str) else text
            except json.JSONDecodeError as err:
                raise LineError(f"{where}: invalid JSON: {err}") from None
            inp, spec = parse_line(obj, where)
        except LineError as err:
            if not skip_invalid:
                raise
            summary.skipped += 1
            errors.append(str(err))
            continue
        yield n, obj, inp, spec


def score_file(input_path: str | Path | Iterable[Mapping], out: TextIO, config: RewardConfig, batch_size: int = 1024,
               skip_invalid: bool = False, progress_bar: bool = True,
               rewards: Mapping | None = None) -> tuple[Summary, list[str]]:
    """Score every line of ``input_path`` into ``out`` (one JSON line each, input order). Returns the
    summary and the messages of skipped lines. Raises LineError on the first bad line unless
    ``skip_invalid``; a bad per-row reward spec raises ValueError naming the line. ``rewards``: reward
    functions by the names the config's terms use (see :class:`~vlrl.rewards.mixer.RewardMixer`)."""
    if isinstance(input_path, (str, Path)):
        path = Path(input_path)
        if not path.is_file():
            raise FileNotFoundError(f"input file not found: {path}")
    else:  # records in memory (the Python API's score_completions)
        path = input_path
    summary, errors = Summary(), []
    mixer = RewardMixer(config, rewards=rewards)
    parts: list = []  # Scores of each batch, merged for the summary
    start = time.perf_counter()
    bar = tqdm(unit=" lines", disable=not progress_bar, desc="scoring")
    try:
        batch: list = []
        for item in _read(path, skip_invalid, summary, errors):
            batch.append(item)
            if len(batch) == batch_size:
                _score_batch(mixer, batch, out, summary, parts, bar)
                batch = []
        if batch:
            _score_batch(mixer, batch, out, summary, parts, bar)
    finally:
        bar.close()
        mixer.close()
    summary.seconds = time.perf_counter() - start
    if parts:
        summary.metrics = _merge_metrics(parts)
    return summary, errors


def _score_batch(mixer, batch, out, summary, parts, bar) -> None:
    inputs = [inp for _, _, inp, _ in batch]
    specs = [spec for _, _, _, spec in batch]
    try:
        scores = mixer.score(inputs, specs)
    except ValueError as err:  # names "row i": translate to the file's line number
        message = str(err)
        if message.startswith("row "):
            i = int(message.split()[1])
            message = f"line {batch[i][0]}" + message[len(f"row {i}"):]
        raise ValueError(message) from err
    for i, (n, obj, _, _) in enumerate(batch):
        record: dict[str, Any] = {"line": n}
        if "id" in obj:
            record["id"] = obj["id"]
        record.update(score_values(scores, i))
        out.write(json.dumps(record) + "\n")
    summary.lines += len(batch)
    summary.parse_failures += scores.parse_failures
    summary.timeouts += scores.timeouts
    parts.append(scores)
    bar.update(len(batch))


def _merge_metrics(parts: list) -> dict[str, float]:
    """Metrics of several Scores batches as if they were one."""
    import torch

    from vlrl.rewards.mixer import Scores

    keys = sorted({k for s in parts for k in s.components})
    n = [s.total.numel() for s in parts]
    merged = Scores(
        total=torch.cat([s.total for s in parts]),
        components={k: torch.cat([s.components.get(k, torch.full((m,), math.nan)) for s, m in zip(parts, n, strict=True)])
                    for k in keys},
        data_sources=[d for s in parts for d in s.data_sources],
        parse_failures=sum(s.parse_failures for s in parts),
        timeouts=sum(s.timeouts for s in parts),
    )
    return merged.metrics()
