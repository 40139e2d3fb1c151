"""Write a small N-way visual task the way a user would make one: a folder of PNG images and a JSONL file.

    python scripts/make_user_task.py KIND OUT [--n 2000] [--size 84] [--seed 0]

writes OUT/images/KIND_00000.png ... and OUT/annotations.jsonl, one line per image:

    {"id": "00000", "image": "images/KIND_00000.png", "question": "...", "answer": "top-left", "task": "KIND"}

which the `folder` source reads (configs/data/user_task.yaml imports it as an RL-only set). The kinds, each with
answers balanced (every answer equally often, in shuffled order):

- position:  one figure in a quadrant; "In which corner of the picture is the figure?" -> top-left, top-right,
             bottom-left or bottom-right
- shape:     one figure; "Which kind of figure is drawn?" -> circle, square or triangle
- size:      one figure, large (about half the side) or little (about a sixth); "Is the figure big or
             small?" -> big or small
- leftright: a red and a blue figure side by side; "Is the red figure left or right of the blue one?" -> left or
             right

Figures have random kind, colour, size and place beyond what the answer fixes, are filled with saturated colours
on white and drawn without anti-aliasing. The words are deliberately not those of the built-in shapes demo, so a
tiny model must take its vocabulary from this data. Deliberately standalone (PIL only): it stands for a user's own
script, and the pipeline's folder source is what is exercised.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import PIL.Image
import PIL.ImageDraw

COLOURS = [(230, 0, 0), (0, 190, 0), (0, 0, 230), (240, 210, 0), (200, 0, 200), (0, 200, 200)]
RED, BLUE = COLOURS[0], COLOURS[2]
FIGURES = ("circle", "square", "triangle")
TASKS = {
    # kind: (question, answers)
    "position": ("In which corner of the picture is the figure?", ["top-left", "top-right", "bottom-left",
                                                                  "bottom-right"]),
    "shape": ("Which kind of figure is drawn?", list(FIGURES)),
    "size": ("Is the figure big or small?", ["big", "small"]),
    "leftright": ("Is the red figure left or right of the blue one?", ["left", "right"]),
}


def draw(image: PIL.Image.Image, figure: str, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    """Fill `figure` inside `box` = (x1, y1, x2, y2), x2/y2 exclusive."""
    x1, y1, x2, y2 = box
    canvas = PIL.ImageDraw.Draw(image)
    if figure == "square":
        canvas.rectangle((x1, y1, x2 - 1, y2 - 1), fill=colour)
    elif figure == "circle":
        canvas.ellipse((x1, y1, x2 - 1, y2 - 1), fill=colour)
    else:
        canvas.polygon(((x1 + x2 - 1) / 2, y1, x1, y2 - 1, x2 - 1, y2 - 1), fill=colour)


def scene(kind: str, answer: str, size: int, rng: random.Random) -> PIL.Image.Image:
    """An image of `size` x `size` pixels whose right answer to `kind`'s question is `answer`."""
    image = PIL.Image.new("RGB", (size, size), (255, 255, 255))
    half = size // 2
    if kind == "position":
        side = rng.randint(size // 5, size // 3)
        row, col = answer.split("-")
        x0 = 0 if col == "left" else half
        y0 = 0 if row == "top" else half
        # anywhere inside its quadrant, with a 1-pixel margin from the centre lines
        x = x0 + rng.randint(1, half - side - 1)
        y = y0 + rng.randint(1, half - side - 1)
        draw(image, rng.choice(FIGURES), (x, y, x + side, y + side), rng.choice(COLOURS))
    elif kind == "shape":
        side = rng.randint(size // 3, size // 2)
        x, y = rng.randint(0, size - side), rng.randint(0, size - side)
        draw(image, answer, (x, y, x + side, y + side), rng.choice(COLOURS))
    elif kind == "size":
        side = rng.randint(size * 9 // 20, size * 13 // 20) if answer == "big" else rng.randint(size // 8, size // 5)
        x, y = rng.randint(0, size - side), rng.randint(0, size - side)
        draw(image, rng.choice(FIGURES), (x, y, x + side, y + side), rng.choice(COLOURS))
    elif kind == "leftright":
        side = rng.randint(size // 5, size * 2 // 5)
        # the red figure in one half, the blue in the other, each anywhere vertically
        red_x0, blue_x0 = (0, half) if answer == "left" else (half, 0)
        for colour, x0 in ((RED, red_x0), (BLUE, blue_x0)):
            x = x0 + rng.randint(0, half - side)
            y = rng.randint(0, size - side)
            draw(image, rng.choice(FIGURES), (x, y, x + side, y + side), colour)
    else:
        raise ValueError(f"unknown task kind {kind!r}; kinds: {sorted(TASKS)}")
    return image


def make_task(kind: str, out: str | Path, n: int, size: int = 84, seed: int = 0) -> Path:
    """Write `n` images and OUT/annotations.jsonl for `kind`; returns the annotation file's path."""
    if kind not in TASKS:
        raise ValueError(f"unknown task kind {kind!r}; kinds: {sorted(TASKS)}")
    if not 28 <= size <= 448:
        raise ValueError(f"--size must be 28-448 pixels, got {size}")
    question, answers = TASKS[kind]
    rng = random.Random(f"{kind}:{seed}")
    order = [answers[i % len(answers)] for i in range(n)]
    rng.shuffle(order)
    root = Path(out)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, answer in enumerate(order):
        name = f"images/{kind}_{i:05d}.png"
        scene(kind, answer, size, rng).save(root / name)
        lines.append(json.dumps({"id": f"{i:05d}", "image": name, "question": question, "answer": answer,
                                 "task": kind}))
    path = root / "annotations.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=sorted(TASKS), help="which task")
    parser.add_argument("out", help="output folder (images/ and annotations.jsonl)")
    parser.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    parser.add_argument("--size", type=int, default=84, help="image side in pixels (default 84; 56-112 suits the "
                        "tiny model)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args()
    path = make_task(args.kind, args.out, args.n, args.size, args.seed)
    print(f"{path}: {args.n} rows of {args.kind!r}, answers {TASKS[args.kind][1]}")


if __name__ == "__main__":
    main()
