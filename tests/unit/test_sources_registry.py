"""load_source: config sections to sources, with errors that list the valid kinds and params."""

from __future__ import annotations

import json

import pytest
from sources_support import assert_schema_rows, write_image

from data_pipelines.sources import SOURCES, load_source
from data_pipelines.sources.annotations import SourceError


def test_every_kind_is_registered():
    assert sorted(SOURCES) == ["coco", "digits", "folder", "hf", "orsta", "refcoco", "shapes", "vlaa"]


def test_synthetic_sections():
    shapes = load_source(
        {"kind": "shapes", "name": "warmup", "params": {"rows_per_task": 4, "tasks": ["count"]}}
    )
    assert shapes.name == "warmup" and len(shapes.rows) == 4 and not shapes.drops
    assert all(r["id"].startswith("warmup:count-") and isinstance(r["meta"], dict) for r in shapes.rows)
    digits = load_source({"kind": "digits", "params": {"rows_per_task": 3, "split": "test", "seed": 1}})
    assert [r["task"] for r in digits.rows] == ["number"] * 3 + ["grounding"] * 3
    assert_schema_rows(shapes.rows + digits.rows)


def test_file_section_with_list_params(tmp_path):
    write_image(tmp_path / "a.png", (10, 10))
    (tmp_path / "qa.jsonl").write_text(json.dumps({"f": "a.png", "q": "Colour?", "a": "white"}) + "\n")
    result = load_source(
        {
            "kind": "folder",
            "name": "mine",
            "params": {
                "annotations": str(tmp_path / "qa.jsonl"),
                "task": "open",
                "columns": {"image": "f", "problem": "q", "answer": "a", "meta": ["q"]},
            },
        }
    )
    assert [(r["id"], r["data_source"], r["meta"]) for r in result.rows] == [
        ("mine:0", "mine", {"q": "Colour?"})
    ]


@pytest.mark.parametrize(
    "section, message",
    [
        ({"kind": "flickr"}, r"unknown source kind 'flickr'; valid kinds: \['coco', 'digits'"),
        ({"kind": "coco", "params": {"annotations": "a.json"}}, r"missing required params \['image_root'\]"),
        (
            {"kind": "coco", "params": {"annotations": "a", "image_root": "b", "max_boxes": 3}},
            r"unknown params \['max_boxes'\]; valid params: \['annotations', 'box_tolerance'",
        ),
        ({"kind": "digits", "params": {"rows_per_task": "ten"}}, "param 'rows_per_task' must be int"),
        ({"kind": "digits", "params": {"tasks": "sum", "seed": True}}, "param 'seed' must be int"),
        (
            {"kind": "coco", "params": {"annotations": "a", "image_root": "b", "templates": ["x"]}},
            "must be a mapping",
        ),
        ({"kind": "shapes", "param": {}}, r"unknown keys \['param'\]"),
        ({"params": {}}, "has no 'kind'"),
        ({"kind": "shapes", "name": ""}, "name must be a non-empty string"),
        ({"kind": "digits", "params": {"tasks": ["sum", "product"]}}, r"unknown tasks \['product'\]"),
    ],
)
def test_bad_sections(section, message):
    with pytest.raises(SourceError, match=message):
        load_source(section)


def test_floats_accept_ints_and_tuples_accept_one_string():
    from data_pipelines.sources.registry import build_options

    options = build_options(
        "coco", {"annotations": "a", "image_root": "b", "box_tolerance": 2, "kinds": "count"}
    )
    assert options.box_tolerance == 2.0 and isinstance(options.box_tolerance, float)
    assert options.kinds == ("count",)
