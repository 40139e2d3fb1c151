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


def test_every_param_of_every_source_is_documented_in_vlrl_data_sources(capsys):
    import dataclasses

    from data_pipelines.sources.columns import Columns
    from vlrl.cli import main

    assert main(["data", "sources"]) == 0
    out = capsys.readouterr().out
    for kind, source in SOURCES.items():
        assert f"\n{kind}: " in out
        for f in dataclasses.fields(source.options):
            # The help comes from the field itself, so a new param without one fails here.
            assert f.metadata.get("help"), f"{kind}.{f.name} has no help"
            assert f"    {f.name} ({f.type}, " in out and f.metadata["help"] in out
    # `columns` lists every key it accepts, with what it maps, under each column-mapped source.
    for f in dataclasses.fields(Columns):
        assert f.metadata.get("help"), f"columns.{f.name} has no help"
        assert out.count(f"            {f.name} ({f.type}, ") == 2, f.name  # folder and hf
    assert "image (str, required): column of the row's images" in out
    assert "annotations (str, required)" in out and "image_sep (str, default ';')" in out


def test_columns_accept_the_schema_field_name_images():
    from data_pipelines.sources.columns import columns_from_mapping

    cols = columns_from_mapping({"images": "file", "problem": "q", "answer": "a"}, "here")
    assert (cols.image, cols.problem, cols.answer) == ("file", "q", "a")
    with pytest.raises(SourceError, match="both 'image' and 'images'"):
        columns_from_mapping({"images": "f", "image": "g", "problem": "q", "answer": "a"}, "here")
