"""`map` against the reference: pycocotools' COCOeval on the same boxes gives the same AP@[.5:.95] (its
stats[0]), on randomised single images with several classes, overlapping boxes and false positives."""

from __future__ import annotations

import contextlib
import io
import random

import numpy as np
import pytest

from vlrl.rewards.average_precision import mean_average_precision
from vlrl.rewards.boxes import Box

cocoeval = pytest.importorskip("pycocotools.cocoeval")
coco = pytest.importorskip("pycocotools.coco")

LABELS = ("cat", "dog", "car")
SIZE = 400


def _random_case(rng: random.Random) -> tuple[list[Box], list[Box]]:
    truths = []
    for _ in range(rng.randint(1, 6)):
        x, y = rng.uniform(0, 300), rng.uniform(0, 300)
        truths.append(Box((x, y, x + rng.uniform(15, 100), y + rng.uniform(15, 100)), rng.choice(LABELS)))
    preds = []
    for t in truths:  # jittered copies (some near misses, some good), maybe relabelled
        if rng.random() < 0.8:
            jitter = [v + rng.gauss(0, rng.choice((1, 4, 12))) for v in t.xyxy]
            x1, y1 = min(jitter[0], jitter[2] - 1), min(jitter[1], jitter[3] - 1)
            label = t.label if rng.random() < 0.85 else rng.choice(LABELS)
            preds.append(Box((x1, y1, jitter[2], jitter[3]), label))
    for _ in range(rng.randint(0, 3)):  # false positives
        x, y = rng.uniform(0, 300), rng.uniform(0, 300)
        preds.append(Box((x, y, x + rng.uniform(10, 80), y + rng.uniform(10, 80)), rng.choice(LABELS)))
    rng.shuffle(preds)
    scores = rng.sample(range(1, 1000), len(preds))  # distinct: both rank the same way
    return [Box(p.xyxy, p.label, s / 1000) for p, s in zip(preds, scores, strict=True)], truths


def _cocoeval_ap(preds: list[Box], truths: list[Box]) -> float:
    ids = {label: i + 1 for i, label in enumerate(LABELS)}
    xywh = lambda b: [b[0], b[1], b[2] - b[0], b[3] - b[1]]  # noqa: E731
    gt = coco.COCO()
    gt.dataset = {"images": [{"id": 1, "width": SIZE, "height": SIZE}],
                  "categories": [{"id": i, "name": n} for n, i in ids.items()],
                  "annotations": [{"id": k + 1, "image_id": 1, "category_id": ids[t.label], "bbox": xywh(t.xyxy),
                                   "area": (t.xyxy[2] - t.xyxy[0]) * (t.xyxy[3] - t.xyxy[1]), "iscrowd": 0}
                                  for k, t in enumerate(truths)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not preds:
            return 0.0
        dt = gt.loadRes([{"image_id": 1, "category_id": ids[p.label], "bbox": xywh(p.xyxy), "score": p.score}
                         for p in preds])
        ev = cocoeval.COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return max(float(ev.stats[0]), 0.0)  # -1: no class with both truths and detections


@pytest.mark.parametrize("seed", range(40))
def test_map_equals_cocoeval(seed):
    preds, truths = _random_case(random.Random(seed))
    assert mean_average_precision(preds, truths) == pytest.approx(_cocoeval_ap(preds, truths), abs=1e-9)


def test_cases_are_not_trivial():
    values = [_cocoeval_ap(*_random_case(random.Random(seed))) for seed in range(40)]
    assert 0.0 < np.mean(values) < 1.0 and len({round(v, 6) for v in values}) > 10
