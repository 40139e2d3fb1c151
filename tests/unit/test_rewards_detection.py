"""The ``detection`` and ``map`` rewards: matching, the V-Triune score and COCO-style mAP, by hand.

Most boxes span y 0..10, so an IoU is the overlap of two x-intervals over their union.
"""

import json

import numpy as np
import pytest

from vlrl.rewards import RewardInput, get_reward, registered_rewards
from vlrl.rewards.average_precision import interpolated_ap, mean_average_precision, ranked_hits
from vlrl.rewards.boxes import Box
from vlrl.rewards.detection import Match, detection_score, match_greedy, match_optimal, pair_ious

detection = get_reward("detection")
map_reward = get_reward("map")


def box(x1, x2, label=None, score=None, y1=0, y2=10):
    return Box((float(x1), float(y1), float(x2), float(y2)), label, score)


def boxes_json(*items):
    """JSON of (x1, x2[, label[, score]]) tuples in the Qwen2.5-VL object form."""
    out = []
    for x1, x2, *rest in items:
        obj = {"bbox_2d": [x1, 0, x2, 10]}
        if rest:
            obj["label"] = rest[0]
        if len(rest) > 1:
            obj["confidence"] = rest[1]
        out.append(obj)
    return json.dumps(out)


def run(fn, completion, answer, image_sizes=(), resized_sizes=(), progress=0.0, **params):
    inp = RewardInput(completion=completion, answer=answer, task="detection", image_sizes=image_sizes,
                      resized_sizes=resized_sizes, progress=progress)
    return fn(inp, **params)


def test_registered():
    assert {"detection", "map", "iou"} <= set(registered_rewards())


# The crafted case where greedy and optimal differ. Truths A = x[0,10], B = x[2,12]; predictions
# p1 = x[0,11], p2 = x[-2,8]:
#   IoU(p1, A) = 10/11   (inter [0,10] = 10, union [0,11] = 11)
#   IoU(p1, B) = 9/12    (inter [2,11] = 9, union [0,12] = 12)
#   IoU(p2, A) = 8/12    (inter [0,8] = 8, union [-2,10] = 12)
#   IoU(p2, B) = 6/14    (inter [2,8] = 6, union [-2,12] = 14) < 0.5: not allowed
# Greedy takes p1-A (the largest IoU) and leaves p2 nothing; optimal takes p1-B + p2-A = 3/4 + 2/3 = 17/12.
TRUTHS_AB = [box(0, 10), box(2, 12)]
PREDS_12 = [box(0, 11), box(-2, 8)]


def test_greedy_and_optimal_differ():
    assert match_greedy(PREDS_12, TRUTHS_AB, 0.5) == [Match(0, 0, pytest.approx(10 / 11))]
    assert sorted(match_optimal(PREDS_12, TRUTHS_AB, 0.5)) == [
        Match(0, 1, pytest.approx(9 / 12)), Match(1, 0, pytest.approx(8 / 12))]


MATCH_CASES = [
    # (preds, truths, threshold, expected (pred, truth) pairs for greedy == optimal)
    ([box(0, 10)], [box(0, 10)], 0.5, [(0, 0)]),
    ([box(0, 10)], [box(0, 4)], 0.5, []),  # IoU 4/10 < 0.5
    ([box(0, 10)], [box(20, 30)], 0.0, []),  # threshold 0 still never pairs disjoint boxes
    ([box(0, 10, "dog")], [box(0, 10, "cat")], 0.5, []),  # both labelled, labels differ
    ([box(0, 10, " CAT ")], [box(0, 10, "cat")], 0.5, [(0, 0)]),  # normalised case and whitespace
    ([box(0, 10)], [box(0, 10, "cat")], 0.5, [(0, 0)]),  # one side unlabelled: geometry decides
    ([box(0, 10), box(0, 10)], [box(0, 10)], 0.5, [(0, 0)]),  # one-to-one: the duplicate stays unmatched
    ([box(20, 30), box(0, 10)], [box(0, 10), box(20, 30)], 0.5, [(0, 1), (1, 0)]),
    ([], [box(0, 10)], 0.5, []),
]


@pytest.mark.parametrize("preds,truths,threshold,expected", MATCH_CASES)
def test_matching(preds, truths, threshold, expected):
    for matcher in (match_greedy, match_optimal):
        assert sorted((m.pred, m.truth) for m in matcher(preds, truths, threshold)) == expected


def test_pair_ious_label_mask():
    preds = [box(0, 10, "cat"), box(0, 10, "Dog"), box(0, 10)]
    truths = [box(0, 10, "dog"), box(0, 10)]
    ious, allowed = pair_ious(preds, truths, 0.5)
    assert ious.tolist() == [[1.0, 1.0]] * 3
    assert allowed.tolist() == [[False, True], [True, True], [True, True]]


SCORE_CASES = [
    # (preds, truths, threshold, params, expected); defaults: optimal, cw 0.5, count penalty 0.6.
    # score = [(1 - cw) * sum(IoU)/n_gt + cw * (1 - (miss + false_alarm)/2)] * 0.6^|n_pred - n_gt|
    ([box(0, 10)], [box(0, 10)], 0.5, {}, 1.0),  # 0.5*1 + 0.5*1
    ([box(0, 8)], [box(0, 10)], 0.5, {}, 0.9),  # IoU 8/10: 0.5*0.8 + 0.5*1
    ([box(0, 4)], [box(0, 10)], 0.5, {}, 0.0),  # IoU 0.4 < 0.5: no match, miss 1, fa 1 -> completeness 0
    ([box(0, 4)], [box(0, 10)], 0.3, {}, 0.7),  # matched at 0.3: 0.5*0.4 + 0.5*1
    ([box(0, 10), box(50, 60)], [box(0, 10)], 0.5, {}, 0.525),  # fa 1/2: (0.5 + 0.5*0.75) * 0.6
    ([box(0, 10), box(50, 60)], [box(0, 10)], 0.5, {"count_penalty": 1.0}, 0.875),  # 0.5 + 0.5*0.75
    ([box(0, 10), box(50, 60)], [box(0, 10)], 0.5, {"completeness_weight": 0.0}, 0.6),  # 1 * 0.6
    # With both guards off, spam costs nothing: why completeness_weight defaults to 0.5.
    ([box(0, 10), box(50, 60)], [box(0, 10)], 0.5, {"completeness_weight": 0.0, "count_penalty": 1.0}, 1.0),
    ([box(0, 10)], [box(0, 10), box(50, 60)], 0.5, {}, 0.375),  # iou 1/2, miss 1/2: (0.25 + 0.5*0.75) * 0.6
    ([box(0, 10)], [box(0, 10), box(50, 60)], 0.5, {"completeness_weight": 1.0}, 0.45),  # 0.75 * 0.6
    ([box(0, 10), box(50, 60), box(70, 80)], [box(0, 10)], 0.5, {}, 0.3),  # fa 2/3: (0.5 + 0.5*(1 - 1/3)) * 0.6^2 = (5/6) * 0.36
    (PREDS_12, TRUTHS_AB, 0.5, {"match": "greedy"}, 21 / 44),  # iou (10/11)/2, completeness 1/2: 5/22 + 1/4
    (PREDS_12, TRUTHS_AB, 0.5, {"match": "optimal"}, 41 / 48),  # iou (17/12)/2 = 17/24, completeness 1: 17/48 + 1/2
    ([box(0, 10, "dog")], [box(0, 10, "cat")], 0.5, {}, 0.0),  # label mismatch: no match
    ([], [box(0, 10)], 0.5, {}, 0.0),  # no predictions
    ([], [], 0.5, {}, 1.0),  # nothing to find, nothing found
    ([box(0, 10)], [], 0.5, {}, 0.0),  # a box where there is nothing
]


@pytest.mark.parametrize("preds,truths,threshold,params,expected", SCORE_CASES)
def test_detection_score(preds, truths, threshold, params, expected):
    assert detection_score(preds, truths, threshold, **params) == pytest.approx(expected)


GT_ONE = boxes_json((0, 10, "cat"))
REWARD_CASES = [
    # (completion, ground truth, params, expected) through the registered reward
    (f"<answer>{boxes_json((0, 10, 'cat'))}</answer>", GT_ONE, {}, 1.0),
    (f"<answer>{boxes_json((0, 8, 'cat'))}</answer>", GT_ONE, {}, 0.9),  # see SCORE_CASES
    ("<answer>[[0,0,10,10]]</answer>", GT_ONE, {}, 1.0),  # unlabelled prediction
    (f"<answer>{boxes_json((0, 10, 'dog'))}</answer>", GT_ONE, {}, 0.0),  # label mismatch
    ("<answer>I see no cat.</answer>", GT_ONE, {}, 0.0),  # no boxes
    ("<answer>[]</answer>", GT_ONE, {}, 0.0),
    ("[[0,0,10,10]]", GT_ONE, {}, 1.0),  # no tags: the completion is read
    ("[[0,0,10,10]]", GT_ONE, {"fallback_to_completion": False}, 0.0),
    ("<answer>[]</answer>", "[]", {}, 1.0),  # empty ground truth
    ("<answer>nothing here</answer>", "[]", {}, 1.0),
    ("<answer>[[0,0,10,10]]</answer>", "[]", {}, 0.0),
    ("<answer>[0,0,10,10] [0,0,10,10] [0,0,10,10]</answer>", "[[0,0,10,10]]", {"max_boxes": 2}, 0.0),  # spam
    # Allowed at max_boxes 3: 1 match, fa 2/3 -> (0.5 + 0.5*(1 - 1/3)) * 0.6^2 = (5/6) * 0.36 = 0.3
    ("<answer>[0,0,10,10] [0,0,10,10] [0,0,10,10]</answer>", "[[0,0,10,10]]", {"max_boxes": 3}, 0.3),
    (f"<answer>{json.dumps([[0, 0, 11, 10], [-2, 0, 8, 10]])}</answer>", "[[0,0,10,10],[2,0,12,10]]",
     {"match": "greedy"}, 21 / 44),
    (f"<answer>{json.dumps([[0, 0, 11, 10], [-2, 0, 8, 10]])}</answer>", "[[0,0,10,10],[2,0,12,10]]", {}, 41 / 48),
    ("<answer>[[0,0,10,1e400]]</answer>", GT_ONE, {}, 0.0),  # the only box is dropped
]


@pytest.mark.parametrize("completion,answer,params,expected", REWARD_CASES)
def test_detection_reward(completion, answer, params, expected):
    assert run(detection, completion, answer, **params) == pytest.approx(expected)


DYNAMIC_CASES = [
    # (predicted x2 against the truth x[0,10], progress, expected). Schedule 0.85 / 0.95 / 0.99.
    (9, 0.05, 0.95),  # IoU 0.9 >= 0.85: 0.5*0.9 + 0.5*1
    (9, 0.2, 0.0),  # 0.9 < 0.95: unmatched, completeness 0
    (9, 0.5, 0.0),
    (9.6, 0.05, 0.98),  # IoU 0.96: 0.5*0.96 + 0.5
    (9.6, 0.2, 0.98),  # 0.96 >= 0.95
    (9.6, 0.5, 0.0),  # 0.96 < 0.99
    (10, 0.5, 1.0),
]


@pytest.mark.parametrize("x2,progress,expected", DYNAMIC_CASES)
def test_detection_dynamic_threshold(x2, progress, expected):
    got = run(detection, f"[[0,0,{x2},10]]", "[[0,0,10,10]]", progress=progress, iou_threshold="dynamic")
    assert got == pytest.approx(expected)


FORMAT_CASES = [
    # (prediction in the model frame, box_format, original (w, h), resized (w, h)); each maps to [0,0,10,10]
    ("[[0,0,10,10]]", "abs", (), ()),
    ("[[0,0,5,5]]", "qwen2_5_vl", (200, 100), (100, 50)),  # x * 200/100, y * 100/50
    ("[[0,0,50,100]]", "rel1000", (200, 100), ()),  # x * 0.2, y * 0.1
    ("[[0,0,0.05,0.1]]", "rel1", (200, 100), ()),  # x * 200, y * 100
]


@pytest.mark.parametrize("pred,box_format,orig,resized", FORMAT_CASES)
def test_box_formats(pred, box_format, orig, resized):
    kw = {"image_sizes": (orig,) if orig else (), "resized_sizes": (resized,) if resized else ()}
    for fn in (detection, map_reward):
        assert run(fn, pred, "[[0,0,10,10]]", box_format=box_format, **kw) == pytest.approx(1.0)


@pytest.mark.parametrize("params,message", [
    ({"match": "hungarian"}, "match must be"),
    ({"iou_threshold": "sometimes"}, "threshold must be"),
    ({"iou_threshold": None}, "may not be None"),
    ({"completeness_weight": 1.5}, "completeness_weight"),
    ({"count_penalty": 0.0}, "count_penalty"),
    ({"max_boxes": 0}, "max_boxes"),
    ({"box_format": "rel1000"}, "needs image_sizes"),  # raised for every completion, box or not
])
def test_detection_bad_params_raise(params, message):
    for completion in ("[[0,0,10,10]]", "no box"):
        with pytest.raises(ValueError, match=f"detection: .*{message}"):
            run(detection, completion, "[[0,0,10,10]]", **params)


def test_bad_ground_truth_raises():
    for fn, name in ((detection, "detection"), (map_reward, "map")):
        with pytest.raises(ValueError, match=f"{name}: ground truth"):
            run(fn, "[[0,0,10,10]]", "a cat")


AP_CASES = [
    # (hits in rank order, n_truth, expected 101-point AP)
    ([True], 1, 1.0),
    ([False, True], 1, 0.5),  # precision 0, 1/2; envelope 1/2 at every recall point
    ([True, False], 1, 1.0),  # a false positive after full recall costs nothing
    ([True], 2, 51 / 101),  # recall 1/2: points 0.00..0.50 (51 of them) at precision 1
    # recall 1/3, 1/3, 2/3; envelope 1, 2/3, 2/3: 34 points (0..0.33) at 1, 33 (0.34..0.66) at 2/3
    ([True, False, True], 3, (34 + 33 * 2 / 3) / 101),
    ([False], 1, 0.0),
    ([], 1, 0.0),
]


@pytest.mark.parametrize("hits,n_truth,expected", AP_CASES)
def test_interpolated_ap(hits, n_truth, expected):
    assert interpolated_ap(hits, n_truth) == pytest.approx(expected)


def test_ranked_hits_at_several_thresholds():
    ious = np.array([[0.7, 0.9], [0.95, 0.0]])
    # t = 0.5: p0 takes its best truth g1 (0.9), p1 takes g0 (0.95).
    # t = 0.92: p0 has nothing >= 0.92, p1 takes g0 (0.95).
    assert ranked_hits(ious, [0.5, 0.92]).tolist() == [[True, True], [False, True]]
    # One truth wanted by both: the higher-ranked prediction takes it, the second is a false positive.
    assert ranked_hits(np.array([[0.6], [0.9]]), [0.5]).tolist() == [[True, False]]


MAP_CASES = [
    # (preds, truths, thresholds or None for 0.50:0.05:0.95, expected)
    ([box(0, 10)], [box(0, 10)], None, 1.0),  # perfect at all 10 thresholds
    ([box(0, 7)], [box(0, 10)], None, 0.5),  # IoU 0.7: matches at 0.50..0.70 = 5 of 10
    ([box(0, 6)], [box(0, 10)], None, 0.3),  # IoU 0.6: 0.50, 0.55, 0.60 = 3 of 10
    ([box(0, 4)], [box(0, 10)], None, 0.0),  # IoU 0.4 < 0.5
    ([box(0, 7)], [box(0, 10)], [0.5], 1.0),
    ([box(0, 7)], [box(0, 10)], [0.75], 0.0),
    ([box(50, 60), box(0, 10)], [box(0, 10)], None, 0.5),  # wrong first: AP 1/2 at every threshold
    ([box(0, 10), box(50, 60)], [box(0, 10)], None, 1.0),  # right first
    ([box(50, 60, score=0.1), box(0, 10, score=0.9)], [box(0, 10)], None, 1.0),  # confidence reorders
    ([box(0, 10, score=0.1), box(50, 60, score=0.9)], [box(0, 10)], None, 0.5),  # ...both ways
    ([box(50, 60, score=0.1), box(0, 10)], [box(0, 10)], None, 0.5),  # one score missing: output order
    ([box(0, 10), box(0, 10)], [box(0, 10)], None, 1.0),  # a duplicate after full recall is free
    ([box(0, 10)], [box(0, 10), box(50, 60)], None, 51 / 101),  # half the truths found
    ([box(0, 10), box(50, 60)], [box(0, 10), box(50, 60)], None, 1.0),
    ([box(0, 10, "cat")], [box(0, 10, "cat"), box(50, 60, "dog")], None, 0.5),  # cat AP 1, dog AP 0
    ([box(0, 10, "dog")], [box(0, 10, "cat")], None, 0.0),  # label mismatch
    ([box(0, 10, "Cat ")], [box(0, 10, "cat")], None, 1.0),  # normalised labels
    ([box(0, 10, "cat")], [box(0, 10)], None, 1.0),  # unlabelled truths: prediction labels ignored
    # The unlabelled prediction competes for the cat (rank 1, exact: AP 1); "dog" has no truth class, ignored.
    ([box(0, 10), box(50, 60, "dog")], [box(0, 10, "cat")], None, 1.0),
    ([box(0, 10, "cat"), box(50, 60, "zebra")], [box(0, 10, "cat")], None, 1.0),  # class absent from GT: ignored
    # Three truths, hits T F T: the interpolated_ap case above at every threshold.
    ([box(0, 10), box(90, 99), box(20, 30)], [box(0, 10), box(20, 30), box(40, 50)], None, 56 / 101),
    ([], [box(0, 10)], None, 0.0),
    ([], [], None, 1.0),
    ([box(0, 10)], [], None, 0.0),
]


@pytest.mark.parametrize("preds,truths,thresholds,expected", MAP_CASES)
def test_mean_average_precision(preds, truths, thresholds, expected):
    kw = {} if thresholds is None else {"thresholds": thresholds}
    assert mean_average_precision(preds, truths, **kw) == pytest.approx(expected)


MAP_REWARD_CASES = [
    (f"<answer>{boxes_json((0, 10, 'cat', 0.9))}</answer>", GT_ONE, {}, 1.0),
    (f"<answer>{boxes_json((0, 7, 'cat'))}</answer>", GT_ONE, {}, 0.5),  # IoU 0.7, see MAP_CASES
    (f"<answer>{boxes_json((50, 60, 'cat', 0.2), (0, 10, 'cat', 0.8))}</answer>", GT_ONE, {}, 1.0),
    (f"<answer>{boxes_json((0, 7, 'cat'))}</answer>", GT_ONE, {"iou_thresholds": [0.5, 0.75]}, 0.5),  # 1 of 2
    ("<answer>no cat</answer>", GT_ONE, {}, 0.0),
    ("<answer>[]</answer>", "[]", {}, 1.0),
    ("<answer>[0,0,10,10] [0,0,10,10]</answer>", "[[0,0,10,10]]", {"max_boxes": 1}, 0.0),  # spam
    ("[[0,0,10,10]]", "[[0,0,10,10]]", {"fallback_to_completion": False}, 0.0),
]


@pytest.mark.parametrize("completion,answer,params,expected", MAP_REWARD_CASES)
def test_map_reward(completion, answer, params, expected):
    assert run(map_reward, completion, answer, **params) == pytest.approx(expected)


@pytest.mark.parametrize("thresholds", [[], [1.5], [-0.1]])
def test_map_bad_thresholds_raise(thresholds):
    with pytest.raises(ValueError, match="map: iou_thresholds"):
        run(map_reward, "[[0,0,10,10]]", "[[0,0,10,10]]", iou_thresholds=thresholds)


def test_accuracy_routes_detection_rows_here():
    accuracy = get_reward("accuracy")
    # IoU 0.8 (see SCORE_CASES): 0.9 at threshold 0.5; unmatched at 0.85 -> 0.0. The iou reward's
    # `threshold` is not a detection param, so the router drops it for this row.
    assert run(accuracy, "[[0,0,8,10]]", "[[0,0,10,10]]") == pytest.approx(0.9)
    assert run(accuracy, "[[0,0,8,10]]", "[[0,0,10,10]]", iou_threshold=0.85, threshold=0.1) == 0.0
    accuracy.check_params({"iou_threshold": "dynamic", "match": "greedy", "box_format": "rel1000"})


def test_map_unlabelled_predictions_compete_in_every_class():
    from vlrl.rewards import RewardInput, get_reward

    truth = '[{"bbox_2d": [10, 10, 50, 50], "label": "cat"}]'
    inp = RewardInput("<answer>[[10, 10, 50, 50]]</answer>", truth, "detection")
    # One class (cat), one unlabelled prediction matching the truth exactly: AP 1 at every threshold.
    assert get_reward("map")(inp) == 1.0
    # A wrong label still does not match.
    wrong = RewardInput('<answer>[{"bbox_2d": [10, 10, 50, 50], "label": "dog"}]</answer>', truth, "detection")
    assert get_reward("map")(wrong) == 0.0
