"""The orsta source: V-Triune parquet rows, reward_model kept, detection ground truth in original pixels."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sources_support import assert_schema_rows, drops_by_reason, pil, png_bytes

from data_pipelines.sources.annotations import SourceError
from data_pipelines.sources.orsta import OrstaOptions, load_orsta

NULL_RATIOS = {
    k: None for k in ("iou_max_label_first", "iou_max_iou_first", "iou_completeness", "map", "map50", "map75")
}


def _reward(truth, verifier, normalized=None, ratios=NULL_RATIOS):
    return {
        "ground_truth": truth,
        "verifier": verifier,
        "accuracy_ratio": 1.0,
        "format_ratio": 0.0,
        "verifier_parm": {"det_verifier_normalized": normalized, "det_reward_ratio": dict(ratios)},
    }


def _record(user, truth, verifier, size=(200, 40), normalized=None, image=None, system="Think first."):
    prompt = [{"role": "system", "content": system}] + ([{"role": "user", "content": user}] if user else [])
    return {
        "prompt": prompt,
        "images": [{"bytes": image or png_bytes(size), "path": "img.png"}],
        "reward_model": _reward(truth, verifier, normalized),
        "data_source": f"orsta_{verifier}",
        "ability": verifier,
        "extra_info": {"index": 0},
    }


@pytest.fixture
def orsta(tmp_path):
    records = [
        _record("<image>What is 1 + 2?", "3", "mathverify", size=(40, 30)),
        # 0-1000 normalised (det_verifier_normalized) on a 200x40 image: x * 0.2, y * 0.04.
        _record(
            "Find every cat.",
            "<answer>[{'bbox_2d': [100, 250, 500, 750], 'label': 'cat'}, "
            "{'bbox_2d': [0, 0, 1000, 1000], 'label': 'cat'}]</answer>",
            "detection",
            normalized=True,
        ),
        _record(
            "Find the dog.", '[{"bbox_2d": [10, 5, 50, 25], "label": "dog"}]', "detection", normalized=False
        ),
        _record("Find it.", "[{'bbox_2d': [0, 0, 1200, 500], 'label': 'x'}]", "detection", normalized=True),
        _record(None, "3", "mathverify"),
        _record("Broken?", "3", "mathverify", image=b"not an image"),
        _record("No truth?", "", "mathverify"),
    ]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "train.parquet")
    return tmp_path / "train.parquet"


def test_rows_and_drops(orsta):
    result = load_orsta(OrstaOptions(path=str(orsta)))
    rows = {row["id"]: row for row in result.rows}
    assert [(i, r["task"], r["data_source"]) for i, r in rows.items()] == [
        ("orsta:0", "math", "orsta_mathverify"),
        ("orsta:1", "detection", "orsta_detection"),
        ("orsta:2", "detection", "orsta_detection"),
    ]
    math = rows["orsta:0"]
    assert math["problem"] == "<image>What is 1 + 2?" and math["answer"] == "3"
    assert math["meta"] == {
        "ability": "mathverify",
        "extra_info": {"index": 0},
        "system_prompt": "Think first.",
    }
    assert math["reward"] == _reward("3", "mathverify")
    assert json.loads(rows["orsta:1"]["answer"]) == [
        {"bbox_2d": [20, 10, 100, 30], "label": "cat"},
        {"bbox_2d": [0, 0, 200, 40], "label": "cat"},
    ]
    assert json.loads(rows["orsta:2"]["answer"]) == [{"bbox_2d": [10, 5, 50, 25], "label": "dog"}]
    assert drops_by_reason(result) == {
        "box_outside_image": ["orsta:3"],
        "missing_question": ["orsta:4"],
        "undecodable_image": ["orsta:5"],
        "missing_answer": ["orsta:6"],
    }
    assert_schema_rows(result.rows)


def test_forced_frame_and_limits(orsta):
    # Read as absolute pixels, row 1's [100, 250, 500, 750] leaves the 200x40 image.
    result = load_orsta(OrstaOptions(path=str(orsta), gt_box_frame="abs", limit=2))
    assert [r["id"] for r in result.rows] == ["orsta:0"]
    assert drops_by_reason(result) == {"box_outside_image": ["orsta:1"]}
    with pytest.raises(SourceError, match="gt_box_frame"):
        load_orsta(OrstaOptions(path=str(orsta), gt_box_frame="rel1"))


def test_not_orsta_data(tmp_path):
    pq.write_table(pa.table({"question": ["q"]}), tmp_path / "other.parquet")
    with pytest.raises(SourceError, match=r"other.parquet: not V-Triune/Orsta data, missing columns"):
        load_orsta(OrstaOptions(path=str(tmp_path / "other.parquet")))


def test_rows_score_through_the_vtriune_reward_spec(orsta):
    from vlrl.config import RewardConfig
    from vlrl.rewards import RewardInput, RewardMixer

    rows = load_orsta(OrstaOptions(path=str(orsta))).rows
    inputs, specs = [], []
    for row in rows:
        size = pil(row["images"][0]).size
        # The truth itself as the answer; resized == original size, so qwen2_5_vl boxes need no scaling.
        inputs.append(
            RewardInput(
                f"<answer>{row['answer']}</answer>",
                row["answer"],
                row["task"],
                image_sizes=(size,),
                resized_sizes=(size,),
                progress=0.5,
            )
        )
        specs.append(json.loads(json.dumps(row["reward"])))  # as the row stores it on disk
    scores = RewardMixer(RewardConfig(workers=0)).score(inputs, specs)
    assert scores.total.tolist() == pytest.approx([1.0, 1.0, 1.0]) and scores.parse_failures == 0


def _released(truth, verifier, **over):
    """A reward_model as the released Orsta / V-Triune schema writes it: answer, style, length_ratio too."""
    reward = {"answer": truth, "ground_truth": truth, "accuracy_ratio": 1.0, "format_ratio": 0.1,
              "length_ratio": None, "style": "rule", "verifier": verifier,
              "verifier_parm": {"det_verifier_normalized": True, "det_reward_ratio": {
                  "iou_max_label_first": 1.0, "iou_max_iou_first": 0.0, "iou_completeness": 0.3,
                  "map": 0.0, "map50": 0.0, "map75": 0.0}}}
    reward.update(over)
    return reward


def test_released_reward_keys_checked_at_import(tmp_path):
    four = ("<answer>[{'bbox_2d': [484, 227, 818, 998], 'label': 'shiba dog'}, {'bbox_2d': [106, 142, 473, 998], "
            "'label': 'shiba dog'}, {'bbox_2d': [274, 468, 427, 652], 'label': 'dog collar'}, {'bbox_2d': "
            "[490, 522, 609, 611], 'label': 'dog collar'}]</answer>")
    rewards = [
        _released(four, "detection"),  # the published v3det example: 4 boxes, 0-1000
        _released(four, "detection", length_ratio=0.0),
        _released(four, "detection", length_ratio=0.5),  # a rule this package does not know: refused
        _released("\\boxed{4}", "mathverify", surprise=1),  # a key the schema does not have
        _released("4", "no_such_verifier"),
        _released(four, "detection", verifier_parm={"det_verifier_normalized": True, "iou_thresh": 0.5}),
    ]
    records = [{"prompt": [{"role": "user", "content": "<image>Locate every dog and collar."}],
                "images": [{"bytes": png_bytes((799, 533)), "path": None}], "reward_model": r,
                "data_source": "v3det_train", "ability": "cv_detection", "extra_info": {"id": None}}
               for r in rewards]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "train-00000-of-00001.parquet")
    result = load_orsta(OrstaOptions(path=str(tmp_path)))
    assert [r["id"] for r in result.rows] == ["orsta:0", "orsta:1"]
    boxes = [item["bbox_2d"] for item in json.loads(result.rows[0]["answer"])]
    assert boxes[0] == pytest.approx([484 * 0.799, 227 * 0.533, 818 * 0.799, 998 * 0.533], abs=0.01)
    assert len(result.rows[0]["answer"]) > 200  # the default max_answer_chars no longer applies to boxes
    details = {d.id: d.detail for d in result.drops}
    assert {d.reason for d in result.drops} == {"bad_reward"}
    assert "length_ratio" in details["orsta:2"] and "surprise" in details["orsta:3"]
    assert "no_such_verifier" in details["orsta:4"] and "iou_thresh" in details["orsta:5"]
