"""VLAA-Thinking as released: the JSON files beside images/<origin>/…, ALLaVA's leading-`/` paths, a
data_source per origin (id prefix / image folder), and final answers taken from worked solutions."""

from __future__ import annotations

import json

import pytest
from sources_support import assert_schema_rows, drops_by_reason, write_image

from data_pipelines.sources.registry import load_source

SYNTHESIS_GT = ("Step 1: Substitute the point (pi/10, 5) into the function:  5 = a * sin(-5 * (pi/10)).\n"
                "Step 2: Since sin(-pi/2) = -1, we have: 5 = a * -1.\n\n†Answer: y = -5 * sin(-5 * x).")


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "VLAA-Thinking"
    for rel in ("clevr_math/CLEVR_train_027977.png", "geoqa170k/geoqa_plus-2905.png",
                "allava_laion/images/100760552.jpeg", "synthesis/gen_func-func_sine_22135407_qtmb.png",
                "arxivqa/1704.01566_1.jpg"):
        write_image(root / "images" / rel, (48, 32))
    records = [
        {"id": "clevr_math-CLEVR_train_027977.png", "image": "clevr_math/CLEVR_train_027977.png",
         "question": "Subtract all balls. How many objects are left?", "gt": 3,
         "ds_answer": "<think>One ball of four.</think>\n\n**Answer:** There are 3 objects remaining.",
         "caption": "", "meta": {"caption_model_id": "gpt-4o", "rationale": "a sphere and three cylinders"}},
        {"id": "geoqa170k-geoqa_plus-2905-63590", "image": "geoqa170k/geoqa_plus-2905.png",
         "question": "Find tan(angle ADC).\nChoices:\nA: \\frac{1}{2}\nB: 2\nC: \\frac{√{3}}{3}\nD: √{3}", "gt": "C",
         "ds_answer": "<think>30 degrees.</think>C", "caption": "", "meta": {"rationale": ""}},
        {"id": "allava-allava_laion_100760552", "image": "/allava_laion/images/100760552.jpeg",
         "question": "What could be its significance?", "gt": "A local landmark.", "caption": "A map.",
         "ds_answer": "<think>It is central.</think>A landmark.", "meta": {"url": "https://example.org/x.jpg"}},
        {"id": "synthesis-2", "image": "synthesis/gen_func-func_sine_22135407_qtmb.png",
         "question": "What is the function's equation?", "gt": SYNTHESIS_GT, "ds_answer": "", "caption": "",
         "meta": {"text_question": "The function y = a * sin(-5 * x) goes through (pi/10, 5)."}},
        {"id": "arxivqa-cond-mat-23739", "image": "arxivqa/missing.jpg", "question": "Which?", "gt": "C",
         "ds_answer": "", "caption": ""},
    ]
    (root / "VLAA-Thinking-GRPO-25K.json").write_text(json.dumps(records))
    return root


def test_release_layout_imports_unchanged(release):
    result = load_source({"kind": "vlaa", "params": {"annotations": str(release / "VLAA-Thinking-GRPO-25K.json")}})
    rows = {row["id"]: row for row in result.rows}
    assert sorted(rows) == ["vlaa:allava-allava_laion_100760552", "vlaa:clevr_math-CLEVR_train_027977.png",
                            "vlaa:geoqa170k-geoqa_plus-2905-63590", "vlaa:synthesis-2"]
    sources = {i.split(":", 1)[1].split("-")[0]: r["data_source"] for i, r in rows.items()}
    assert sources == {"allava": "vlaa_allava", "clevr_math": "vlaa_clevr_math", "geoqa170k": "vlaa_geoqa170k",
                       "synthesis": "vlaa_synthesis"}
    clevr = rows["vlaa:clevr_math-CLEVR_train_027977.png"]
    assert (clevr["answer"], clevr["task"]) == ("3", "number")
    geo = rows["vlaa:geoqa170k-geoqa_plus-2905-63590"]
    assert (geo["answer"], geo["task"]) == ("C", "mcq")
    synthesis = rows["vlaa:synthesis-2"]
    assert synthesis["answer"] == "y = -5 * sin(-5 * x)" and synthesis["task"] == "math"
    assert synthesis["meta"]["solution"] == SYNTHESIS_GT
    assert drops_by_reason(result) == {"missing_image": ["vlaa:arxivqa-cond-mat-23739"]}
    assert "images" in result.drops[0].detail  # the drop says where it looked
    assert_schema_rows(result.rows)


def test_data_source_from_image_folder_without_id(tmp_path):
    write_image(tmp_path / "images" / "vizwiz" / "a.jpg", (8, 8))
    path = tmp_path / "sft.json"
    path.write_text(json.dumps([{"image": "/vizwiz/a.jpg", "question": "What is it?", "gt": "unanswerable"}]))
    result = load_source({"kind": "vlaa", "name": "vlaa_sft", "params": {"annotations": str(path)}})
    assert result.rows[0]["data_source"] == "vlaa_sft_vizwiz"
