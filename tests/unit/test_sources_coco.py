"""The coco source: box conversion, which questions are asked, and every bad annotation dropped by name."""

from __future__ import annotations

import json

import pytest
from sources_support import assert_schema_rows, drops_by_reason, write_image

from data_pipelines.sources.annotations import SourceError, SourceFileNotFound
from data_pipelines.sources.coco import CocoOptions, load_coco, plural

CATEGORIES = [
    {"id": 1, "name": "cat"},
    {"id": 2, "name": "dog"},
    {"id": 3, "name": "person"},
    {"id": 4, "name": "bus"},
]


def _ann(ann_id, image_id, category_id, bbox, **extra):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


@pytest.fixture
def coco(tmp_path):
    images = tmp_path / "images"
    write_image(images / "one.png", (100, 80), box=(10, 20, 40, 60))
    write_image(images / "two.png", (100, 80))
    (images / "broken.png").write_bytes(b"not a png at all")
    data = {
        "images": [
            {"id": 1, "file_name": "one.png", "width": 100, "height": 80},
            {"id": 2, "file_name": "two.png", "width": 100, "height": 80},
            {"id": 3, "file_name": "missing.png", "width": 100, "height": 80},
            {"id": 4, "file_name": "broken.png", "width": 100, "height": 80},
        ],
        "annotations": [
            _ann(11, 1, 1, [10, 20, 30, 40]),  # cat, alone in image 1 -> [10, 20, 40, 60]
            _ann(12, 1, 2, [50, 10, 20, 20]),  # dog -> [50, 10, 70, 30]
            _ann(13, 1, 2, [5, 5, 10.5, 10]),  # second dog -> [5, 5, 15.5, 15]
            _ann(14, 1, 3, [0, 0, 100.4, 80]),  # person overruns by 0.4 px -> clipped to [0, 0, 100, 80]
            _ann(15, 1, 99, [1, 1, 5, 5]),  # unknown category
            _ann(21, 2, 1, [60, 50, 50, 20]),  # cat: x2 = 110 > 100 -> outside; cats left out of image 2
            _ann(22, 2, 3, [0, 0, 50, 50], iscrowd=1),  # crowd -> persons left out of image 2
            _ann(23, 2, 4, [20, 20, 0, 5]),  # bus: zero width -> degenerate; buses left out of image 2
            _ann(24, 2, 2, [0, 0, 10, 10]),  # dog, alone in image 2 -> [0, 0, 10, 10]
            _ann(31, 3, 1, [1, 1, 5, 5]),  # its image file is missing
            _ann(41, 4, 1, [1, 1, 5, 5]),  # its image file is not an image
        ],
        "categories": CATEGORIES,
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path, images


def test_questions_answers_and_drops(coco):
    path, images = coco
    result = load_coco(CocoOptions(annotations=str(path), image_root=str(images)))
    by_id = {row["id"]: row for row in result.rows}
    # Image 1: cat (1 box) and person (1 box) get all three kinds, dog (2 boxes) no grounding -> 8 rows.
    # Image 2: only the dog survives -> 3 rows. Images 3 and 4 -> none.
    assert sorted(by_id) == sorted(
        [
            "coco:1:grounding:1",
            "coco:1:detection:1",
            "coco:1:count:1",
            "coco:1:detection:2",
            "coco:1:count:2",
            "coco:1:grounding:3",
            "coco:1:detection:3",
            "coco:1:count:3",
            "coco:2:grounding:2",
            "coco:2:detection:2",
            "coco:2:count:2",
        ]
    )
    assert json.loads(by_id["coco:1:grounding:1"]["answer"]) == [10, 20, 40, 60]
    assert json.loads(by_id["coco:1:grounding:3"]["answer"]) == [0, 0, 100, 80]
    assert json.loads(by_id["coco:1:detection:2"]["answer"]) == [
        {"bbox_2d": [50, 10, 70, 30], "label": "dog"},
        {"bbox_2d": [5, 5, 15.5, 15], "label": "dog"},
    ]
    assert by_id["coco:1:count:2"]["answer"] == "2" and by_id["coco:2:count:2"]["answer"] == "1"
    assert json.loads(by_id["coco:2:grounding:2"]["answer"]) == [0, 0, 10, 10]
    assert by_id["coco:1:count:3"]["problem"].startswith("How many people")
    assert "dog" in by_id["coco:1:detection:2"]["problem"]
    assert {r["task"] for r in result.rows} == {"grounding", "detection", "count"}
    assert by_id["coco:1:count:1"]["data_source"] == "coco_count"
    assert by_id["coco:1:grounding:1"]["meta"]["annotation_ids"] == [11]
    assert drops_by_reason(result) == {
        "unknown_category": ["coco:ann15"],
        "box_outside_image": ["coco:ann21"],
        "crowd_annotation": ["coco:ann22"],
        "degenerate_box": ["coco:ann23"],
        "missing_image": ["coco:3"],
        "undecodable_image": ["coco:4"],
    }
    outside = next(d for d in result.drops if d.reason == "box_outside_image")
    assert "bbox" in outside.detail and "100x80" in outside.detail
    assert "missing.png" in next(d for d in result.drops if d.reason == "missing_image").detail
    assert_schema_rows(result.rows)


def test_answers_read_back_by_the_rewards(coco):
    pytest.importorskip("torch")
    from vlrl.rewards import RewardInput, get_reward

    path, images = coco
    accuracy = get_reward("accuracy")
    for row in load_coco(CocoOptions(annotations=str(path), image_root=str(images))).rows:
        # The ground truth itself, as a model's answer in original pixels, scores 1.0.
        inp = RewardInput(
            f"<answer>{row['answer']}</answer>", row["answer"], row["task"], image_sizes=((100, 80),)
        )
        assert accuracy(inp) == 1.0, row["id"]


def test_kinds_and_max_per_image_are_deterministic(coco):
    path, images = coco
    counts = load_coco(CocoOptions(annotations=str(path), image_root=str(images), kinds=("count",)))
    assert [r["id"] for r in counts.rows] == [
        "coco:1:count:1",
        "coco:1:count:2",
        "coco:1:count:3",
        "coco:2:count:2",
    ]
    options = CocoOptions(annotations=str(path), image_root=str(images), max_per_image=2, seed=3)
    first, again = load_coco(options), load_coco(options)
    assert [r["id"] for r in first.rows] == [r["id"] for r in again.rows]
    per_image = {}
    for row in first.rows:
        per_image[row["meta"]["image_id"]] = per_image.get(row["meta"]["image_id"], 0) + 1
    assert per_image == {1: 2, 2: 2}
    # The kept questions are among the full set's, and the drops do not change.
    full = {r["id"] for r in load_coco(CocoOptions(annotations=str(path), image_root=str(images))).rows}
    capped = [d for d in first.drops if d.reason == "over_max_per_image"]
    assert {r["id"] for r in first.rows} <= full and len(first.drops) - len(capped) == 6
    # Every question the cap left out is counted: kept + capped = all questions.
    assert len(first.rows) + len(capped) == len(full) and {d.id for d in capped} == full - {r["id"] for r in first.rows}


def test_size_mismatch_and_unusable_inputs(tmp_path, coco):
    path, images = coco
    data = json.loads(path.read_text())
    data["images"][0]["width"] = 120  # the file is 100 wide
    bad = tmp_path / "mismatch.json"
    bad.write_text(json.dumps(data))
    result = load_coco(CocoOptions(annotations=str(bad), image_root=str(images)))
    assert drops_by_reason(result)["image_size_mismatch"] == ["coco:1"]
    with pytest.raises(SourceFileNotFound, match="nope.json"):
        load_coco(CocoOptions(annotations=str(tmp_path / "nope.json"), image_root=str(images)))
    (tmp_path / "text.json").write_text("{not json")
    with pytest.raises(SourceError, match="text.json: not valid JSON"):
        load_coco(CocoOptions(annotations=str(tmp_path / "text.json"), image_root=str(images)))
    (tmp_path / "list.json").write_text(json.dumps({"images": []}))
    with pytest.raises(SourceError, match="no 'annotations' list"):
        load_coco(CocoOptions(annotations=str(tmp_path / "list.json"), image_root=str(images)))
    with pytest.raises(SourceError, match="unknown question kinds"):
        load_coco(CocoOptions(annotations=str(path), image_root=str(images), kinds=("caption",)))


def test_plural():
    assert [plural(c) for c in ("cat", "bus", "person", "skis", "traffic light", "toothbrush", "knife")] == [
        "cats",
        "buses",
        "people",
        "skis",
        "traffic lights",
        "toothbrushes",
        "knives",
    ]
