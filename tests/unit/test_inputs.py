"""Datasets handed to the trainer as objects become schema-v1 datasets (vlrl.inputs)."""

from __future__ import annotations

import json

import datasets
import pytest
from PIL import Image

from vlrl.config_loader import load_config
from vlrl.data.schema import SCHEMA_FEATURES, SchemaError, load_rows, validate_row
from vlrl.inputs import DATA_DIR, dataset_splits, to_schema_dataset, write_inputs


def image(colour="red"):
    return Image.new("RGB", (8, 8), colour)


def test_a_list_of_dicts_becomes_schema_rows():
    rows = [{"id": "a", "image": image(), "problem": "<image> colour?", "answer": "red", "task": "colour",
             "level": 2, "reward": {"weights": {"format": 0.0}}},
            {"id": "b", "images": [image("blue"), image()], "problem": "p", "answer": "blue", "task": "colour",
             "meta": {"source_id": 7}, "data_source": "mine"}]
    ds = to_schema_dataset(rows, "train_dataset")
    assert ds.features == SCHEMA_FEATURES
    a, b = validate_row(ds[0], 0), validate_row(ds[1], 1)
    assert len(a.images) == 1 and a.images[0].getpixel((0, 0)) == (255, 0, 0)
    assert a.meta == {"level": 2} and a.reward == {"weights": {"format": 0.0}}
    assert a.data_source == "colour"  # empty: the task, as for any schema-v1 row
    assert len(b.images) == 2 and b.meta == {"source_id": 7} and b.data_source == "mine" and b.reward is None


def test_a_dataset_with_an_image_column_and_extra_columns():
    ds = datasets.Dataset.from_dict({"id": ["a", "b"], "image": [image(), image("green")], "problem": ["p", "q"],
                                     "answer": ["red", "green"], "task": ["colour"] * 2, "solution": ["r", "g"]})
    out = to_schema_dataset(ds, "train_dataset")
    assert out.column_names == list(SCHEMA_FEATURES)
    rows = [validate_row(out[i], i) for i in range(2)]
    assert [r.meta for r in rows] == [{"solution": "r"}, {"solution": "g"}]
    assert rows[1].images[0].getpixel((0, 0)) == (0, 128, 0)


def test_missing_fields_and_bad_rows_are_named():
    with pytest.raises(SchemaError, match=r"row 'x' \(index 1\) has no field 'task'"):
        to_schema_dataset([{"id": "w", "images": [], "problem": "p", "answer": "a", "task": "t"},
                           {"id": "x", "images": [], "problem": "p", "answer": "a"}], "train_dataset")
    with pytest.raises(SchemaError, match="row at index 0 must be a dict"):
        to_schema_dataset(["not a row"], "train_dataset")
    with pytest.raises(SchemaError, match="missing required columns \\['answer'\\]"):
        to_schema_dataset(datasets.Dataset.from_dict({"id": ["a"], "images": [[]], "problem": ["p"], "task": ["t"]}),
                          "train_dataset")
    with pytest.raises(SchemaError, match="field 'meta' must be a dict"):
        to_schema_dataset([{"id": "a", "images": [], "problem": "p", "answer": "a", "task": "t", "meta": [1]}], "x")


def test_splits_from_a_dataset_dict_or_separate_datasets():
    row = {"id": "a", "images": [], "problem": "p", "answer": "a", "task": "t"}
    both = dataset_splits({"train": [row], "test": [dict(row, id="b")]}, None, "train", "test")
    assert sorted(both) == ["test", "train"] and both["test"][0]["id"] == "b"
    separate = dataset_splits([row], [dict(row, id="c")], "train", "test")
    assert separate["test"][0]["id"] == "c"
    with pytest.raises(SchemaError, match="no split 'train'"):
        dataset_splits(datasets.DatasetDict(validation=to_schema_dataset([row], "x")), None, "train", "test")


def test_written_into_the_run_and_named_by_the_config(tmp_path):
    cfg = load_config(overrides=[f"trainer.output_dir={tmp_path}"])
    row = {"id": "a", "image": image(), "problem": "p", "answer": "a", "task": "t", "extra": [1, 2]}
    out = write_inputs(cfg, tmp_path, is_main=True, resume=False, train_dataset=[row])
    assert out.data.path == str(tmp_path / DATA_DIR) and cfg.data.path == "synthetic"  # the caller's cfg untouched
    assert out.data.eval_split == ""  # no held-out rows given: no evaluation
    loaded = load_rows(out.data.path, out.data.train_split)
    assert json.loads(loaded[0]["meta"]) == {"extra": [1, 2]}
    with pytest.raises(ValueError, match="eval_dataset without train_dataset"):
        write_inputs(cfg, tmp_path, True, False, eval_dataset=[row])
    with pytest.raises(ValueError, match="processor without model"):
        write_inputs(cfg, tmp_path, True, False, processor=object())
