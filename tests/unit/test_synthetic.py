"""The synthetic shapes tasks: answers read from the pixels, determinism, splits, schema-v1 on disk."""

from __future__ import annotations

import json
from collections import Counter

import datasets
import pytest

from data_pipelines.synthetic.shapes import (
    PALETTE,
    WHITE,
    WORDS,
    _generate,
    build_shapes_dataset,
    image_hash,
    shape_rows,
)
from vlrl.data.schema import SCHEMA_FEATURES, check_unique_ids, load_rows, validate_row


def _centre(box):
    x1, y1, x2, y2 = box
    return (x1 + x2) // 2, (y1 + y2) // 2


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes") / "data"
    build_shapes_dataset(out, train_rows_per_task=200, eval_rows_per_task=40, seed=1)
    return out


def test_deterministic_per_seed():
    for task in ("colour", "count"):
        a, b = shape_rows(task, 12, seed=5), shape_rows(task, 12, seed=5)
        assert [(r["id"], r["answer"], r["meta"]) for r in a] == [
            (r["id"], r["answer"], r["meta"]) for r in b
        ]
        assert [image_hash(r["images"][0]) for r in a] == [image_hash(r["images"][0]) for r in b]
        other = shape_rows(task, 12, seed=6)
        assert [r["meta"] for r in other] != [r["meta"] for r in a]
        assert {r["id"] for r in other}.isdisjoint(r["id"] for r in a)


def test_colour_answer_is_the_pixel_colour_at_the_shape_centre():
    rows = shape_rows("colour", 200, seed=0)
    assert Counter(r["answer"] for r in rows) == {c: 50 for c in PALETTE}
    for row in rows:
        image = row["images"][0]
        assert image.size == (56, 56) and image.mode == "RGB"
        (shape,) = json.loads(row["meta"])["shapes"]
        x1, y1, x2, y2 = shape["box"]
        assert 0 <= x1 and 0 <= y1 and x2 <= 56 and y2 <= 56 and 16 <= x2 - x1 <= 24
        assert shape["colour"] == row["answer"]
        assert image.getpixel(_centre(shape["box"])) == PALETTE[row["answer"]]
        # no anti-aliasing: the only colours are the background and the answer's
        assert {rgb for _, rgb in image.getcolors()} == {WHITE, PALETTE[row["answer"]]}
    assert {json.loads(r["meta"])["shapes"][0]["kind"] for r in rows} == {"square", "circle", "triangle"}


def test_count_answer_matches_scene_and_pixels():
    rows = shape_rows("count", 200, seed=0)
    assert Counter(r["answer"] for r in rows) == {"1": 50, "2": 50, "3": 50, "4": 50}
    for row in rows:
        image = row["images"][0]
        shapes = json.loads(row["meta"])["shapes"]
        assert row["answer"] == str(len(shapes))
        cells = [tuple(s["cell"]) for s in shapes]
        assert len(set(cells)) == len(cells)
        for shape, (r, c) in zip(shapes, cells, strict=True):
            x1, y1, x2, y2 = shape["box"]
            assert c * 28 <= x1 < x2 <= (c + 1) * 28 and r * 28 <= y1 < y2 <= (r + 1) * 28
            assert image.getpixel(_centre(shape["box"])) == PALETTE[shape["colour"]]
        # a cell holds drawn pixels exactly when the scene puts a shape in it
        for r in range(2):
            for c in range(2):
                cell = image.crop((c * 28, r * 28, (c + 1) * 28, (r + 1) * 28))
                drawn = any(rgb != WHITE for _, rgb in cell.getcolors())
                assert drawn == ((r, c) in cells)


def test_words_cover_every_problem_and_answer():
    assert len(WORDS) == len(set(WORDS)) and all(w == w.lower() for w in WORDS)
    for task in ("colour", "count"):
        for row in shape_rows(task, 8, seed=0):
            assert set(row["problem"].split()) <= set(WORDS) and row["answer"] in WORDS
    assert set(PALETTE) | {"1", "2", "3", "4", "?"} <= set(WORDS)


def test_redraws_scenes_that_repeat_avoided_images():
    # the same stream with its own images to avoid: at least its first scene repeats and must be redrawn
    _, hashes, redrawn = _generate("colour", 40, 0, 56, "train", WHITE)
    assert redrawn == 0
    rows, new_hashes, redrawn = _generate("colour", 40, 0, 56, "train", WHITE, avoid=hashes)
    assert redrawn >= 1 and new_hashes.isdisjoint(hashes) and len(new_hashes) == len(rows) == 40
    assert Counter(r["answer"] for r in rows) == {c: 10 for c in PALETTE}  # redraws keep the balance


def test_built_dataset_splits_are_disjoint_and_shuffled(built):
    dd = datasets.load_from_disk(str(built))
    assert set(dd) == {"train", "test"} and (dd["train"].num_rows, dd["test"].num_rows) == (400, 80)
    assert dd["train"].features == SCHEMA_FEATURES
    assert set(dd["train"]["id"]).isdisjoint(dd["test"]["id"])
    train_images = {image_hash(r["images"][0]) for r in dd["train"]}
    assert train_images.isdisjoint(image_hash(r["images"][0]) for r in dd["test"])
    tasks = dd["train"]["task"][:40]
    assert set(tasks) == {"colour", "count"} and tasks != sorted(tasks)
    info = json.loads((built / "build_info.json").read_text())
    assert info["rows"] == {"train": 400, "test": 80} and info["test_redrawn_as_train_duplicates"] >= 0


def test_built_dataset_validates_row_by_row(built):
    for split in ("train", "test"):
        ds = load_rows(str(built), split)
        check_unique_ids(ds)
        for index, raw in enumerate(ds):
            row = validate_row(raw, index)
            assert row.data_source == f"shapes_{row.task}" and row.reward is None and row.reasoning is None
            assert len(row.images) == 1 and len(row.meta["shapes"]) == (
                1 if row.task == "colour" else int(row.answer)
            )


def test_unknown_task_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown shapes task"):
        shape_rows("size", 2, seed=0)
    with pytest.raises(ValueError, match="unknown shapes tasks"):
        build_shapes_dataset(tmp_path, 2, 2, tasks=("colour", "size"))
