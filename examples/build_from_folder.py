"""Build an RL set from a folder of images and an annotation file, then look at it.

    python examples/build_from_folder.py                      # writes a small demo folder first
    python examples/build_from_folder.py --annotations /data/counts/qa.jsonl --out runs/my_set

The annotation file (JSONL, JSON or CSV) has one record per question; "columns" maps the schema's fields to
its columns. With no teacher configured the build is RL-only: collect, validate, dedupe, split. The result
trains with `vlrl train data.path=OUT/rl` or `vlrl.Trainer(cfg)` with data.path set.
"""

import argparse
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

import vlrl


def demo_folder(root: Path, n: int = 24) -> Path:
    """n images of 1-4 dots and qa.jsonl asking how many there are."""
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with (root / "qa.jsonl").open("w") as f:
        for i in range(n):
            count = rng.randint(1, 4)
            image = Image.new("RGB", (64, 64), "white")
            draw = ImageDraw.Draw(image)
            for k in range(count):  # one dot per column band, at a random height
                x, y = 2 + 15 * k + rng.randint(0, 4), rng.randint(2, 52)
                draw.ellipse((x, y, x + 10, y + 10), fill="black")
            image.save(root / f"dots_{i}.png")
            f.write(json.dumps({"file": f"dots_{i}.png", "question": "How many dots are there?", "n": count}) + "\n")
    return root / "qa.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", help="annotation file (default: a demo folder written under --out)")
    parser.add_argument("--out", default="runs/folder_set")
    args = parser.parse_args()
    annotations = args.annotations or demo_folder(Path(args.out) / "demo_images")

    card = vlrl.build_dataset(output_dir=args.out, sources=[{
        "kind": "folder", "name": "dots",
        "params": {"annotations": str(annotations), "task": "count",
                   "columns": {"image": "file", "problem": "question", "answer": "n"}},
    }])
    for stage in card["stages"]:
        print(f"{stage['stage']:>8}: {stage['rows_in']} in -> {stage['rows_out']} out")
    outputs = card["outputs"]
    print(f"RL set: {args.out}/rl ({outputs['rl_train']['rows']} train, {outputs['rl_test']['rows']} test), "
          f"{card['dropped']} rows dropped (listed in {args.out}/drops.jsonl)")


if __name__ == "__main__":
    main()
