"""Schema v1: row validation errors name the row and field; loading from save_to_disk and parquet."""

from __future__ import annotations

import io
import json

import datasets
import PIL.Image
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlrl.data.schema import (
    SCHEMA_FEATURES,
    Row,
    RowError,
    SchemaError,
    check_unique_ids,
    load_rows,
    validate_row,
)


def _image(colour=(200, 10, 10), mode="RGB") -> PIL.Image.Image:
    return PIL.Image.new(mode, (8, 6), colour if mode == "RGB" else (*colour, 128))


def _png(image: PIL.Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _row(**overrides) -> dict:
    row = {
        "id": "row-7",
        "images": [_image()],
        "problem": "what colour is the shape ?",
        "answer": "red",
        "task": "colour",
        "data_source": "shapes_colour",
        "reward": "",
        "reasoning": "",
        "meta": "{}",
    }
    row.update(overrides)
    return row


def _rows(n: int, prefix: str = "r") -> list[dict]:
    return [_row(id=f"{prefix}-{i}", answer=str(i), images=[_image((i * 40, 0, 0))]) for i in range(n)]


# ---------------------------------------------------------------------------------------------- validate_row


def test_valid_row_is_converted():
    row = validate_row(_row(reward='{"verifier": "exact"}', meta='{"k": 1}', reasoning="because"), 0)
    assert isinstance(row, Row)
    assert row.id == "row-7" and row.answer == "red" and row.data_source == "shapes_colour"
    assert row.reward == {"verifier": "exact"} and row.meta == {"k": 1} and row.reasoning == "because"
    assert (
        len(row.images) == 1
        and row.images[0].mode == "RGB"
        and row.images[0].getpixel((0, 0)) == (200, 10, 10)
    )


def test_absent_optionals_get_defaults():
    raw = _row(data_source="", reward="", reasoning="", meta="")
    row = validate_row(raw, 0)
    assert (row.data_source, row.reward, row.reasoning, row.meta) == ("colour", None, None, {})
    for key in ("data_source", "reward", "reasoning", "meta"):
        del raw[key]
    row = validate_row(raw, 0)
    assert (row.data_source, row.reward, row.reasoning, row.meta) == ("colour", None, None, {})


def test_image_encodings_are_decoded_to_rgb(tmp_path):
    path = tmp_path / "im.png"
    _image((1, 2, 3)).save(path)
    images = [
        {"bytes": _png(_image((1, 2, 3))), "path": None},
        {"bytes": None, "path": str(path)},
        _png(_image((1, 2, 3))),
        _image((1, 2, 3), mode="RGBA"),
    ]
    row = validate_row(_row(images=images, problem="<image> <image> <image> <image> same ?"), 0)
    assert [im.mode for im in row.images] == ["RGB"] * 4
    assert [im.getpixel((3, 3)) for im in row.images[:3]] == [(1, 2, 3)] * 3


def test_text_only_row_and_dict_json_fields():
    row = validate_row(_row(images=[], reward={"weights": {"accuracy": 1.0}}, meta={"a": [1]}), 3)
    assert row.images == () and row.reward == {"weights": {"accuracy": 1.0}} and row.meta == {"a": [1]}


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"problem": None}, "problem", "must be a string"),
        ({"answer": "  "}, "answer", "is empty"),
        ({"answer": 3}, "answer", "must be a string, got int"),
        ({"task": ""}, "task", "is empty"),
        ({"data_source": 5}, "data_source", "must be a string"),
        ({"reasoning": ["x"]}, "reasoning", "must be a string"),
        ({"images": "a.png"}, "images", "must be a list"),
        ({"images": [b"not an image"]}, "images[0]", "cannot be decoded"),
        ({"images": [_image(), 17]}, "images[1]", "is not an image"),
        ({"images": [{"bytes": None, "path": "/nonexistent/x.png"}]}, "images[0]", "cannot be decoded"),
        ({"problem": "<image> vs <image> ?"}, "problem", "2 '<image>' placeholders but the row has 1 images"),
        ({"reward": "{not json"}, "reward", "not valid JSON"),
        ({"reward": "[1, 2]"}, "reward", "must be a JSON object, got list"),
        ({"meta": "3"}, "meta", "must be a JSON object, got int"),
        ({"meta": 3}, "meta", "must be a JSON object, got int"),
    ],
)
def test_each_failure_names_row_and_field(change, field, fragment):
    with pytest.raises(RowError) as info:
        validate_row(_row(**change), 12)
    message = str(info.value)
    assert "'row-7'" in message and f"field '{field}'" in message and fragment in message, message
    assert info.value.field == field and info.value.row_id == "row-7" and info.value.index == 12


@pytest.mark.parametrize("field", ["problem", "answer", "task", "images"])
def test_missing_required_field(field):
    raw = _row()
    del raw[field]
    with pytest.raises(RowError, match=rf"'row-7'.*field '{field}' is missing"):
        validate_row(raw, 0)


@pytest.mark.parametrize("bad_id", [None, "", 42])
def test_row_without_usable_id_is_named_by_index(bad_id):
    raw = _row(id=bad_id)
    with pytest.raises(RowError, match=r"row at index 5: field 'id'"):
        validate_row(raw, 5)
    del raw["id"]
    with pytest.raises(RowError, match=r"row at index 5: field 'id' is missing"):
        validate_row(raw, 5)


def test_non_mapping_row():
    with pytest.raises(RowError, match="index 2.*must be a mapping"):
        validate_row(["id", "x"], 2)


# ----------------------------------------------------------------------------------------- check_unique_ids


def test_check_unique_ids():
    rows = _rows(4)
    check_unique_ids(rows)
    check_unique_ids(datasets.Dataset.from_list(rows, features=SCHEMA_FEATURES))
    rows += [_row(id="r-2"), _row(id="r-0"), _row(id="r-2")]
    with pytest.raises(SchemaError, match=r"2 duplicate ids: 'r-0' x2, 'r-2' x3"):
        check_unique_ids(datasets.Dataset.from_list(rows, features=SCHEMA_FEATURES))


# ------------------------------------------------------------------------------------------------ load_rows


def _dataset(n: int, prefix: str) -> datasets.Dataset:
    return datasets.Dataset.from_list(_rows(n, prefix), features=SCHEMA_FEATURES)


def _assert_rows(ds: datasets.Dataset, prefix: str, n: int):
    assert ds.num_rows == n
    rows = [validate_row(raw, i) for i, raw in enumerate(ds)]
    assert [r.id for r in rows] == [f"{prefix}-{i}" for i in range(n)]
    assert rows[1].images[0].getpixel((0, 0)) == (40, 0, 0)


def test_load_save_to_disk_dict_and_dataset(tmp_path):
    datasets.DatasetDict(train=_dataset(3, "tr"), test=_dataset(2, "te")).save_to_disk(str(tmp_path / "dd"))
    _assert_rows(load_rows(str(tmp_path / "dd"), "train"), "tr", 3)
    _assert_rows(load_rows(str(tmp_path / "dd"), "test"), "te", 2)
    with pytest.raises(SchemaError, match=r"no split 'validation'; available splits: \['test', 'train'\]"):
        load_rows(str(tmp_path / "dd"), "validation")

    _dataset(2, "only").save_to_disk(str(tmp_path / "single"))
    _assert_rows(load_rows(str(tmp_path / "single"), "anything"), "only", 2)


def test_load_parquet_file_and_directory(tmp_path):
    cache = str(tmp_path / "cache")
    _dataset(3, "tr").to_parquet(str(tmp_path / "flat" / "train-00000-of-00001.parquet"))
    _dataset(2, "te").to_parquet(str(tmp_path / "flat" / "test.parquet"))
    _assert_rows(load_rows(str(tmp_path / "flat" / "test.parquet"), "train", cache_dir=cache), "te", 2)
    _assert_rows(load_rows(str(tmp_path / "flat"), "train", cache_dir=cache), "tr", 3)
    _assert_rows(load_rows(str(tmp_path / "flat"), "test", cache_dir=cache), "te", 2)
    with pytest.raises(
        SchemaError, match=r"no parquet files for split 'val'; available splits: \['test', 'train'\]"
    ):
        load_rows(str(tmp_path / "flat"), "val", cache_dir=cache)

    # hub layout (data/train-*.parquet) and one folder per split
    _dataset(2, "hub").to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    _assert_rows(load_rows(str(tmp_path / "hub"), "train", cache_dir=cache), "hub", 2)
    _dataset(2, "dir").to_parquet(str(tmp_path / "bydir" / "test" / "0000.parquet"))
    _assert_rows(load_rows(str(tmp_path / "bydir"), "test", cache_dir=cache), "dir", 2)


def test_parquet_without_hf_metadata_yields_image_dicts(tmp_path):
    # parquet written by another tool: images as a list of {bytes, path} structs, no datasets features
    raws = _rows(2, "pa")
    table = pa.table(
        {
            **{
                k: [r[k] for r in raws]
                for k in ("id", "problem", "answer", "task", "data_source", "reward", "reasoning", "meta")
            },
            "images": [[{"bytes": _png(im), "path": None} for im in r["images"]] for r in raws],
        }
    )
    pq.write_table(table, tmp_path / "train.parquet")
    ds = load_rows(str(tmp_path / "train.parquet"), "train", cache_dir=str(tmp_path / "cache"))
    _assert_rows(ds, "pa", 2)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere/at/all"):
        load_rows(str(tmp_path / "nowhere" / "at" / "all"), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SchemaError, match="neither a save_to_disk directory nor a directory of parquet"):
        load_rows(str(tmp_path / "empty"), "train")
    (tmp_path / "rows.json").write_text(json.dumps([_row(images=[])]))
    with pytest.raises(SchemaError, match="expected a .parquet file"):
        load_rows(str(tmp_path / "rows.json"), "train")

    legacy = datasets.Dataset.from_dict({"id": ["a"], "image": [_image()], "question": ["q"], "task": ["t"]})
    legacy.to_parquet(str(tmp_path / "legacy" / "train.parquet"))
    with pytest.raises(
        SchemaError, match=r"missing required columns \['images', 'problem', 'answer'\].*'image'"
    ):
        load_rows(str(tmp_path / "legacy"), "train", cache_dir=str(tmp_path / "cache"))
