"""How fast can the tiny model learn to read an image? A supervised probe of the tiny architecture.

Trains a freshly built tiny Qwen2.5-VL with cross-entropy on the answer token (the word after ``<answer>``) on
endless generated scenes, and reports the first evaluation step at which held-out accuracy reaches 0.9, per
task. Not RL: it measures whether the *architecture* can see what a task asks about (colour, count, position,
shape kind, size, left/right), which bounds what RL from random init can learn in a few hundred steps.

    python scripts/probe_tiny.py --tasks position --size 84
    python scripts/probe_tiny.py --tasks position --size 84 --rope-theta 1e6   # Qwen's theta: stays at chance

Prints one JSON line: the settings, the first step each task reached 0.9 (null: never), the last accuracies.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import PIL.Image
import PIL.ImageDraw
import torch

from vlrl.data.prompts import resize_image
from vlrl.models import tiny
from vlrl.models.families import FAMILIES

PALETTE = {"red": (230, 0, 0), "green": (0, 190, 0), "blue": (0, 0, 230), "yellow": (240, 210, 0)}
KINDS = ["square", "circle", "triangle"]
QUESTIONS = {
    "colour": "what colour is the shape ?", "count": "how many shapes are there ?",
    "position": "where is the shape ?", "kind": "which shape is it ?", "size": "is the shape big or small ?",
    "leftright": "is the red shape left or right of the blue shape ?",
}
ANSWERS = {
    "colour": list(PALETTE), "count": ["1", "2", "3", "4"], "position": ["upleft", "upright", "downleft", "downright"],
    "kind": KINDS, "size": ["big", "small"], "leftright": ["left", "right"],
}


def draw(image: PIL.Image.Image, kind: str, rgb, x: int, y: int, side: int) -> None:
    d = PIL.ImageDraw.Draw(image)
    if kind == "square":
        d.rectangle((x, y, x + side - 1, y + side - 1), fill=rgb)
    elif kind == "circle":
        d.ellipse((x, y, x + side - 1, y + side - 1), fill=rgb)
    else:
        d.polygon(((2 * x + side - 1) / 2, y, x, y + side - 1, x + side - 1, y + side - 1), fill=rgb)


def scene(task: str, rng: random.Random, size: int) -> tuple[PIL.Image.Image, str]:
    """One image of side ``size`` and its answer word for ``task``."""
    image = PIL.Image.new("RGB", (size, size), (255, 255, 255))
    u, cell = size / 56, size // 2
    colour = PALETTE[rng.choice(list(PALETTE))]
    answer = rng.choice(ANSWERS[task])
    if task == "colour":
        side = rng.randint(round(16 * u), round(24 * u))
        draw(image, rng.choice(KINDS), PALETTE[answer], rng.randint(0, size - side), rng.randint(0, size - side), side)
    elif task == "count":
        for index in rng.sample(range(4), int(answer)):
            row, col = divmod(index, 2)
            side = rng.randint(round(16 * u), cell - round(8 * u))
            draw(image, rng.choice(KINDS), PALETTE[rng.choice(list(PALETTE))],
                 col * cell + rng.randint(1, cell - side - 1), row * cell + rng.randint(1, cell - side - 1), side)
    elif task == "position":
        side = rng.randint(round(10 * u), round(20 * u))
        x = (cell if "right" in answer else 0) + rng.randint(0, cell - side)
        y = (cell if "down" in answer else 0) + rng.randint(0, cell - side)
        draw(image, rng.choice(KINDS), colour, x, y, side)
    elif task == "kind":
        side = rng.randint(round(20 * u), round(36 * u))
        draw(image, answer, colour, rng.randint(0, size - side), rng.randint(0, size - side), side)
    elif task == "size":
        side = rng.randint(round(30 * u), round(44 * u)) if answer == "big" else rng.randint(round(8 * u), round(16 * u))
        draw(image, rng.choice(KINDS), colour, rng.randint(0, size - side), rng.randint(0, size - side), side)
    else:  # leftright: is the red shape left or right of the blue one
        side = rng.randint(round(10 * u), round(16 * u))
        xs = sorted(rng.sample(range(0, size - side, max(1, side // 2)), 2))
        first, second = ((230, 0, 0), (0, 0, 230)) if answer == "left" else ((0, 0, 230), (230, 0, 0))
        draw(image, rng.choice(KINDS), first, xs[0], rng.randint(0, size - side), side)
        draw(image, rng.choice(KINDS), second, xs[1], rng.randint(0, size - side), side)
    return image, answer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="colour,count,position,kind,size,leftright", help="comma-separated tasks")
    ap.add_argument("--size", type=int, default=56, help="image side in pixels (default 56)")
    ap.add_argument("--min-pixels", type=int, default=56 * 56, help="processor min_pixels (default 56*56)")
    ap.add_argument("--max-pixels", type=int, default=112 * 112, help="processor max_pixels (default 112*112)")
    ap.add_argument("--rope-theta", type=float, default=tiny.TINY_ROPE_THETA, help="text rope theta")
    ap.add_argument("--steps", type=int, default=150, help="training steps (default 150)")
    ap.add_argument("--batch", type=int, default=32, help="scenes per step (default 32)")
    ap.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    words = [QUESTIONS[t] for t in tasks] + [a for t in tasks for a in ANSWERS[t]]
    tok = tiny.build_tiny_tokenizer(words)
    family = FAMILIES["qwen2_5_vl"]
    config = family.config(tok, dict(tiny.TINY_TEXT, vocab_size=len(tok), rope_theta=args.rope_theta),
                           tiny.TINY_VISION["qwen2_5_vl"])
    config.initializer_range = tiny.TINY_INIT_STD
    torch.manual_seed(args.seed)
    model = family.model(config)
    processor = family.processor(tok, args.min_pixels, args.max_pixels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)

    def batch(rng: random.Random, n: int, task: str | None = None):
        texts, images, labels = [], [], []
        for _ in range(n):
            t = task or rng.choice(tasks)
            image, answer = scene(t, rng, args.size)
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTIONS[t]}]}]
            texts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                         + "<answer>")
            images.append(resize_image(image, args.min_pixels, args.max_pixels))
            labels.append(tok.convert_tokens_to_ids(answer))
        enc = processor(text=texts, images=images, return_tensors="pt", padding=True, padding_side="left")
        return enc, torch.tensor(labels)

    held_out = {t: batch(random.Random(f"held-out:{t}"), 96, t) for t in tasks}
    rng = random.Random(args.seed)
    first: dict[str, int | None] = dict.fromkeys(tasks)
    last: dict[str, float] = {}
    start = time.perf_counter()
    for step in range(args.steps + 1):
        if step % 10 == 0:
            model.eval()
            with torch.no_grad():
                for t, (enc, labels) in held_out.items():
                    last[t] = (model(**enc).logits[:, -1].argmax(-1) == labels).float().mean().item()
                    if last[t] >= 0.9 and first[t] is None:
                        first[t] = step
            model.train()
            if all(v is not None for v in first.values()) or step == args.steps:
                break
        enc, labels = batch(rng, args.batch)
        loss = torch.nn.functional.cross_entropy(model(**enc).logits[:, -1], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(json.dumps({"tasks": tasks, "size": args.size, "min_pixels": args.min_pixels, "rope_theta": args.rope_theta,
                      "seed": args.seed, "first_step_at_0.9": first, "last_step": step,
                      "last_accuracy": {t: round(v, 3) for t, v in last.items()},
                      "seconds_per_step": round((time.perf_counter() - start) / max(1, step), 3)}))


if __name__ == "__main__":
    main()
