"""The refcoco source: one grounding row per expression, boxes converted from either format."""

from __future__ import annotations

import json

import pytest
from sources_support import assert_schema_rows, drops_by_reason, write_image

from data_pipelines.sources.annotations import SourceError
from data_pipelines.sources.refcoco import RefCocoOptions, load_refcoco


@pytest.fixture
def refs(tmp_path):
    write_image(tmp_path / "imgs" / "a.png", (64, 48), box=(10, 20, 40, 44))
    records = [
        {
            "ref_id": 7,
            "image": "imgs/a.png",
            "bbox": [10, 20, 30, 24],
            "sentences": [{"sent": "the black box"}, {"sent": "dark square"}, {"sent": "the black box"}],
        },
        {"ref_id": 8, "file_name": "imgs/a.png", "expression": "whole picture", "bbox": [0, 0, 64, 48]},
        {
            "ref_id": 9,
            "image": "imgs/a.png",
            "expression": "too wide",
            "bbox": [40, 0, 30, 10],
        },  # x2 = 70 > 64
        {"ref_id": 10, "image": "imgs/a.png", "bbox": [1, 1, 2, 2]},  # no expression
        {"ref_id": 11, "image": "imgs/gone.png", "expression": "missing", "bbox": [1, 1, 2, 2]},
        {"ref_id": 12, "image": "imgs/a.png", "expression": "no box"},
    ]
    path = tmp_path / "refs.json"
    path.write_text(json.dumps(records))
    return path


def test_rows_per_expression_and_drops(refs):
    result = load_refcoco(RefCocoOptions(annotations=str(refs)))
    rows = {row["id"]: row for row in result.rows}
    # Record 7 has two distinct sentences (the repeat is folded); xywh [10, 20, 30, 24] -> [10, 20, 40, 44].
    assert list(rows) == ["refcoco:7", "refcoco:7:1", "refcoco:8"]
    assert [json.loads(rows[i]["answer"]) for i in rows] == [
        [10, 20, 40, 44],
        [10, 20, 40, 44],
        [0, 0, 64, 48],
    ]
    assert (
        '"the black box"' in rows["refcoco:7"]["problem"]
        and '"dark square"' in rows["refcoco:7:1"]["problem"]
    )
    assert {r["task"] for r in result.rows} == {"grounding"}
    assert rows["refcoco:8"]["meta"]["file_name"] == "imgs/a.png"
    assert drops_by_reason(result) == {
        "box_outside_image": ["refcoco:9"],
        "missing_question": ["refcoco:10"],
        "missing_image": ["refcoco:11"],
        "missing_answer": ["refcoco:12"],
    }
    assert "'bbox'" in next(d.detail for d in result.drops if d.reason == "box_outside_image")
    assert_schema_rows(result.rows)
    first_only = load_refcoco(RefCocoOptions(annotations=str(refs), one_row_per_expression=False))
    assert [r["id"] for r in first_only.rows] == ["refcoco:7", "refcoco:8"]


def test_xyxy_boxes_from_jsonl(tmp_path, refs):
    lines = [
        {"id": "r1", "image": "imgs/a.png", "expressions": ["left part"], "box": [0, 0, 32, 48]},
        {"id": "r2", "image": "imgs/a.png", "expressions": ["flat"], "box": [5, 5, 5, 9]},
    ]  # x2 == x1
    path = tmp_path / "refs.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    result = load_refcoco(RefCocoOptions(annotations=str(path), box_format="xyxy"), name="mine")
    assert [(r["id"], json.loads(r["answer"])) for r in result.rows] == [("mine:r1", [0, 0, 32, 48])]
    assert drops_by_reason(result) == {"degenerate_box": ["mine:r2"]}
    with pytest.raises(SourceError, match="box_format"):
        load_refcoco(RefCocoOptions(annotations=str(path), box_format="cxcywh"))
