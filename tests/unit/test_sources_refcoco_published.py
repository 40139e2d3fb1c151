"""RefCOCO as published: the refer toolkit's refs(unc).p pickle (written the way Python 2 wrote it) joined with
instances.json, the lmms-lab parquet re-release (xywh boxes, expressions in `answer`, split in the file name)
and jxu124's (xyxy boxes, `sentences`, a `split` column, `image_path`); the refs' own splits kept, and a pickle
that names a global refused without running it."""

from __future__ import annotations

import json
import pickle
import struct

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sources_support import assert_schema_rows, drops_by_reason, png_bytes, write_image

from data_pipelines.sources.annotations import SourceError
from data_pipelines.sources.refcoco import RefCocoOptions, load_refcoco


def py2_pickle(obj) -> bytes:
    """``obj`` as Python 2's cPickle (protocol 2) wrote it: ``str`` as SHORT_BINSTRING/BINSTRING bytes."""
    out = bytearray(b"\x80\x02")

    def put(value):
        if isinstance(value, dict):
            out.extend(b"}(")
            for k, v in value.items():
                put(k)
                put(v)
            out.extend(b"u")
        elif isinstance(value, list):
            out.extend(b"](")
            for v in value:
                put(v)
            out.extend(b"e")
        elif isinstance(value, str):
            data = value.encode("utf-8")
            out.extend(b"U" + bytes([len(data)]) + data if len(data) < 256 else b"T" + struct.pack("<i", len(data)) + data)
        elif isinstance(value, bool) or value is None:
            out.extend({True: b"\x88", False: b"\x89", None: b"N"}[value])
        elif isinstance(value, int):
            out.extend(b"J" + struct.pack("<i", value))
        elif isinstance(value, float):
            out.extend(b"G" + struct.pack(">d", value))
        else:
            raise TypeError(type(value))

    put(obj)
    out.extend(b".")
    return bytes(out)


def _ref(ref_id, ann_id, image_id, split, sents):
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "category_id": 1, "split": split,
            "sent_ids": [ref_id * 10 + i for i in range(len(sents))],
            "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
            "sentences": [{"tokens": s.split(), "raw": s.upper(), "sent_id": ref_id * 10 + i, "sent": s}
                          for i, s in enumerate(sents)]}


@pytest.fixture
def refer(tmp_path):
    images = tmp_path / "images" / "mscoco" / "images" / "train2014"
    for image_id in (1, 2, 3):
        write_image(images / f"COCO_train2014_{image_id:012d}.jpg", (160, 120), colour=(image_id * 60, 10, 10))
    data = tmp_path / "refcoco"
    data.mkdir()
    instances = {
        "images": [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "width": 160, "height": 120}
                   for i in (1, 2, 3)],
        "annotations": [{"id": 101, "image_id": 1, "category_id": 1, "bbox": [10.5, 20.25, 30, 40], "iscrowd": 0},
                        {"id": 102, "image_id": 2, "category_id": 1, "bbox": [0, 0, 160, 120], "iscrowd": 0},
                        {"id": 103, "image_id": 3, "category_id": 1, "bbox": [150, 100, 30, 30], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }
    (data / "instances.json").write_text(json.dumps(instances))
    refs = [_ref(1, 101, 1, "train", ["man on left", "guy in red café"]),
            _ref(2, 102, 2, "testA", ["whole thing"]),
            _ref(3, 103, 3, "train", ["off the edge"]),  # box leaves the 160x120 image
            _ref(4, 999, 1, "val", ["no such annotation"]),
            _ref(5, 101, 1, "testB", ["another ref of the same man"])]
    (data / "refs(unc).p").write_bytes(py2_pickle(refs))
    return data, images


def test_refer_layout_pickle_and_instances(refer):
    data, images = refer
    result = load_refcoco(RefCocoOptions(annotations=str(data / "refs(unc).p"), image_root=str(images)))
    rows = {row["id"]: row for row in result.rows}
    assert list(rows) == ["refcoco:1", "refcoco:1:1", "refcoco:2", "refcoco:5"]
    # instances.json bbox [10.5, 20.25, 30, 40] (xywh) -> [10.5, 20.25, 40.5, 60.25]
    assert json.loads(rows["refcoco:1"]["answer"]) == pytest.approx([10.5, 20.25, 40.5, 60.25], abs=0.01)
    assert rows["refcoco:1:1"]["meta"]["expression"] == "guy in red café"  # Python 2 UTF-8 bytes decoded
    assert rows["refcoco:1"]["meta"]["split"] == "train" and "heldout" not in rows["refcoco:1"]["meta"]
    assert rows["refcoco:2"]["meta"]["heldout"] is True and rows["refcoco:5"]["meta"]["heldout"] is True
    assert rows["refcoco:1"]["meta"]["category"] == "person"
    assert drops_by_reason(result) == {"box_outside_image": ["refcoco:3"], "unknown_annotation": ["refcoco:4"]}
    assert_schema_rows(result.rows)


def test_refer_layout_excluded_splits_and_py3_pickle(refer, tmp_path):
    data, images = refer
    refs = pickle.loads(pickle.dumps([_ref(2, 102, 2, "testB", ["whole thing"]),
                                      _ref(1, 101, 1, "train", ["man"])], protocol=4))
    (data / "refs(umd).p").write_bytes(pickle.dumps(refs, protocol=4))
    result = load_refcoco(RefCocoOptions(annotations=str(data / "refs(umd).p"), image_root=str(images),
                                         exclude_splits=("testA", "testB"), heldout_splits=()))
    assert [r["id"] for r in result.rows] == ["refcoco:1"]
    assert drops_by_reason(result) == {"excluded_split": ["refcoco:2"]}


def test_pickle_naming_a_global_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([Evil()], protocol=2))
    (tmp_path / "instances.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(SourceError, match=r"refs\(unc\)\.p.*refuses the global"):
        load_refcoco(RefCocoOptions(annotations=str(path)))
    assert not marker.exists()


def test_lmms_lab_parquet(tmp_path):
    # lmms-lab/RefCOCO: question (a fixed REG prompt), answer (the expressions), bbox [x, y, w, h], image struct.
    image = png_bytes((100, 80))
    table = pa.table({
        "question_id": ["7", "8"],
        "image": [{"bytes": image, "path": None}, {"bytes": image, "path": None}],
        "question": ["Please carefully observe the area circled in the image and come up with a caption."] * 2,
        "answer": [["left dog", "brown dog"], ["right dog"]],
        "segmentation": [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]],
        "bbox": [[5.5, 6.0, 20.0, 30.0], [90.0, 0.0, 20.0, 10.0]],  # the second leaves the image
        "iscrowd": [0, 0],
        "file_name": ["COCO_train2014_000000000001_17.jpg"] * 2,
    })
    folder = tmp_path / "RefCOCO" / "data"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "testA-00000-of-00001.parquet")
    result = load_refcoco(RefCocoOptions(annotations=str(tmp_path / "RefCOCO")))
    assert [r["id"] for r in result.rows] == ["refcoco:7", "refcoco:7:1"]
    assert json.loads(result.rows[0]["answer"]) == pytest.approx([5.5, 6.0, 25.5, 36.0], abs=0.01)
    assert "left dog" in result.rows[0]["problem"] and "caption" not in result.rows[0]["problem"]
    assert result.rows[0]["meta"]["split"] == "testA" and result.rows[0]["meta"]["heldout"] is True
    assert "image" not in result.rows[0]["meta"]  # the pixels are not copied into meta
    assert drops_by_reason(result) == {"box_outside_image": ["refcoco:8"]}
    assert_schema_rows(result.rows)


def test_jxu124_parquet_xyxy(tmp_path):
    write_image(tmp_path / "coco" / "train2014" / "COCO_train2014_000000000005.jpg", (64, 48))
    sentences = [{"raw": "The cup.", "sent": "the cup", "sent_id": 1, "tokens": ["the", "cup"]}]
    table = pa.table({
        "ref_id": [3], "ann_id": [9], "image_id": [5], "split": ["val"],
        "file_name": ["COCO_train2014_000000000005_9.jpg"],  # the ref's name: no such file
        "image_path": ["coco/train2014/COCO_train2014_000000000005.jpg"],
        "sentences": [sentences], "captions": [["the cup"]],
        "bbox": [[4.0, 8.0, 30.25, 40.0]], "raw_anns": ['{"bbox": [4, 8, 26.25, 32]}'],
    })
    pq.write_table(table, tmp_path / "val.parquet")
    result = load_refcoco(RefCocoOptions(annotations=str(tmp_path / "val.parquet"), image_root=str(tmp_path),
                                         box_format="xyxy"))
    assert json.loads(result.rows[0]["answer"]) == pytest.approx([4, 8, 30.25, 40], abs=0.01)
    assert result.rows[0]["meta"]["heldout"] is True
