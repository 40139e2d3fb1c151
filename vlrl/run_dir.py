"""What a run directory holds, and when `vlrl train` may start in one.

A run's outputs are its metrics, TensorBoard events, saved completions, checkpoints and the `final` link.
The tiny model and the synthetic dataset a default run builds (`tiny_model/`, `data/`) are caches, not a run:
they are reused by the next run and never cleared. Starting a fresh run where outputs exist would mix two
runs (metrics.jsonl lines, a second TensorBoard history), so it is refused unless the user resumes the run or
asks to overwrite it."""

from __future__ import annotations

from pathlib import Path

from vlrl.atomic import remove

# The run's own outputs, removed by an overwrite. config.yaml is rewritten by every start, so it is not one.
RUN_OUTPUTS = ("metrics.jsonl", "tensorboard", "completions.jsonl", "checkpoints", "final", "samples",
               "trackers.json", "wandb", "mlflow", "report.html")


class RunDirError(ValueError):
    """A run directory that cannot be used as asked; the message says what to do instead."""


def run_outputs(run_dir: str | Path) -> list[str]:
    """The outputs of an earlier run found in `run_dir`, described for a message ([] if none)."""
    run_dir = Path(run_dir)
    found = []
    for name in RUN_OUTPUTS:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            if any(path.iterdir()):
                found.append(f"{name}/")
        elif path.is_symlink() or (path.is_file() and path.stat().st_size > 0):
            found.append(name)
    return found


def check_run_dir(run_dir: str | Path, resume: bool, overwrite: bool) -> None:
    """Raise RunDirError unless a run may start in `run_dir` as asked: fresh (no earlier outputs), resumed
    (`resume`), or over an earlier run (`overwrite`)."""
    if resume and overwrite:
        raise RunDirError("--resume continues a run and --overwrite deletes it: give one of them")
    if resume or overwrite:
        return
    found = run_outputs(run_dir)
    if found:
        raise RunDirError(
            f"{run_dir} already holds a run ({', '.join(found)}). Either\n"
            f"  - continue it from its newest checkpoint:  vlrl train --resume {run_dir}\n"
            f"  - keep it, start a new run elsewhere:      vlrl train ... trainer.output_dir=NEW_DIR\n"
            f"  - delete it and start over:                vlrl train ... --overwrite\n"
            f"    (removes {', '.join(found)}; keeps a built tiny_model/ and data/)")


def clear_run(run_dir: str | Path) -> list[str]:
    """Remove an earlier run's outputs from `run_dir` (caches and unknown files stay); returns what went."""
    found = run_outputs(run_dir)
    for name in RUN_OUTPUTS:
        remove(Path(run_dir) / name)
    return found
