"""The handwritten-digits tasks: answers checked against scikit-learn's labels and pixels, determinism, splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sources_support import assert_schema_rows

from data_pipelines.synthetic.digits import digit_rows, split_indices

SCANS = load_digits()


def test_split_is_a_partition_of_the_scans():
    train, test = set(split_indices("train")), set(split_indices("test"))
    assert not train & test and train | test == set(range(1797))
    assert len(test) == round(1797 * 0.2)  # 359
    rows = digit_rows("sum", 40, seed=0, split="test")
    assert all(d["sample"] in test for row in rows for d in row["meta"]["digits"])


def test_deterministic_per_seed():
    a, b, other = digit_rows("sum", 6, seed=2), digit_rows("sum", 6, seed=2), digit_rows("sum", 6, seed=3)
    assert [(r["answer"], r["meta"]) for r in a] == [(r["answer"], r["meta"]) for r in b]
    assert [r["images"][0].tobytes() for r in a] == [r["images"][0].tobytes() for r in b]
    assert [r["meta"] for r in a] != [r["meta"] for r in other]


def test_sum_answer_is_the_sum_of_the_scan_labels():
    for row in digit_rows("sum", 30, seed=0):
        samples = [d["sample"] for d in row["meta"]["digits"]]
        assert 2 <= len(samples) <= 3
        assert row["answer"] == str(int(sum(SCANS.target[s] for s in samples)))
        assert row["task"] == "number" and row["data_source"] == "digits_sum"


def test_grounding_box_is_the_tight_box_of_the_target_ink():
    for row in digit_rows("grounding", 30, seed=1):
        meta, pixels = row["meta"], np.asarray(row["images"][0].convert("L"))
        labels = [int(SCANS.target[d["sample"]]) for d in meta["digits"]]
        assert labels.count(meta["target"]) == 1
        assert row["problem"].endswith(f"digit {meta['target']} in the image as [x1, y1, x2, y2].")
        target = next(d for d in meta["digits"] if SCANS.target[d["sample"]] == meta["target"])
        x1, y1, x2, y2 = json.loads(row["answer"])
        assert [x1, y1, x2, y2] == target["box"]
        # Ink = non-white pixels inside the digit's cell; the box holds all of it and touches it on each side.
        cx1, cy1, cx2, cy2 = target["cell"]
        ys, xs = np.nonzero(pixels[cy1:cy2, cx1:cx2] < 255)
        assert (xs.min() + cx1, ys.min() + cy1, xs.max() + cx1 + 1, ys.max() + cy1 + 1) == (x1, y1, x2, y2)
        # The same box from the 8x8 scan itself: nonzero grey levels, times the scale of 4.
        rows, cols = np.nonzero(SCANS.images[target["sample"]])
        assert (x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1) == (
            cols.min() * 4,
            rows.min() * 4,
            (cols.max() + 1) * 4,
            (rows.max() + 1) * 4,
        )
        assert row["task"] == "grounding"


def test_cells_do_not_overlap_and_rows_are_schema_v1():
    rows = digit_rows("grounding", 20, seed=4) + digit_rows("sum", 20, seed=4)
    for row in rows:
        cells = [d["cell"] for d in row["meta"]["digits"]]
        for i, a in enumerate(cells):
            for b in cells[i + 1 :]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    assert_schema_rows(rows)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown digits task"):
        digit_rows("product", 1, seed=0)
    with pytest.raises(ValueError, match="split"):
        split_indices("val")
