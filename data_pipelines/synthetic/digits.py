"""Synthetic tasks on real handwritten digits: add the digits up, or find one digit's box.

The digits are scikit-learn's bundled 8x8 scans (``sklearn.datasets.load_digits``: 1,797 images of
0-9 written by 43 people, grey levels 0-16; no download). Each is upscaled ``scale`` times with nearest-
neighbour sampling (crisp ink, no invented strokes) and pasted as dark ink on a white ``canvas_size``
square, 2 or 3 per scene, in non-overlapping cells.

- ``sum`` (task ``number``, data_source ``digits_sum``): "What is the sum of the digits shown?"; the
  answer is the sum of the scans' labels.
- ``grounding`` (task ``grounding``, data_source ``digits_grounding``): "Give the bounding box of the digit
  7"; the scene holds exactly one 7 and the answer is the tight box of its ink (pixels with grey level
  > 0) as ``[x1, y1, x2, y2]`` in canvas pixels, x2 and y2 exclusive.

Train and test use disjoint scans: a fixed shuffle of the 1,797 indices (independent of ``seed``) gives
the last ``test_fraction`` to test, so no scan — and no writer's exact stroke — is seen in both. Rows are a
function of (task, split, seed, sizes) only. ``meta`` records every digit: label, scan index, cell and
ink box.
"""

from __future__ import annotations

import functools
import json
import random

import numpy as np
import PIL.Image

TASKS = {
    # task: (schema task, data_source)
    "sum": ("number", "digits_sum"),
    "grounding": ("grounding", "digits_grounding"),
}
SUM_PROBLEM = "What is the sum of the digits shown in the image? Answer with a number."
GROUNDING_PROBLEM = "Give the bounding box of the digit {digit} in the image as [x1, y1, x2, y2]."
MAX_GREY = 16  # load_digits grey levels are 0..16
_GAP = 2  # pixels kept free between digit cells, so ink boxes never touch
_PLACEMENT_TRIES = 200


@functools.lru_cache(maxsize=1)
def _scans() -> tuple[np.ndarray, np.ndarray]:
    """(images [1797, 8, 8] grey 0-16, labels [1797]) from scikit-learn's bundled copy."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.int64), data.target.astype(np.int64)


def split_indices(split: str, test_fraction: float = 0.2) -> list[int]:
    """The scan indices a split draws from; train and test never share one."""
    if split not in ("train", "test"):
        raise ValueError(f"digits split must be 'train' or 'test', got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = list(range(len(_scans()[1])))
    random.Random("digits:split").shuffle(order)  # fixed: the split must not move with the seed
    n_test = round(len(order) * test_fraction)
    return sorted(order[len(order) - n_test :] if split == "test" else order[: len(order) - n_test])


def digit_rows(
    task: str,
    n: int,
    seed: int,
    split: str = "train",
    canvas_size: int = 112,
    scale: int = 4,
    test_fraction: float = 0.2,
) -> list[dict]:
    """``n`` schema-v1 rows of ``task`` ("sum" or "grounding"), the same for the same arguments.

    Images are RGB PIL images ``canvas_size`` square; ``meta`` is a dict (see the module docstring).
    """
    if task not in TASKS:
        raise ValueError(f"unknown digits task {task!r}; known: {sorted(TASKS)}")
    cell = 8 * scale
    if 3 * (cell + _GAP) > canvas_size * 2:
        raise ValueError(f"canvas_size {canvas_size} is too small for three {cell}px digits")
    images, labels = _scans()
    pool = split_indices(split, test_fraction)
    rng = random.Random(f"digits:{task}:{split}:{seed}")
    schema_task, data_source = TASKS[task]
    rows = []
    for i in range(n):
        samples, target = _pick(rng, pool, labels, task)
        placed = _place(rng, samples, images, labels, canvas_size, scale)
        image = _render(placed, images, canvas_size, scale)
        if task == "sum":
            problem, answer = SUM_PROBLEM, str(sum(d["label"] for d in placed))
        else:
            box = next(d["box"] for d in placed if d["label"] == target)
            problem, answer = GROUNDING_PROBLEM.format(digit=target), json.dumps(box)
        meta = {"canvas_size": [canvas_size, canvas_size], "scale": scale, "digits": placed}
        if target is not None:
            meta["target"] = target
        rows.append(
            {
                "id": f"digits-{task}-{split}-s{seed}-{i:06d}",
                "images": [image],
                "problem": problem,
                "answer": answer,
                "task": schema_task,
                "data_source": data_source,
                "reward": "",
                "reasoning": "",
                "meta": meta,
            }
        )
    return rows


def _pick(rng: random.Random, pool: list[int], labels: np.ndarray, task: str) -> tuple[list[int], int | None]:
    """2 or 3 scan indices; for grounding also a label that occurs exactly once among them."""
    while True:
        samples = [rng.choice(pool) for _ in range(rng.choice((2, 3)))]
        if task == "sum":
            return samples, None
        found = [int(labels[s]) for s in samples]
        unique = [d for d in found if found.count(d) == 1]
        if unique:
            return samples, rng.choice(unique)


def _place(rng, samples, images, labels, canvas_size: int, scale: int) -> list[dict]:
    """Each digit's cell (top-left chosen at random, cells ``_GAP`` apart) and ink box, in canvas pixels."""
    cell = 8 * scale
    for _ in range(_PLACEMENT_TRIES):
        corners = [(rng.randint(0, canvas_size - cell), rng.randint(0, canvas_size - cell)) for _ in samples]
        if all(_apart(a, b, cell) for k, a in enumerate(corners) for b in corners[k + 1 :]):
            break
    else:
        raise RuntimeError(f"could not place {len(samples)} digits on a {canvas_size}px canvas")
    placed = []
    for sample, (x0, y0) in zip(samples, corners, strict=True):
        rows, cols = np.nonzero(images[sample] > 0)
        box = [
            x0 + int(cols.min()) * scale,
            y0 + int(rows.min()) * scale,
            x0 + (int(cols.max()) + 1) * scale,
            y0 + (int(rows.max()) + 1) * scale,
        ]
        placed.append(
            {
                "label": int(labels[sample]),
                "sample": int(sample),
                "cell": [x0, y0, x0 + cell, y0 + cell],
                "box": box,
            }
        )
    return placed


def _apart(a: tuple[int, int], b: tuple[int, int], cell: int) -> bool:
    return abs(a[0] - b[0]) >= cell + _GAP or abs(a[1] - b[1]) >= cell + _GAP


def _render(placed: list[dict], images: np.ndarray, canvas_size: int, scale: int) -> PIL.Image.Image:
    canvas = np.full((canvas_size, canvas_size), 255, dtype=np.uint8)
    for digit in placed:
        grey = images[digit["sample"]]
        ink = np.kron(grey, np.ones((scale, scale), dtype=np.int64))  # nearest-neighbour upscale
        x0, y0, x1, y1 = digit["cell"]
        canvas[y0:y1, x0:x1] = (255 - ink * 255 // MAX_GREY).astype(np.uint8)
    return PIL.Image.fromarray(canvas, mode="L").convert("RGB")
