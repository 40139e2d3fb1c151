"""Experiment trackers (`trainer.report_to`) through accelerate's tracker integration.

Every tracker gets the same metric names as metrics.jsonl (`reward/…`, `loss/…`, `eval/…`, `perf/…`), the
resolved config flattened to `section.key` as the run's config, and the rollout samples where it can show
them (`log_samples`). Where each one writes, and how a resume (`vlrl train --resume`) continues it:

- tensorboard: RUN_DIR/tensorboard (events after the resumed checkpoint are trimmed, `vlrl.metrics`);
- wandb: the run's files under RUN_DIR/wandb (online or offline as WANDB_MODE says); a resume continues the
  same run id (RUN_DIR/trackers.json). wandb ignores values for steps it already has, so steps between the
  checkpoint and a crash keep their first values there;
- mlflow: MLFLOW_TRACKING_URI when set, else a file store in RUN_DIR/mlflow; a resume continues the run id;
- trackio: its own directory (TRACKIO_DIR, default ~/.cache/huggingface/trackio), project `trainer.project`,
  run `trainer.run_name`; a resume continues the run of that name.
Other trackers accelerate knows (comet_ml, aim, clearml, dvclive, swanlab) get accelerate's defaults.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import secrets
from pathlib import Path

TRACKERS_FILE = "trackers.json"  # tracker run ids, so a resume continues the same tracker runs

# tracker name -> (module it needs, vlrl extra that installs it; None: a core dependency)
EXTRAS = {"tensorboard": ("tensorboard", None), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow"),
          "trackio": ("trackio", "trackio")}
OTHERS = ("comet_ml", "aim", "clearml", "dvclive", "swanlab")  # accelerate's, with no vlrl extra


class TrackerError(ValueError):
    """A tracker in trainer.report_to that is unknown or not installed; the message says what to install."""


def check_report_to(names: list[str]) -> None:
    """Raise TrackerError for unknown or missing trackers, before any slow setup."""
    problems = []
    for name in names:
        if name not in EXTRAS and name not in OTHERS:
            problems.append(f"unknown tracker {name!r}; choose from {', '.join([*EXTRAS, *OTHERS])}")
            continue
        module, extra = EXTRAS.get(name, (name, None))
        if importlib.util.find_spec(module) is None:
            how = f"pip install 'vlrl[{extra}]'" if extra else f"pip install {module}"
            problems.append(f"{name} is not installed: {how}")
    if problems:
        raise TrackerError("trainer.report_to: " + "; ".join(problems))


def make_trackers(cfg, run_dir: Path, resume: bool) -> list:
    """accelerate tracker objects for `trainer.report_to`, not started yet (`Accelerator.init_trackers` starts
    them on the main process). With `resume`, the run ids in RUN_DIR/trackers.json are reused."""
    from accelerate.tracking import (
        LOGGER_TYPE_TO_CLASS,
        MLflowTracker,
        TensorBoardTracker,
        TrackioTracker,
        WandBTracker,
    )

    t = cfg.trainer
    ids = read_ids(run_dir) if resume else {}
    name = t.run_name or Path(t.output_dir).resolve().name
    out = []
    for kind in t.report_to:
        if kind == "tensorboard":
            out.append(TensorBoardTracker("", run_dir / "tensorboard"))  # "" = no sub-folder per project
        elif kind == "wandb":
            ids.setdefault("wandb", secrets.token_hex(4))  # chosen here, so the id is known before it starts
            out.append(WandBTracker(t.project, name=name, id=ids["wandb"], resume="allow", dir=str(run_dir)))
        elif kind == "mlflow":
            if "MLFLOW_TRACKING_URI" not in os.environ:
                _local_mlflow(run_dir / "mlflow")
            out.append(MLflowTracker(t.project, run_id=ids.get("mlflow"), run_name=name))
        elif kind == "trackio":
            # Machine metrics off: every tracker shows the same metric names.
            out.append(TrackioTracker(t.project, name=name, resume="allow", auto_log_cpu=False, auto_log_gpu=False))
        else:
            out.append(LOGGER_TYPE_TO_CLASS[kind](t.project))
    return out


def _local_mlflow(path: Path) -> None:
    """Point mlflow at a file store in the run directory. MLflow 3 prefers a database backend, which needs the
    full `mlflow` package (SQLAlchemy); the file store works with the lighter `mlflow-skinny` client and keeps
    the run beside its other outputs. MLFLOW_ALLOW_FILE_STORE is mlflow's own opt-in for it."""
    import mlflow

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(path.resolve().as_uri())


def start_trackers(accelerator, cfg, run_dir: Path, resume: bool) -> None:
    """Start the trackers with the resolved config as the run's config and record their run ids (main
    process; the others return at once)."""
    if not accelerator.is_main_process or not cfg.trainer.report_to:
        return
    config = flat_config(cfg)
    accelerator.init_trackers(cfg.trainer.project, config=None if resume else config)
    for tracker in accelerator.trackers if resume else []:
        # mlflow refuses to change a logged param: a resume with new overrides records those as tags.
        if tracker.name == "mlflow":
            _mlflow_resumed_config(tracker, config)
        else:
            tracker.store_init_configuration(config)
    ids = read_ids(run_dir)
    for tracker in accelerator.trackers:
        if tracker.name == "wandb":
            ids["wandb"] = tracker.run.id
        elif tracker.name == "mlflow":
            ids["mlflow"] = tracker.active_run.info.run_id
    if ids:
        from vlrl.atomic import write_text_atomic

        write_text_atomic(run_dir / TRACKERS_FILE, json.dumps(ids, indent=1) + "\n")


def _mlflow_resumed_config(tracker, config: dict) -> None:
    """On resume: keys the run lacks become params; values the resume changed become `resumed.<key>` tags."""
    import mlflow

    logged = mlflow.get_run(tracker.active_run.info.run_id).data.params
    new = {k: v for k, v in config.items() if k not in logged}
    if new:
        tracker.store_init_configuration(new)
    changed = {f"resumed.{k}": str(v) for k, v in config.items() if k in logged and logged[k] != str(v)}
    if changed:
        mlflow.set_tags(changed)


def read_ids(run_dir: Path) -> dict:
    path = Path(run_dir) / TRACKERS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def flat_config(cfg) -> dict:
    """{"section.key": value}: numbers, strings, booleans as they are; lists, dicts and None as JSON text
    (what every tracker's config/params accepts)."""
    out = {}
    for section in dataclasses.fields(cfg):
        for key, value in dataclasses.asdict(getattr(cfg, section.name)).items():
            plain = isinstance(value, (bool, int, float, str))
            out[f"{section.name}.{key}"] = value if plain else json.dumps(value)
    return out


def finish_trackers(accelerator) -> None:
    """End every tracker's run (files flushed, runs closed); called once at the end of `fit`."""
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers = []  # accelerate's end_training (multi-process close) must not finish them twice


def log_samples(accelerator, step: int, samples: list) -> None:
    """The step's rollout samples (`vlrl.samples.Sample`) to every tracker that shows images: TensorBoard (an
    image and a text per sample, tag `samples/<source>/<k>`), wandb and trackio (a table `samples` with an image
    column), mlflow (its images and a JSON table artifact `samples/step_NNNNNN.json`). Main process only."""
    loggers = {"tensorboard": _samples_tensorboard, "wandb": _samples_table, "trackio": _samples_table,
               "mlflow": _samples_mlflow}
    for tracker in accelerator.trackers:
        if samples and tracker.name in loggers:
            loggers[tracker.name](tracker, step, samples)


def sample_text(sample) -> str:
    """One sample as Markdown (TensorBoard renders its text plugin as Markdown)."""
    scores = ", ".join(f"{k} {v:.3f}" for k, v in sample.scores.items() if v is not None)
    return (f"**{sample.data_source}** `{sample.row_id}`\n\n**question:** {sample.question}\n\n"
            f"**completion:** `{sample.completion}`\n\n**answer:** {sample.answer}\n\n**scores:** {scores} "
            f"(group mean {sample.group_reward:.3f})")


def _samples_tensorboard(tracker, step: int, samples: list) -> None:
    import numpy as np

    writer = tracker.writer
    counts: dict[str, int] = {}
    for sample in samples:
        k = counts[sample.data_source] = counts.get(sample.data_source, -1) + 1
        tag = f"samples/{sample.data_source}/{k}"
        for i, image in enumerate(sample.images):
            writer.add_image(tag if i == 0 else f"{tag}/image_{i}", np.asarray(image), step, dataformats="HWC")
        writer.add_text(tag, sample_text(sample), step)
    writer.flush()


def _table(samples: list, image_type) -> tuple[list[str], list[list]]:
    """Columns and rows of a samples table; the first image of each sample through `image_type`."""
    components = list(dict.fromkeys(k for s in samples for k in s.scores))
    columns = ["step", "data_source", "image", "question", "completion", "answer", *components, "group_reward"]
    rows = [[s.step, s.data_source, image_type(s.images[0]) if s.images else None, s.question, s.completion,
             s.answer, *[s.scores.get(k) for k in components], s.group_reward] for s in samples]
    return columns, rows


def _samples_table(tracker, step: int, samples: list) -> None:
    module = __import__(tracker.name)  # wandb and trackio share the Table/Image interface
    columns, rows = _table(samples, module.Image)
    tracker.run.log({"samples": module.Table(columns=columns, data=rows)}, step=step)


def _samples_mlflow(tracker, step: int, samples: list) -> None:
    import mlflow

    columns, rows = _table(samples, lambda image: None)
    table = {c: [row[j] for row in rows] for j, c in enumerate(columns) if c != "image"}
    mlflow.log_table(table, artifact_file=f"samples/step_{step:06d}.json")
    for k, sample in enumerate(samples):
        if sample.images:
            mlflow.log_image(sample.images[0], key=f"samples/{sample.data_source}/{k}", step=step)
