"""The vlaa source: reasoning from the teacher's <think>, meta kept, and the task inferred from the answer."""

from __future__ import annotations

import json

import pytest
from sources_support import assert_schema_rows, drops_by_reason, write_image

from data_pipelines.sources.vlaa import VlaaOptions, infer_task, load_vlaa, question_options, thinking

MCQ = "What colour is the square?\nA. red\nB. black\nC. blue"


@pytest.fixture
def vlaa(tmp_path):
    write_image(tmp_path / "images" / "sq.png", (30, 30), box=(5, 5, 25, 25))
    records = [
        {
            "image": "images/sq.png",
            "question": MCQ,
            "gt": "(B)",
            "caption": "A black square on white.",
            "ds_answer": "<think>\nThe square is dark.\n</think>\nThe answer is B.",
            "meta": {"source": "shapes_mcq", "split": "train"},
        },
        {
            "image": "images/sq.png",
            "question": "How many sides in total?",
            "gt": "12",
            "ds_answer": "Three squares, four sides each.</think>12",
            "caption": "c",
        },
        {
            "image": "images/sq.png",
            "question": "What fraction is black?",
            "gt": "$\\frac{4}{9}$",
            "caption": "c",
        },
        {"image": "images/sq.png", "question": "Describe it.", "gt": "a black square", "caption": "c"},
        {"image": "images/sq.png", "question": "Is it square?", "gt": "Yes", "caption": "c", "id": "yn"},
        {"image": "images/lost.png", "question": "Q?", "gt": "1", "caption": "c"},
        {"image": "images/sq.png", "question": "Q?", "gt": "", "caption": "c"},
        {"image": "images/sq.png", "gt": "1", "caption": "c"},
    ]
    path = tmp_path / "vlaa.json"
    path.write_text(json.dumps(records))
    return path


def test_rows(vlaa):
    result = load_vlaa(VlaaOptions(annotations=str(vlaa)))
    rows = {row["id"]: row for row in result.rows}
    assert [(i, r["task"], r["answer"]) for i, r in rows.items()] == [
        ("vlaa:0", "mcq", "B"),
        ("vlaa:1", "number", "12"),
        ("vlaa:2", "math", "$\\frac{4}{9}$"),
        ("vlaa:3", "open", "a black square"),
        ("vlaa:yn", "yes_no", "Yes"),
    ]
    mcq = rows["vlaa:0"]
    assert mcq["reasoning"] == "The square is dark."
    assert mcq["data_source"] == "shapes_mcq" and rows["vlaa:1"]["data_source"] == "vlaa"
    assert mcq["meta"]["caption"] == "A black square on white."
    assert mcq["meta"]["source_meta"] == {"source": "shapes_mcq", "split": "train"}
    assert mcq["meta"]["ds_answer"].endswith("The answer is B.")
    assert mcq["meta"]["options"] == {"A": "red", "B": "black", "C": "blue"}
    assert rows["vlaa:1"]["reasoning"] == "Three squares, four sides each."
    assert rows["vlaa:3"]["reasoning"] == ""
    assert drops_by_reason(result) == {
        "missing_image": ["vlaa:5"],
        "missing_answer": ["vlaa:6"],
        "missing_question": ["vlaa:7"],
    }
    assert_schema_rows(result.rows)


def test_mcq_rows_score_with_the_choice_reward(vlaa):
    from vlrl.rewards import RewardInput, get_reward

    row = load_vlaa(VlaaOptions(annotations=str(vlaa))).rows[0]
    accuracy = get_reward("accuracy")
    # "black" is option B's text, so the choice reward reads it as B through meta["options"].
    assert (
        accuracy(RewardInput("<answer>black</answer>", row["answer"], row["task"], meta=row["meta"])) == 1.0
    )
    assert accuracy(RewardInput("<answer>C</answer>", row["answer"], row["task"], meta=row["meta"])) == 0.0


@pytest.mark.parametrize(
    "answer, question, task",
    [
        ("B", MCQ, "mcq"),
        ("(c)", MCQ, "mcq"),
        ("B.", MCQ, "mcq"),
        ("E", MCQ, "open"),  # a letter the question does not offer
        ("A", "What is the label of point A?", "open"),  # a letter without options
        ("yes", "", "yes_no"),
        ("No.", "", "yes_no"),
        ("42", "", "number"),
        ("-3.5", "", "number"),
        ("1,250", "", "number"),
        ("25%", "", "number"),
        ("\\boxed{7}", "", "number"),
        ("1/2", "", "math"),
        ("\\sqrt{2}", "", "math"),
        ("x = 3", "", "math"),
        ("2x+1", "", "math"),
        ("3^4", "", "math"),
        ("Paris", "", "open"),
        ("a red car", "", "open"),
        ("3 cm", "", "open"),
    ],
)
def test_infer_task(answer, question, task):
    assert infer_task(answer, question) == task


def test_question_options_and_thinking():
    assert question_options("Pick one: (A) cat (B) dog") == {"A": "cat", "B": "dog"}
    assert question_options("How many?") == {}
    assert thinking("<think> a </think> b") == "a" and thinking("no tags") == ""
