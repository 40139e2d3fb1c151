"""Nothing disappears uncounted: every COCO image is a row or a drop, the card's totals add up (and a card
that does not is caught), box answers are not cut by the text-length limit, and the held-out split keeps
every question about one image on one side."""

from __future__ import annotations

import json

import pytest
from sources_support import drops_by_reason, write_image

from data_pipelines.build import build
from data_pipelines.card import check_totals
from data_pipelines.config import BuildConfig, CurateConfig
from data_pipelines.sources.coco import CocoOptions, load_coco


def _coco(tmp_path, n_images=6):
    images = tmp_path / "images"
    data = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    for i in range(1, n_images + 1):
        write_image(images / f"{i}.png", (120, 90), colour=(i * 30 % 255, 90, 200))
        data["images"].append({"id": i, "file_name": f"{i}.png", "width": 120, "height": 90})
    ann = 100
    for i in range(1, n_images):  # the last image has no annotation at all
        for k in range(4):  # four cats (detection + count, no grounding) and one dog (all three kinds)
            ann += 1
            data["annotations"].append({"id": ann, "image_id": i, "category_id": 1, "bbox": [k * 25, 5, 20, 30]})
        ann += 1
        data["annotations"].append({"id": ann, "image_id": i, "category_id": 2, "bbox": [10, 50, 30, 30]})
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path, images


def test_coco_image_without_annotations_is_a_drop(tmp_path):
    path, images = _coco(tmp_path, n_images=3)
    data = json.loads(path.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 2 or a["category_id"] == 1]
    data["annotations"].append({"id": 999, "image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1})
    path.write_text(json.dumps(data))
    result = load_coco(CocoOptions(annotations=str(path), image_root=str(images), kinds=("grounding",)))
    reasons = drops_by_reason(result)
    assert reasons["no_annotations"] == ["coco:3"]
    # image 2: four cats (no single-instance grounding) and a crowd region -> no question
    assert reasons["no_questions"] == ["coco:2"]
    accounted = {r["meta"]["image_id"] for r in result.rows} | {2, 3}
    assert accounted == {1, 2, 3}


def test_build_card_totals_add_up_and_detection_rows_survive(tmp_path):
    path, images = _coco(tmp_path)
    qa = tmp_path / "qa.jsonl"
    write_image(tmp_path / "q.png", (30, 30))
    qa.write_text("\n".join(json.dumps(r) for r in [
        {"img": "q.png", "q": "How many?", "a": "3"},
        {"img": "q.png", "q": "Long?", "a": "x" * 300},  # a text answer over the limit: curate drops it
        {"img": "gone.png", "q": "Where?", "a": "1"},  # a source drop
    ]) + "\n")
    cfg = BuildConfig(output_dir=str(tmp_path / "out"), curate=CurateConfig(eval_fraction=0.4), sources=[
        {"kind": "coco", "params": {"annotations": str(path), "image_root": str(images)}},
        {"kind": "folder", "name": "qa", "params": {"annotations": str(qa), "task": "count",
                                                     "columns": {"image": "img", "problem": "q", "answer": "a"}}},
    ])
    card = build(cfg)
    assert check_totals(card) == []
    collect, curate_stage = card["stages"][0], card["stages"][-1]
    assert collect["stats"]["sources"]["coco"]["source_drops"] == 1  # the image with no annotation
    assert curate_stage["drops"] == {"answer_too_long": 1}
    assert curate_stage["per_source"]["qa"] == {"in": 2, "out": 1, "dropped": 1}
    # Five 4-cat detection answers (~160+ characters each) are kept whatever max_answer_chars says.
    assert card["outputs"]["rl_train"]["task"].get("detection", 0) + card["outputs"]["rl_test"]["task"].get(
        "detection", 0) == 10
    drops = [json.loads(line) for line in (tmp_path / "out" / "drops.jsonl").read_text().splitlines()]
    assert all(d["id"] and d["reason"] for d in drops)
    assert card["dropped"] == len(drops)


def test_check_totals_catches_a_lost_row():
    card = {"stages": [
        {"stage": "collect", "rows_in": 3, "rows_out": 3, "per_source": {}, "drops_by_step": {},
         "stats": {"sources": {"a": {"rows_in": 4, "rows": 3, "collect_drops": 0}}}},
        {"stage": "curate", "rows_in": 3, "rows_out": 1, "drops_by_step": {"curate": {"duplicate": 1}},
         "per_source": {"a": {"in": 3, "out": 1, "dropped": 1}}, "stats": {}},
    ]}
    problems = check_totals(card)
    assert len(problems) == 3
    assert "source 'a': 4 rows in != 3 kept + 0 dropped" in problems[0]
    assert "curate: 3 rows in != 1 out + 1 dropped" in problems[1]


def test_held_out_split_groups_questions_by_image(tmp_path):
    path, images = _coco(tmp_path, n_images=12)
    cfg = BuildConfig(output_dir=str(tmp_path / "out"), curate=CurateConfig(eval_fraction=0.3), sources=[
        {"kind": "coco", "params": {"annotations": str(path), "image_root": str(images)}}])
    build(cfg)
    import datasets

    rl = datasets.load_from_disk(str(tmp_path / "out" / "rl"))
    image_of = lambda split: {json.loads(m)["image_id"] for m in rl[split]["meta"]}  # noqa: E731
    train, test = image_of("train"), image_of("test")
    assert train and test, "both sides should hold images at this fraction"
    assert not train & test  # no image has questions on both sides
    assert len(rl["train"]) + len(rl["test"]) == 11 * 5  # every question of the 11 annotated images


@pytest.mark.parametrize("meta,expected", [({"split_group": "ref7"}, ("group:ref7", False)),
                                           ({"heldout": True, "split_group": 3}, ("group:3", True))])
def test_split_group_from_meta(meta, expected):
    from data_pipelines.stages.curate import split_group

    assert split_group({"id": "x", "images": [], "meta": json.dumps(meta)}) == expected
