"""V-Triune reward_model objects as per-row reward specs."""

import pytest

from vlrl.config import RewardConfig
from vlrl.rewards import RewardInput, RewardMixer
from vlrl.rewards.vtriune import from_vtriune, is_vtriune


def test_detection_ratios_become_weighted_terms():
    spec = {"verifier": "detection", "accuracy_ratio": 0.8, "format_ratio": 0.2, "ground_truth": "ignored",
            "verifier_parm": {"det_verifier_normalized": True, "step": 3, "total_steps": 10,
                              "det_reward_ratio": {"iou_max_iou_first": 0.5, "iou_max_label_first": 0.0,
                                                   "iou_completeness": 0.3, "map": 0.25, "map50": 0.25}}}
    assert is_vtriune(spec)
    terms = from_vtriune(spec)["terms"]
    # Ratios sum to 0.5 + 0.25 + 0.25 = 1 (completeness is a param, not a ratio): weights 0.8 * ratio.
    assert terms == [
        {"name": "detection", "weight": 0.8 * 0.5, "params": {
            "iou_threshold": "dynamic", "box_format": "qwen2_5_vl", "completeness_weight": 0.3, "match": "greedy"}},
        {"name": "map", "weight": 0.8 * 0.25, "params": {"box_format": "qwen2_5_vl"}},
        {"name": "map", "weight": 0.8 * 0.25, "params": {"box_format": "qwen2_5_vl", "iou_thresholds": [0.5]}},
        {"name": "format", "weight": 0.2, "params": {}},
    ]


def test_ratios_are_normalised_by_their_sum():
    spec = {"verifier": "detection", "verifier_parm": {"det_reward_ratio": {"iou_max_iou_first": 2.0, "map75": 6.0}}}
    terms = from_vtriune(spec)["terms"]
    # accuracy_ratio defaults to 1: weights 2/8 and 6/8; no format_ratio -> no format term.
    assert [(t["name"], t["weight"]) for t in terms] == [("detection", 0.25), ("map", 0.75)]
    assert terms[1]["params"] == {"iou_thresholds": [0.75]}


def test_other_verifiers_pass_through_with_params():
    terms = from_vtriune({"verifier": "number", "verifier_parm": {"abs_tol": 0.5, "image_path": ["x.jpg"]}})["terms"]
    assert terms == [{"name": "number", "weight": 1.0, "params": {"abs_tol": 0.5}}]


@pytest.mark.parametrize("spec, message", [
    ({"verifier": ""}, "non-empty"),
    ({"verifier": "detection", "extra": 1}, "unknown keys"),
    ({"verifier": "number", "accuracy_ratio": "high"}, "finite number"),
    ({"verifier": "detection", "verifier_parm": {"det_reward_ratio": {"mAP": 1}}}, "unknown det_reward_ratio"),
    ({"verifier": "number", "verifier_parm": [1]}, "must be an object"),
])
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        from_vtriune(spec)


def test_mixer_scores_a_vtriune_row():
    # Truth box [0,0,10,10] in original pixels of a 20x20 image shown at 10x10; the model answers in
    # resized-input pixels [0,0,5,5] = [0,0,10,10] original: IoU 1, one box each -> detection 1.0.
    inp = RewardInput("<answer>[0, 0, 5, 5]</answer>", "[[0, 0, 10, 10]]", "detection",
                      image_sizes=((20, 20),), resized_sizes=((10, 10),), progress=0.5)
    spec = {"verifier": "detection", "accuracy_ratio": 0.9, "format_ratio": 0.1,
            "verifier_parm": {"det_verifier_normalized": True}}
    mixer = RewardMixer(RewardConfig(workers=0))
    scores = mixer.score([inp], [spec])
    # 0.9 * detection 1.0 + 0.1 * format 1.0 = 1.0
    assert scores.total.tolist() == pytest.approx([1.0])
    assert scores.components["detection"].tolist() == [1.0] and scores.parse_failures == 0
    # An unknown param in verifier_parm is an error naming the row.
    with pytest.raises(ValueError, match="row 0"):
        mixer.score([inp], [{"verifier": "detection", "verifier_parm": {"nonsense": 1}}])


def test_orsta_rows_with_null_fields():
    # Orsta rows carry det_verifier_normalized and det_reward_ratio (all null) whatever the verifier.
    nulls = {k: None for k in ("iou_max_label_first", "iou_max_iou_first", "iou_completeness", "map", "map50", "map75")}
    math_row = {"verifier": "mathverify", "accuracy_ratio": 1.0, "format_ratio": 0.0,
                "verifier_parm": {"det_verifier_normalized": None, "det_reward_ratio": nulls}}
    assert from_vtriune(math_row)["terms"] == [{"name": "math", "weight": 1.0, "params": {}}]
    RewardMixer(RewardConfig(workers=0)).terms_for("math", math_row)  # params accepted by `math`
    det_row = {"verifier": "detection", "verifier_parm": {"det_reward_ratio": {**nulls, "map": 1.0}}}
    assert [(t["name"], t["weight"]) for t in from_vtriune(det_row)["terms"]] == [("map", 1.0)]
    # Ratios given but no completeness: V-Triune's weight is 0, not this package's default 0.5.
    det_row["verifier_parm"]["det_reward_ratio"] = {"iou_max_iou_first": 1.0}
    assert from_vtriune(det_row)["terms"][0]["params"]["completeness_weight"] == 0.0
