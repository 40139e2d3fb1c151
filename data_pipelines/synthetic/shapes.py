"""Tiny synthetic visual tasks for the CPU demo: name a shape's colour, count shapes.

The demo trains a tiny Qwen2.5-VL from random init with GRPO on a laptop, so a scene is deliberately easy
to see for its vision tower: a 56x56 image is 2x2 cells of 28x28 pixels (one merged vision token each),
the background is plain and the shapes are filled with saturated colours, drawn without anti-aliasing so
every shape pixel has exactly its palette colour.

- ``colour`` (data_source ``shapes_colour``): one square, circle or triangle of 16-24 px anywhere in the
  image; the answer is its colour word.
- ``count`` (data_source ``shapes_count``): 1-4 shapes, each inside its own cell of the 2x2 grid with a
  small jitter; the answer is the count as a digit.

Answers are balanced within each generated block of rows (each colour / count equally often). ``meta``
holds the scene as JSON: image size, background and, per shape, kind, colour, rgb, box ``[x1, y1, x2,
y2]`` in pixels (x2, y2 exclusive) and, for ``count``, its grid cell ``[row, col]``.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import PIL.Image
import PIL.ImageDraw

from data_pipelines.records import image_hash  # noqa: F401 (re-exported: tests and callers use it here)
from vlrl.atomic import atomic_dir, refuse_non_empty

log = logging.getLogger(__name__)

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 0, 0),
    "green": (0, 190, 0),
    "blue": (0, 0, 230),
    "yellow": (240, 210, 0),
}
KINDS = ("square", "circle", "triangle")
WHITE = (255, 255, 255)
MAX_COUNT = 4  # one shape per cell of the 2x2 grid

TASKS = {
    # task: (data_source, problem, answers)
    "colour": ("shapes_colour", "what colour is the shape ?", list(PALETTE)),
    "count": ("shapes_count", "how many shapes are there ?", [str(n) for n in range(1, MAX_COUNT + 1)]),
}

# Every word of every problem and answer, in first-seen order; the tiny word-level tokenizer's vocabulary.
WORDS: list[str] = list(
    dict.fromkeys(
        w for _, problem, answers in TASKS.values() for text in (problem, *answers) for w in text.split()
    )
)

# Retries per test row when its image equals a train image, before giving up (never reached in practice).
_MAX_REDRAWS = 1000


def shape_rows(
    task: str,
    n: int,
    seed: int,
    image_size: int = 56,
    split: str = "train",
    background: tuple[int, int, int] = WHITE,
) -> list[dict]:
    """``n`` schema-v1 rows of ``task`` ("colour" or "count"), the same for the same arguments.

    Rows are plain dicts ready for ``datasets.Dataset.from_list(rows, features=SCHEMA_FEATURES)``: images
    are RGB PIL images, ``reward`` is "" (no per-row override), ``meta`` is the scene as JSON text. The
    random stream depends on (task, split, seed), and ids carry split and seed, so splits never share ids.
    """
    rows, _, _ = _generate(task, n, seed, image_size, split, background, avoid=frozenset())
    return rows


def build_shapes_dataset(
    out_dir: str | Path,
    train_rows_per_task: int = 4000,
    eval_rows_per_task: int = 128,
    seed: int = 0,
    image_size: int = 56,
    tasks: tuple[str, ...] = ("colour", "count"),
    background: tuple[int, int, int] = WHITE,
):
    """Generate the shapes tasks and ``save_to_disk(out_dir)`` a DatasetDict with "train" and "test".

    Tasks are shuffled together in both splits. No test image is pixel-identical to a train image: a test
    scene that repeats a train image is redrawn (same answer, so balance holds) and the redraws are counted
    in the log and in ``<out_dir>/build_info.json``. Returns the DatasetDict.
    """
    import datasets
    from tqdm.auto import tqdm

    from vlrl.data.schema import SCHEMA_FEATURES

    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown shapes tasks {unknown}; known: {sorted(TASKS)}")
    refuse_non_empty(out_dir)  # before the images are drawn, not after
    total = len(tasks) * (train_rows_per_task + eval_rows_per_task)
    train, test, train_hashes, redrawn = [], [], set(), 0
    with tqdm(total=total, desc="shapes dataset", unit="row") as bar:
        for task in tasks:
            rows, hashes, _ = _generate(
                task, train_rows_per_task, seed, image_size, "train", background, bar=bar
            )
            train += rows
            train_hashes |= hashes
        for task in tasks:
            rows, _, skipped = _generate(
                task, eval_rows_per_task, seed, image_size, "test", background, avoid=train_hashes, bar=bar
            )
            test += rows
            redrawn += skipped
    random.Random(f"shuffle:train:{seed}").shuffle(train)
    random.Random(f"shuffle:test:{seed}").shuffle(test)

    dd = datasets.DatasetDict(
        train=datasets.Dataset.from_list(train, features=SCHEMA_FEATURES),
        test=datasets.Dataset.from_list(test, features=SCHEMA_FEATURES),
    )
    info = {
        "builder": "data_pipelines.synthetic.shapes",
        "tasks": list(tasks),
        "seed": seed,
        "image_size": image_size,
        "rows": {"train": len(train), "test": len(test)},
        "test_redrawn_as_train_duplicates": redrawn,
    }
    with atomic_dir(out_dir) as tmp:  # whole or not at all: the trainer takes a directory it finds as built
        dd.save_to_disk(str(tmp))
        (tmp / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    log.info(
        "shapes dataset: %d train / %d test rows in %s; %d test scenes redrawn (duplicated a train image)",
        len(train),
        len(test),
        out_dir,
        redrawn,
    )
    return dd


def _generate(task, n, seed, image_size, split, background, avoid=frozenset(), bar=None):
    """Rows, the set of their image hashes, and how many scenes were redrawn to stay out of ``avoid``."""
    if task not in TASKS:
        raise ValueError(f"unknown shapes task {task!r}; known: {sorted(TASKS)}")
    if tuple(background) in PALETTE.values():
        raise ValueError(f"background {background} is a palette colour")
    data_source, problem, answers = TASKS[task]
    # A str seed is hashed with sha512, not hash(): the stream is the same in every process and run.
    rng = random.Random(f"shapes:{task}:{split}:{seed}")
    rows, hashes, redrawn = [], set(), 0
    for i, answer in enumerate(_balanced(rng, answers, n)):
        for _ in range(_MAX_REDRAWS):
            shapes = (
                _colour_scene(rng, answer, image_size)
                if task == "colour"
                else _count_scene(rng, int(answer), image_size)
            )
            image = _render(shapes, image_size, background)
            digest = image_hash(image)
            if digest not in avoid:
                break
            redrawn += 1
        else:
            raise RuntimeError(
                f"{task}: could not draw a scene unlike the avoided images in {_MAX_REDRAWS} tries"
            )
        hashes.add(digest)
        meta = {"image_size": [image_size, image_size], "background": list(background), "shapes": shapes}
        rows.append(
            {
                "id": f"{task}-{split}-s{seed}-{i:06d}",
                "images": [image],
                "problem": problem,
                "answer": answer,
                "task": task,
                "data_source": data_source,
                "reward": "",
                "reasoning": "",
                "meta": json.dumps(meta, separators=(",", ":")),
            }
        )
        if bar is not None:
            bar.update(1)
    return rows, hashes, redrawn


def _balanced(rng: random.Random, values: list[str], n: int) -> Iterator[str]:
    """``n`` values, each equally often within every block of len(values) rows, in random order."""
    for start in range(0, n, len(values)):
        block = list(values)
        rng.shuffle(block)
        yield from block[: n - start]


def _shape(rng: random.Random, kind: str | None, colour: str, x1: int, y1: int, size: int) -> dict:
    return {
        "kind": kind or rng.choice(KINDS),
        "colour": colour,
        "rgb": list(PALETTE[colour]),
        "box": [x1, y1, x1 + size, y1 + size],
    }


def _colour_scene(rng: random.Random, colour: str, image_size: int) -> list[dict]:
    size = rng.randint(round(image_size * 16 / 56), round(image_size * 24 / 56))
    x1, y1 = rng.randint(0, image_size - size), rng.randint(0, image_size - size)
    return [_shape(rng, None, colour, x1, y1, size)]


def _count_scene(rng: random.Random, count: int, image_size: int) -> list[dict]:
    cell = image_size // 2
    margin = max(1, round(image_size * 2 / 56))  # keeps shapes in neighbouring cells from touching
    shapes = []
    for index in sorted(rng.sample(range(MAX_COUNT), count)):
        row, col = divmod(index, 2)
        size = rng.randint(round(image_size * 16 / 56), cell - 2 * margin - round(image_size * 4 / 56))
        x1 = col * cell + rng.randint(margin, cell - margin - size)
        y1 = row * cell + rng.randint(margin, cell - margin - size)
        shape = _shape(rng, None, rng.choice(list(PALETTE)), x1, y1, size)
        shape["cell"] = [row, col]
        shapes.append(shape)
    return shapes


def _render(shapes: list[dict], image_size: int, background: tuple[int, int, int]) -> PIL.Image.Image:
    image = PIL.Image.new("RGB", (image_size, image_size), tuple(background))
    draw = PIL.ImageDraw.Draw(image)
    for shape in shapes:
        x1, y1, x2, y2 = shape["box"]
        fill = tuple(shape["rgb"])
        if shape["kind"] == "square":
            draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=fill)
        elif shape["kind"] == "circle":
            draw.ellipse((x1, y1, x2 - 1, y2 - 1), fill=fill)
        else:  # triangle pointing up; its box centre is inside it
            draw.polygon(((x1 + x2 - 1) / 2, y1, x1, y2 - 1, x2 - 1, y2 - 1), fill=fill)
    return image
