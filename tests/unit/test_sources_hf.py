"""The hf source: save_to_disk folders and parquet files, images as Image features, bytes or paths."""

from __future__ import annotations

import datasets
import PIL.Image
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sources_support import assert_schema_rows, drops_by_reason, pil, png_bytes, write_image

from data_pipelines.sources.annotations import SourceError
from data_pipelines.sources.hf import HFOptions, load_hf

COLUMNS = {"image": "image", "problem": "question", "answer": "label"}


def test_save_to_disk_with_image_features(tmp_path):
    features = datasets.Features(
        {"image": datasets.Image(), "question": datasets.Value("string"), "label": datasets.Value("int64")}
    )
    good = PIL.Image.new("L", (12, 9), 128)  # greyscale: the source converts it to RGB
    train = datasets.Dataset.from_dict(
        {
            "image": [good, {"bytes": b"garbage", "path": None}],
            "question": ["How many?", "And here?"],
            "label": [4, 5],
        },
        features=features,
    )
    datasets.DatasetDict(train=train, test=train.select([0])).save_to_disk(str(tmp_path / "ds"))
    result = load_hf(HFOptions(columns=COLUMNS, path=str(tmp_path / "ds"), task="count"), name="counts")
    assert [(r["id"], r["answer"], pil(r["images"][0]).mode, pil(r["images"][0]).size) for r in result.rows] == [
        ("counts:0", "4", "RGB", (12, 9))
    ]
    assert drops_by_reason(result) == {
        "undecodable_image": ["counts:1"]
    }  # a corrupt image drops its row only
    assert_schema_rows(result.rows)
    test = load_hf(HFOptions(columns=COLUMNS, path=str(tmp_path / "ds"), task="count", split="test"))
    assert len(test.rows) == 1
    with pytest.raises(SourceError, match="no split 'val'"):
        load_hf(HFOptions(columns=COLUMNS, path=str(tmp_path / "ds"), task="count", split="val"))


def test_parquet_with_bytes_lists_and_paths(tmp_path):
    write_image(tmp_path / "pics" / "p.png", (8, 8))
    table = pa.table(
        {
            "pics": [
                [{"bytes": png_bytes((5, 4)), "path": "x.png"}],
                [{"bytes": None, "path": "p.png"}, {"bytes": None, "path": "p.png"}],
                [],
            ],
            "q": ["Colour?", "Same? <image> <image>", "Nothing?"],
            "a": ["green", "yes", "no"],
            "kind": ["open", "yes_no", "yes_no"],
            "id": ["a", "b", "c"],
        }
    )
    pq.write_table(table, tmp_path / "train-00000-of-00001.parquet")
    columns = {"image": "pics", "problem": "q", "answer": "a", "task": "kind", "id": "id"}
    result = load_hf(HFOptions(columns=columns, path=str(tmp_path), image_root=str(tmp_path / "pics")))
    assert [(r["id"], r["task"], [pil(im).size for im in r["images"]]) for r in result.rows] == [
        ("hf:a", "open", [(5, 4)]),
        ("hf:b", "yes_no", [(8, 8), (8, 8)]),
    ]
    assert drops_by_reason(result) == {"missing_image": ["hf:c"]}
    assert_schema_rows(result.rows)


def test_parquet_with_raw_bytes_and_path_strings(tmp_path):
    write_image(tmp_path / "p.png", (6, 7))
    pq.write_table(
        pa.table({"raw": [png_bytes((3, 2)), b"junk"], "q": ["A?", "B?"], "a": ["1", "2"]}),
        tmp_path / "bytes.parquet",
    )
    result = load_hf(
        HFOptions(
            columns={"image": "raw", "problem": "q", "answer": "a"},
            path=str(tmp_path / "bytes.parquet"),
            task="number",
        )
    )
    assert [pil(r["images"][0]).size for r in result.rows] == [(3, 2)]
    assert drops_by_reason(result) == {"undecodable_image": ["hf:1"]}
    pq.write_table(pa.table({"file": ["p.png"], "q": ["A?"], "a": ["1"]}), tmp_path / "paths.parquet")
    result = load_hf(
        HFOptions(
            columns={"image": "file", "problem": "q", "answer": "a"},
            path=str(tmp_path / "paths.parquet"),
            task="number",
            image_root=str(tmp_path),
        )
    )
    assert [pil(r["images"][0]).size for r in result.rows] == [(6, 7)]
    assert_schema_rows(result.rows)


def test_bad_options(tmp_path):
    with pytest.raises(SourceError, match="exactly one of 'path'"):
        load_hf(HFOptions(columns=COLUMNS, task="open"))
    with pytest.raises(SourceError, match="task"):
        load_hf(HFOptions(columns=COLUMNS, path=str(tmp_path)))
    with pytest.raises(SourceError, match="no .parquet files"):
        load_hf(HFOptions(columns=COLUMNS, path=str(tmp_path), task="open"))
