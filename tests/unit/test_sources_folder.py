"""The folder source: JSONL and CSV annotations with a column mapping; every bad record dropped by name."""

from __future__ import annotations

import json

import pytest
from sources_support import assert_schema_rows, drops_by_reason, pil, write_image

from data_pipelines.sources.annotations import SourceError, SourceFileNotFound
from data_pipelines.sources.folder import FolderOptions, load_folder

COLUMNS = {"image": "file_name", "problem": "question", "answer": "gt", "id": "qid"}


@pytest.fixture
def folder(tmp_path):
    write_image(tmp_path / "img" / "a.png", (40, 30))
    write_image(tmp_path / "img" / "b.png", (20, 20))
    (tmp_path / "img" / "bad.png").write_bytes(b"\x89PNG but truncated")
    return tmp_path


def _jsonl(path, records):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def test_jsonl_rows_and_drops(folder):
    path = _jsonl(
        folder / "qa.jsonl",
        [
            {"qid": "q1", "file_name": "img/a.png", "question": "How many?", "gt": 3, "source": "mine"},
            {
                "qid": "q2",
                "file_name": ["img/a.png", "img/b.png"],
                "question": "Compare <image> with <image>.",
                "gt": "left",
            },
            {"qid": "q3", "file_name": "img/none.png", "question": "Q?", "gt": "x"},
            {"qid": "q4", "file_name": "img/a.png", "question": "Q?", "gt": ""},
            {"qid": "q5", "file_name": "img/a.png", "gt": "x"},
            {"qid": "q6", "file_name": "img/bad.png", "question": "Q?", "gt": "x"},
            "[1, 2]",
            {"qid": "q1", "file_name": "img/b.png", "question": "Again?", "gt": "y"},
            {"qid": "q9", "file_name": "img/a.png", "question": "<image> vs <image>", "gt": "z"},
            {"file_name": "img/b.png", "question": "No id?", "gt": [1, 2, 3, 4]},
        ],
    )
    result = load_folder(FolderOptions(annotations=str(path), columns=COLUMNS, task="open"))
    rows = {row["id"]: row for row in result.rows}
    assert list(rows) == ["folder:q1", "folder:q2", "folder:9"]  # the last record has no id: its index
    assert rows["folder:q1"]["answer"] == "3"  # a JSON number becomes its text
    assert rows["folder:9"]["answer"] == "[1, 2, 3, 4]"
    assert [pil(im).size for im in rows["folder:q2"]["images"]] == [(40, 30), (20, 20)]
    assert rows["folder:q1"]["meta"] == {"source": "mine"}  # unmapped columns are kept
    assert rows["folder:q1"]["task"] == "open" and rows["folder:q1"]["data_source"] == "folder"
    assert drops_by_reason(result) == {
        "missing_image": ["folder:q3"],
        "missing_answer": ["folder:q4"],
        "missing_question": ["folder:q5"],
        "undecodable_image": ["folder:q6"],
        "invalid_record": ["folder:6"],
        "duplicate_id": ["folder:q1"],
        "placeholder_mismatch": ["folder:q9"],
    }
    details = {d.reason: d.detail for d in result.drops}
    assert "none.png" in details["missing_image"] and "'gt'" in details["missing_answer"]
    assert "'question'" in details["missing_question"] and "bad.png" in details["undecodable_image"]
    assert_schema_rows(result.rows)


def test_csv_with_task_column_and_separated_images(folder):
    (folder / "qa.csv").write_text(
        "file,q,a,kind,origin\n"
        "img/a.png;img/b.png,Which is bigger?,the first,,set1\n"
        "img/b.png,How many squares?,2,count,set2\n"
        "img/a.png,,5,count,set2\n"
    )
    columns = {"image": "file", "problem": "q", "answer": "a", "task": "kind", "data_source": "origin"}
    result = load_folder(
        FolderOptions(
            annotations=str(folder / "qa.csv"),
            columns=columns,
            task="open",
            image_root=str(folder),
            data_source="fallback",
        )
    )
    assert [(r["id"], r["task"], r["data_source"], len(r["images"])) for r in result.rows] == [
        ("folder:0", "open", "set1", 2),  # empty task cell -> the constant
        ("folder:1", "count", "set2", 1),
    ]
    assert drops_by_reason(result) == {"missing_question": ["folder:2"]}
    assert_schema_rows(result.rows)


def test_unusable_inputs_raise_naming_the_file(folder):
    with pytest.raises(SourceFileNotFound, match="absent.jsonl"):
        load_folder(FolderOptions(annotations=str(folder / "absent.jsonl"), columns=COLUMNS, task="open"))
    path = _jsonl(folder / "qa.jsonl", [{"qid": "1", "file_name": "img/a.png", "question": "Q?", "gt": "a"}])
    with pytest.raises(SourceError, match="must name the input column for \\['answer'\\]"):
        load_folder(
            FolderOptions(
                annotations=str(path), columns={"image": "file_name", "problem": "question"}, task="open"
            )
        )
    with pytest.raises(SourceError, match=r"qa.jsonl: mapped columns \['answer_text'\]"):
        load_folder(
            FolderOptions(annotations=str(path), columns={**COLUMNS, "answer": "answer_text"}, task="open")
        )
    with pytest.raises(SourceError, match="unknown column mapping keys"):
        load_folder(FolderOptions(annotations=str(path), columns={**COLUMNS, "label": "x"}, task="open"))
    with pytest.raises(SourceError, match="task"):
        load_folder(FolderOptions(annotations=str(path), columns=COLUMNS))
    (folder / "broken.jsonl").write_text("{oops\nnot json either\n")
    with pytest.raises(SourceError, match="broken.jsonl: no line is valid JSON"):
        load_folder(FolderOptions(annotations=str(folder / "broken.jsonl"), columns=COLUMNS, task="open"))


def test_exif_rotated_image_keeps_its_stored_pixels_through_the_dataset(tmp_path):
    """A box is annotated on the stored pixels; `datasets` would rotate a file carrying an EXIF orientation when
    it decodes it, so such an image is written as its stored pixels, untagged."""
    import PIL.Image

    from data_pipelines.records import rows_dataset, to_schema_row

    exif = PIL.Image.Exif()
    exif[274] = 6  # "rotate 90 degrees clockwise to display"
    PIL.Image.new("RGB", (40, 20), (200, 10, 10)).save(tmp_path / "rot.jpg", exif=exif.tobytes())
    (tmp_path / "ann.jsonl").write_text(json.dumps({"f": "rot.jpg", "q": "where?", "a": "[1, 1, 30, 15]"}) + "\n")
    result = load_folder(FolderOptions(annotations=str(tmp_path / "ann.jsonl"), task="grounding",
                                       columns={"image": "f", "problem": "q", "answer": "a"}))
    ds = rows_dataset([to_schema_row(row) for row in result.rows])
    assert ds[0]["images"][0].size == (40, 20)  # stored 40 x 20, not the displayed 20 x 40
