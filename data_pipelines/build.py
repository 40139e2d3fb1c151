"""``vlrl data build``: the six stages, from sources to an RL set and a reasoning-chain set.

    collect ─► caption ─► distill ─► rewrite ─► verify ─┐
       └──────────────────────────────────────────────► curate ─► rl/ (train, test), chains/, card

Collect reads every source and validates every row against schema v1. The teacher stages ask through one
reply cache (``<output_dir>/teacher_cache.sqlite``), so rerunning a build — after a crash, a kill, or a
change to a later stage — sends only the requests that have no reply yet. Each stage's output is saved
under ``<output_dir>/stages/`` for inspection. Curate filters every collected row (the RL set needs no chain)
and takes the chain set from the rows that survived verify.

With no teacher (``teacher.kind: none``, the default) the build is RL-only: a teacher stage runs only when its
resolved teacher is not ``none``, and verify only when some row has a chain to check, so the card lists collect
and curate and no row is dropped for a stage that had nothing to do.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import datasets

from data_pipelines.cache import ReplyCache
from data_pipelines.card import check_totals, histogram, stage_entry, write_card
from data_pipelines.config import BuildConfig, TeacherConfig
from data_pipelines.records import Drop, rows_dataset, to_schema_row
from data_pipelines.stages.caption import caption
from data_pipelines.stages.curate import curate
from data_pipelines.stages.distill import distill
from data_pipelines.stages.rewrite import rewrite
from data_pipelines.stages.teach import StageResult
from data_pipelines.stages.verify import verify
from vlrl.atomic import atomic_dir
from vlrl.config_loader import ConfigError, save_config
from vlrl.data.schema import RowError, validate_row

log = logging.getLogger(__name__)


def make_teacher(cfg: TeacherConfig):
    """The teacher for a resolved teacher section (see `make_teacher_config`)."""
    if cfg.kind == "openai":
        from data_pipelines.teachers.openai_http import OpenAITeacher

        return OpenAITeacher(base_url=cfg.base_url, model=cfg.model, api_key_env=cfg.api_key_env,
                             max_concurrency=cfg.max_concurrency, retries=cfg.retries, timeout_s=cfg.timeout_s)
    if cfg.kind == "local":
        from data_pipelines.teachers.local import LocalTeacher

        return LocalTeacher(cfg.model)
    if cfg.kind == "programmatic":
        from data_pipelines.teachers.programmatic import ProgrammaticTeacher

        return ProgrammaticTeacher()
    raise ValueError(f"no teacher for teacher.kind={cfg.kind!r}")


def teacher_stages(cfg: BuildConfig) -> dict[str, TeacherConfig]:
    """The teacher stages that run, with their resolved teachers: enabled and with a teacher other than none."""
    resolved = {name: make_teacher_config(cfg.teacher, getattr(cfg, name).teacher)
                for name in ("caption", "distill", "rewrite") if getattr(cfg, name).enabled}
    return {name: teacher for name, teacher in resolved.items() if teacher.kind != "none"}


def validate(cfg: BuildConfig) -> None:
    """Every check that needs no data, before the first teacher call: a mistake here would otherwise surface
    after hours of captioning."""
    from data_pipelines.sources.registry import source_spec
    from data_pipelines.stages.teach import load_template

    names = [spec.name or spec.kind for spec in map(source_spec, cfg.sources)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"sources: names {repeated} are used by more than one section; give each a distinct "
                          "`name` (it prefixes the row ids)")
    choices = {"curate.dedupe": (cfg.curate.dedupe, ("image_problem", "image", "none")),
               "curate.rl_from": (cfg.curate.rl_from, ("all", "verified"))}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")
    if cfg.curate.max_prompt_tokens and not cfg.curate.processor:
        raise ConfigError("curate.max_prompt_tokens needs curate.processor (a model directory) to count tokens")
    if cfg.pass_rate.enabled and not cfg.pass_rate.model:
        raise ConfigError("pass_rate.enabled needs pass_rate.model (the policy checkpoint to measure)")
    for name in teacher_stages(cfg):
        try:
            load_template(name, getattr(cfg, name).prompt_file)
        except FileNotFoundError as e:
            raise ConfigError(f"{name}.prompt_file: {e}") from e


def make_teacher_config(base: TeacherConfig, overrides: dict) -> TeacherConfig:
    """The top-level teacher section with a stage's overrides applied; unknown keys and kinds are errors."""
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TeacherConfig)})
    if unknown:
        raise ConfigError(f"teacher overrides: unknown keys {unknown}; valid: "
                          f"{[f.name for f in dataclasses.fields(TeacherConfig)]}")
    cfg = dataclasses.replace(base, **overrides)
    if cfg.kind not in ("none", "openai", "local", "programmatic"):
        raise ConfigError(f"teacher.kind must be 'none', 'openai', 'local' or 'programmatic', got {cfg.kind!r}")
    if cfg.kind in ("openai", "local") and not cfg.model:
        raise ConfigError(f"teacher.model: the {cfg.kind} teacher needs "
                          + ("a model name" if cfg.kind == "openai" else "a checkpoint path"))
    return cfg


def collect(cfg: BuildConfig) -> StageResult:
    """Stage 1: every source's rows, validated against schema v1; ids must be unique across sources."""
    from data_pipelines.sources.registry import load_source

    rows, drops, seen, per_source = [], [], set(), {}
    for spec in cfg.sources:
        result = load_source(spec)
        drops += result.drops
        kept, before = 0, len(drops)
        for index, row in enumerate(result.rows):
            schema_row = to_schema_row(row)
            try:
                validate_row(schema_row, index)
            except RowError as e:
                drops.append(Drop(str(row.get("id") or f"{result.name}:{index}"), "collect", "schema_error", str(e)))
                continue
            if schema_row["id"] in seen:
                drops.append(Drop(schema_row["id"], "collect", "duplicate_id", f"id repeated by source {result.name!r}"))
                continue
            seen.add(schema_row["id"])
            rows.append(schema_row)
            kept += 1
        # rows_in: the source's rows, each kept or dropped here (schema_error, duplicate_id); source_drops:
        # input records the source itself could not use. check_totals holds the card to rows_in = rows + collect_drops.
        per_source[result.name] = {"rows_in": len(result.rows), "rows": kept, "collect_drops": len(drops) - before,
                                   "source_drops": len(result.drops),
                                   "dropped": len(result.rows) - kept + len(result.drops)}
        log.info("source %s: %d rows, %d dropped", result.name, kept, per_source[result.name]["dropped"])
    ds = rows_dataset(rows)
    return StageResult(ds, drops, {"sources": per_source})


def build(cfg: BuildConfig, config_name: str = "") -> dict:
    """Run every stage; write ``rl/``, ``chains/``, ``card.json``, ``README.md`` and ``drops.jsonl``."""
    validate(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(recordable(cfg), out / "build_config.yaml")
    cache = ReplyCache(out / "teacher_cache.sqlite")
    stages, drops = [], []

    def record(name: str, rows_in, result: StageResult) -> datasets.Dataset:
        save_dataset(result.ds, out / "stages" / f"{len(stages) + 1}_{name}")
        drops.extend(result.drops)
        stages.append(stage_entry(name, rows_in, result.ds, result.drops, result.stats))
        return result.ds

    teachers: dict[tuple, object] = {}  # one per distinct resolved section: a local model is loaded once
    running = teacher_stages(cfg)
    try:
        collected = record("collect", None, collect(cfg))
        ds = collected
        for name, fn in (("caption", caption), ("distill", distill), ("rewrite", rewrite)):
            if name in running:
                resolved = running[name]
                key = dataclasses.astuple(resolved)
                if key not in teachers:
                    teachers[key] = make_teacher(resolved)
                ds = record(name, ds, fn(ds, teachers[key], cache, getattr(cfg, name), batch_size=resolved.batch_size))
        # Without a chain there is nothing to verify: running it would "drop" every row for want of one.
        if cfg.verify.enabled and any(chain.strip() for chain in ds["reasoning"]):
            ds = record("verify", ds, verify(ds, cfg.verify))
        result, sets = curate(collected, ds, cfg.curate, seed=cfg.seed)
        record("curate", collected, result)
    finally:
        cache.close()
    if cfg.pass_rate.enabled:
        from data_pipelines.stages.pass_rate import pass_rate_filter

        sets["rl"]["train"], pr = pass_rate_filter(sets["rl"]["train"], cfg.pass_rate, cfg.seed)
        drops.extend(pr.drops)
        stages.append(stage_entry("pass_rate", pr.ds_in, sets["rl"]["train"], pr.drops, pr.stats))
    save_dataset(datasets.DatasetDict(sets["rl"]), out / "rl")
    save_dataset(datasets.DatasetDict(train=sets["chains"]), out / "chains")
    card = {
        "config": config_name or "defaults",
        # what made the chains: the teacher of each teacher stage that ran; {} is an RL-only build
        "teachers": {name: teacher.kind for name, teacher in running.items()},
        "stages": stages,
        "dropped": len(drops),
        "outputs": {"rl_train": histogram(sets["rl"]["train"]), "rl_test": histogram(sets["rl"]["test"]),
                    "chains": histogram(sets["chains"])},
    }
    problems = check_totals(card)
    if problems:  # a row lost without a drop is a pipeline bug: fail loudly rather than publish a wrong card
        raise RuntimeError("dataset card totals do not add up: " + "; ".join(problems))
    write_card(out, card, drops)
    return card


def recordable(cfg: BuildConfig) -> BuildConfig:
    """``cfg`` as it can be written to build_config.yaml: a dataset given in memory (the ``hf`` source's
    ``dataset`` param) is recorded as a description, not its rows."""
    def source(section):
        params = section.get("params") if isinstance(section, dict) else None
        if not params or params.get("dataset") is None:
            return section
        data = params["dataset"]
        size = f"{len(data)} rows" if hasattr(data, "__len__") else "rows"
        return {**section, "params": {**params, "dataset": f"<in memory: {type(data).__name__}, {size}>"}}

    return dataclasses.replace(cfg, sources=[source(s) for s in cfg.sources])


def save_dataset(ds, path: Path) -> None:
    """``save_to_disk`` whole or not at all, replacing the output of an earlier build: a build killed while
    writing leaves the previous ``path`` (or none), never a dataset that loads with rows missing."""
    with atomic_dir(path, replace=True) as tmp:
        ds.save_to_disk(str(tmp))
