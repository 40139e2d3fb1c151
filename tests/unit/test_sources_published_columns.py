"""Published layouts imported through the column-mapped sources, unchanged: VLM-R1's REC JSONL (a
``conversations`` list, boxes in the gpt reply) through ``folder``, EasyR1's geometry3k parquet through ``hf``;
nested column paths and every ``box_format``, boxes checked to 0.01 px."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sources_support import assert_schema_rows, drops_by_reason, png_bytes, write_image

from data_pipelines.sources.annotations import SourceError
from data_pipelines.sources.answer_boxes import to_xyxy
from data_pipelines.sources.box_cells import box_items
from data_pipelines.sources.column_paths import MISSING, lookup
from data_pipelines.sources.registry import load_source

REC_PROMPT = "<image>Please provide the bounding box coordinate of the region this sentence describes: {}."


def _rec(i, image, expression, reply):
    # VLM-R1 grpo_jsonl layout: id, image (relative to the image folder), a human turn and a gpt turn.
    return {"id": i, "image": image, "conversations": [
        {"from": "human", "value": REC_PROMPT.format(expression)}, {"from": "gpt", "value": reply}]}


@pytest.fixture
def vlm_r1(tmp_path):
    coco = tmp_path / "coco" / "train2014"
    write_image(coco / "COCO_train2014_000000000009.jpg", (640, 480))
    lines = [
        _rec(1, "COCO_train2014_000000000009.jpg", "the left cat", "[10.5, 20, 300.25, 470]"),
        _rec(2, "COCO_train2014_000000000009.jpg", "the right cat", "<answer>[320, 0, 640, 480]</answer>"),
        _rec(3, "COCO_train2014_000000000009.jpg", "nothing", "there is no such object"),  # no box: a drop
        _rec(4, "COCO_train2014_000000000009.jpg", "too far", "[600, 10, 700, 50]"),  # leaves the image
        _rec(5, "COCO_train2014_000000000009.jpg", "two", "[1, 1, 5, 5] and [10, 10, 20, 20]"),  # not one box
        {"id": 6, "image": "COCO_train2014_000000000009.jpg", "conversations": [{"from": "human", "value": "hi"}]},
    ]
    path = tmp_path / "refcoco_train.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path, coco


def test_vlm_r1_rec_jsonl_through_folder(vlm_r1):
    path, coco = vlm_r1
    result = load_source({"kind": "folder", "name": "vlmr1_refcoco", "params": {
        "annotations": str(path), "image_root": str(coco), "task": "grounding",
        "columns": {"id": "id", "image": "image", "problem": "conversations[0].value",
                    "answer": "conversations[1].value"}}})
    rows = {row["id"]: row for row in result.rows}
    assert list(rows) == ["vlmr1_refcoco:1", "vlmr1_refcoco:2"]
    assert rows["vlmr1_refcoco:1"]["problem"] == REC_PROMPT.format("the left cat")
    assert json.loads(rows["vlmr1_refcoco:1"]["answer"]) == pytest.approx([10.5, 20, 300.25, 470], abs=0.01)
    assert json.loads(rows["vlmr1_refcoco:2"]["answer"]) == pytest.approx([320, 0, 640, 480], abs=0.01)
    assert drops_by_reason(result) == {"missing_box": ["vlmr1_refcoco:3"], "box_outside_image": ["vlmr1_refcoco:4"],
                                       "not_one_box": ["vlmr1_refcoco:5"], "missing_answer": ["vlmr1_refcoco:6"]}
    assert all("record" in d.detail for d in result.drops)  # every drop names its record
    assert len(result.rows) + len(result.drops) == 6  # every line is a row or a drop
    assert_schema_rows(result.rows)


@pytest.mark.parametrize("box_format,raw,expected", [
    ("xyxy", [8, 4, 40, 36], [8, 4, 40, 36]),
    ("xywh", [8, 4, 32, 32], [8, 4, 40, 36]),
    ("rel1", [0.1, 0.1, 0.5, 0.9], [8, 4, 40, 36]),
    ("rel1000", [100, 100, 500, 900], [8, 4, 40, 36]),
])
def test_box_format_and_nested_object_path(tmp_path, box_format, raw, expected):
    write_image(tmp_path / "a.png", (80, 40))
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"img": "a.png", "q": "Where?", "solution": {"bbox": raw}}) + "\n")
    result = load_source({"kind": "folder", "params": {
        "annotations": str(path), "task": "grounding", "box_format": box_format,
        "columns": {"image": "img", "problem": "q", "answer": "solution.bbox"}}})
    assert not result.drops
    assert json.loads(result.rows[0]["answer"]) == pytest.approx(expected, abs=0.01)


def test_detection_answer_objects_converted_and_labelled(tmp_path):
    write_image(tmp_path / "a.png", (200, 100))
    truth = "<answer>[{'bbox_2d': [0, 0, 500, 1000], 'label': 'dog'}, {'bbox_2d': [500, 0, 1000, 500], " \
            "'label': 'cat'}]</answer>"
    path = tmp_path / "det.jsonl"
    path.write_text(json.dumps({"img": "a.png", "q": "Find all.", "a": truth}) + "\n")
    result = load_source({"kind": "folder", "params": {
        "annotations": str(path), "task": "detection", "box_format": "rel1000",
        "columns": {"image": "img", "problem": "q", "answer": "a"}}})
    items = json.loads(result.rows[0]["answer"])
    assert [i["label"] for i in items] == ["dog", "cat"]
    assert items[0]["bbox_2d"] == pytest.approx([0, 0, 100, 100], abs=0.01)
    assert items[1]["bbox_2d"] == pytest.approx([100, 0, 200, 50], abs=0.01)


def test_unknown_box_format_and_bad_path_are_errors(tmp_path):
    write_image(tmp_path / "a.png", (8, 8))
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"img": "a.png", "q": "?", "a": [1, 1, 2, 2]}) + "\n")
    base = {"annotations": str(path), "task": "grounding", "columns": {"image": "img", "problem": "q", "answer": "a"}}
    with pytest.raises(SourceError, match="box_format"):
        load_source({"kind": "folder", "params": {**base, "box_format": "cxcywh"}})
    with pytest.raises(SourceError, match=r"\['nope\[0\]'\]"):
        load_source({"kind": "folder", "params": {**base, "columns": {**base["columns"], "answer": "nope[0]"}}})


def test_easyr1_geometry3k_parquet_through_hf(tmp_path):
    # hiyouga/geometry3k: images (list of Image structs), problem with its <image> mark, answer text.
    table = pa.table({
        "images": [[{"bytes": png_bytes((64, 48)), "path": None}], [{"bytes": png_bytes((32, 32)), "path": None}],
                   [{"bytes": b"broken", "path": None}]],
        "problem": ["<image>Find x. Round to the nearest tenth.", "<image>Find the area.", "<image>Find y."],
        "answer": ["7.2", "\\frac{9}{2}", "3"],
    })
    folder = tmp_path / "geometry3k" / "data"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "train-00000-of-00001.parquet")
    pq.write_table(table.slice(0, 1), folder / "test-00000-of-00001.parquet")
    result = load_source({"kind": "hf", "name": "geometry3k", "params": {
        "path": str(tmp_path / "geometry3k"), "split": "train", "task": "math",
        "columns": {"image": "images", "problem": "problem", "answer": "answer"}}})
    assert [r["answer"] for r in result.rows] == ["7.2", "\\frac{9}{2}"]
    assert drops_by_reason(result) == {"undecodable_image": ["geometry3k:2"]}
    assert_schema_rows(result.rows)


def test_lookup_and_box_items_edge_cases():
    record = {"a": '{"b": [1, {"c": 2}]}', "x.y": 3}
    assert lookup(record, "a.b[1].c") == 2  # a JSON string on the way is parsed
    assert lookup(record, "x.y") == 3  # a column named with a dot wins
    assert lookup(record, "a.b[5]") is MISSING
    assert box_items({"box": [1, 2, 3, 4], "category": "cup"}) == [([1, 2, 3, 4], "cup")]
    assert to_xyxy([0.5, 0.5, 1, 1], "rel1", (10, 20)) == (5.0, 10.0, 10.0, 20.0)
