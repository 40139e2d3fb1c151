"""Rollout samples: every `trainer.log_samples_every` steps, a few completions per data source with the images
they answered, the question, the answer and every reward component. Written to RUN_DIR/samples/ (one JSONL
line per sample, images as PNG files beside it; `vlrl report` reads them) and to the trackers that can show
them (`vlrl.trackers.log_samples`).

Which samples: per data source, the first `trainer.samples_per_source` prompts of the step (in the step's
prompt order, over all ranks: each rank offers its candidates, the main process keeps the first ones), and
of each prompt its group's first completion. Completions are drawn at random, so the first one is a typical
sample of the policy, not a best or worst case; the group's mean reward is stored beside it for contrast.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vlrl.atomic import atomic_file, remove
from vlrl.metrics import truncate_jsonl

SAMPLES_DIR = "samples"
SAMPLES_FILE = "samples.jsonl"
# Longest side of a stored image in pixels: enough to see what the question is about, while a real run's
# photos (often megapixels) stay a few tens of kB per sample.
THUMBNAIL_SIDE = 384


@dataclass
class Sample:
    step: int  # the step number metrics.jsonl gives this train step
    data_source: str
    row_id: str
    question: str
    completion: str
    answer: str
    scores: dict  # {"total": x, component: value or None where the term did not apply}
    group_reward: float  # mean total of the completion's group of G
    images: list = field(default_factory=list)  # PIL thumbnails in memory; relative paths once written


def pick_samples(step: int, batch, rollouts, scores, per_source: int) -> list[Sample]:
    """Up to `per_source` samples per data source from this rank's prompts (see the module docstring).
    `batch`: the step's PromptBatch on this rank; `rollouts`: its Rollouts [P*G]; `scores`: their Scores."""
    from vlrl.rewards.offline import score_values

    G, taken, out = rollouts.group_size, {}, []
    for p, row in enumerate(batch.rows):
        source = row.data_source or row.task
        if taken.get(source, 0) >= per_source:
            continue
        taken[source] = taken.get(source, 0) + 1
        i = p * G  # the group's first completion
        out.append(Sample(step=step, data_source=source, row_id=row.id, question=row.problem,
                          completion=rollouts.texts[i], answer=str(row.answer), scores=score_values(scores, i),
                          group_reward=scores.total[i:i + G].mean().item(),
                          images=[thumbnail(img) for img in row.images]))
    return out


def first_per_source(parts: list[list[Sample]], per_source: int) -> list[Sample]:
    """The first `per_source` samples of each source over the ranks' candidates, in rank order (= the step's
    prompt order, since each rank holds a contiguous slice of the prompts)."""
    counts: dict[str, int] = {}
    out = []
    for sample in (s for part in parts for s in part):
        if counts.get(sample.data_source, 0) < per_source:
            counts[sample.data_source] = counts.get(sample.data_source, 0) + 1
            out.append(sample)
    return out


def thumbnail(image):
    """A copy of `image` whose longest side is at most THUMBNAIL_SIDE pixels (RGB)."""
    image = image.convert("RGB")
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    return image


def write_samples(run_dir: str | Path, samples: list[Sample]) -> list[dict]:
    """Append `samples` to RUN_DIR/samples/samples.jsonl, their images saved first as
    samples/images/step_NNNNNN/<k>_<i>.png (k: sample, i: image); returns the lines written, image paths
    relative to RUN_DIR. A kill between the two leaves only images without a line, removed on resume."""
    root = Path(run_dir) / SAMPLES_DIR
    lines = []
    for k, sample in enumerate(samples):
        paths = []
        for i, image in enumerate(sample.images):
            folder = root / "images" / f"step_{sample.step:06d}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{k}_{i}.png"
            with atomic_file(path, "wb") as f:
                image.save(f, format="PNG")
            paths.append(str(path.relative_to(run_dir)))
        lines.append({**asdict(sample), "images": paths})
    root.mkdir(parents=True, exist_ok=True)
    with (root / SAMPLES_FILE).open("a") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    return lines


def read_samples(run_dir: str | Path) -> list[dict]:
    """Every line of RUN_DIR/samples/samples.jsonl ([] when the run wrote none); a half-written last line
    (a run killed mid-write) is skipped."""
    path = Path(run_dir) / SAMPLES_DIR / SAMPLES_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def truncate_samples(run_dir: str | Path, step: int) -> None:
    """On resume from `step`: drop the samples of later steps (lines and image folders), which the resumed
    run writes again, so each step's samples appear once."""
    root = Path(run_dir) / SAMPLES_DIR
    truncate_jsonl(root / SAMPLES_FILE, step)
    for folder in (root / "images").glob("step_*"):
        if folder.name[len("step_"):].isdigit() and int(folder.name[len("step_"):]) > step:
            remove(folder)
