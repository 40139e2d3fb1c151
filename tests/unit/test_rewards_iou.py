"""The ``iou`` reward: box parsing, IoU arithmetic, frame conversion, thresholds."""

import pytest

from vlrl.rewards import RewardInput, get_reward
from vlrl.rewards.iou import box_iou, parse_box, to_original_pixels

iou = get_reward("iou")


def run(completion, answer, image_sizes=(), resized_sizes=(), **params):
    inp = RewardInput(completion=completion, answer=answer, task="grounding",
                      image_sizes=image_sizes, resized_sizes=resized_sizes)
    return iou(inp, **params)


IOU_CASES = [
    # (a, b, expected)  with the hand derivation beside each
    ((0, 0, 10, 10), (5, 5, 15, 15), 1 / 7),  # inter 5*5=25, union 100+100-25=175
    ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),  # identical
    ((0, 0, 10, 10), (0, 0, 20, 20), 0.25),  # contained: inter 100, union 400
    ((0, 0, 10, 10), (5, 0, 15, 10), 1 / 3),  # inter 5*10=50, union 150
    ((0, 0, 4, 2), (1, 1, 3, 5), 1 / 7),  # areas 8 and 8; inter x 1..3, y 1..2 = 2; union 14
    ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),  # disjoint
    ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges: zero-area intersection
    ((5, 5, 5, 10), (0, 0, 10, 10), 0.0),  # zero width
    ((10, 10, 0, 0), (0, 0, 10, 10), 0.0),  # corners reversed
]


@pytest.mark.parametrize("a,b,expected", IOU_CASES)
def test_box_iou(a, b, expected):
    assert box_iou(a, b) == pytest.approx(expected)
    assert box_iou(b, a) == pytest.approx(expected)  # symmetric


PARSE_CASES = [
    ("[1,2,3,4]", (1, 2, 3, 4)),
    ("[ 1 , 2 , 3 , 4 ]", (1, 2, 3, 4)),  # word-level tokenizer spacing
    ('{"bbox_2d": [1, 2, 3, 4]}', (1, 2, 3, 4)),
    ('```json\n[{"bbox_2d": [10, 20, 30.5, 40], "label": "cat"}]\n```', (10, 20, 30.5, 40)),
    ('{"label": [9, 9, 9, 9], "bbox_2d": [1, 2, 3, 4]}', (1, 2, 3, 4)),  # the bbox_2d key wins
    ("[[1,2,3,4],[5,6,7,8]]", (1, 2, 3, 4)),  # the first box
    ("[-1, 0.5, 3e1, .5]", (-1, 0.5, 30, 0.5)),
    ("the box is [1,2,3] or so", None),  # three numbers
    ("[1,2,3,4,5]", None),  # five numbers
    ("(1,2,3,4)", None),  # not a list
    ("no box", None),
]


@pytest.mark.parametrize("text,expected", PARSE_CASES)
def test_parse_box(text, expected):
    assert parse_box(text) == expected


REWARD_CASES = [
    # (completion, ground truth, params, expected)
    ("<answer>[0,0,10,10]</answer>", "[5,5,15,15]", {}, 1 / 7),
    ("<answer>[5, 5, 15, 15]</answer>", "[5, 5, 15, 15]", {}, 1.0),
    ('<answer>{"bbox_2d": [0,0,10,10]}</answer>', "[[0,0,20,20]]", {}, 0.25),  # nested ground truth
    ("[0,0,10,10]", "[5,5,15,15]", {}, 1 / 7),  # no tags: the completion is read
    ("[0,0,10,10]", "[5,5,15,15]", {"fallback_to_completion": False}, 0.0),
    ("<answer>[0,0,10,10]</answer>", "[5,5,15,15]", {"threshold": 0.14}, 1.0),  # 0.1429 >= 0.14
    ("<answer>[0,0,10,10]</answer>", "[5,5,15,15]", {"threshold": 0.15}, 0.0),
    ("<answer>[5,5,15,15]</answer>", "[5,5,15,15]", {"threshold": 1.0}, 1.0),  # >= is inclusive
    ("<answer>[10,10,0,0]</answer>", "[0,0,10,10]", {}, 0.0),  # degenerate prediction
    ("<answer>a box</answer>", "[0,0,10,10]", {}, 0.0),  # malformed prediction
    ("<answer>[0,0,1e400,10]</answer>", "[0,0,10,10]", {}, 0.0),  # infinite coordinate
]


@pytest.mark.parametrize("completion,answer,params,expected", REWARD_CASES)
def test_iou_reward(completion, answer, params, expected):
    assert run(completion, answer, **params) == pytest.approx(expected)


CONVERSION_CASES = [
    # (box, format, original (w, h), resized (w, h), expected box in original pixels)
    ((0, 0, 50, 25), "qwen2_5_vl", (200, 100), (100, 50), (0, 0, 100, 50)),  # scale 2 both ways
    ((10, 40, 60, 200), "qwen2_5_vl", (300, 200), (150, 400), (20, 20, 120, 100)),  # sx=2, sy=0.5
    ((100, 250, 500, 1000), "rel1000", (500, 200), (), (50, 50, 250, 200)),  # sx=0.5, sy=0.2
    ((0.1, 0.25, 0.5, 1.0), "rel1", (500, 200), (), (50, 50, 250, 200)),
    ((1, 2, 3, 4), "abs", (), (), (1, 2, 3, 4)),  # needs no sizes
]


@pytest.mark.parametrize("box,box_format,orig,resized,expected", CONVERSION_CASES)
def test_to_original_pixels(box, box_format, orig, resized, expected):
    sizes = (orig,) if orig else ()
    resized_sizes = (resized,) if resized else ()
    assert to_original_pixels(box, box_format, sizes, resized_sizes) == pytest.approx(expected)


def test_box_format_in_the_reward():
    # The model sees a 100x50 input of a 200x100 image: its [0,0,5,5] is [0,0,10,10] originally, which
    # overlaps the truth [5,5,15,15] by 1/7 (see test_box_iou).
    kw = {"image_sizes": ((200, 100),), "resized_sizes": ((100, 50),)}
    assert run("<answer>[0,0,5,5]</answer>", "[5,5,15,15]", box_format="qwen2_5_vl", **kw) == pytest.approx(1 / 7)
    # rel1000 on a 100x100 image: [0,0,100,100] -> [0,0,10,10]
    assert run("<answer>[0,0,100,100]</answer>", "[5,5,15,15]", image_sizes=((100, 100),),
               box_format="rel1000") == pytest.approx(1 / 7)
    # Read as absolute pixels, the same qwen box is [0,0,5,5]: it only touches the truth's corner.
    assert run("<answer>[0,0,5,5]</answer>", "[5,5,15,15]", **kw) == 0.0


@pytest.mark.parametrize("box_format,image_sizes,resized_sizes", [
    ("qwen2_5_vl", ((200, 100),), ()),  # resized size missing
    ("qwen2_5_vl", (), ((100, 50),)),  # original size missing
    ("rel1000", (), ()),
    ("rel1", ((0, 100),), ()),  # zero width
])
def test_missing_sizes_raise_so_the_mixer_counts_them(box_format, image_sizes, resized_sizes):
    for completion in ("<answer>[0,0,5,5]</answer>", "no box at all"):
        with pytest.raises(ValueError, match="iou"):
            run(completion, "[5,5,15,15]", image_sizes, resized_sizes, box_format=box_format)


def test_bad_box_format_and_ground_truth_raise():
    with pytest.raises(ValueError, match="unknown box_format"):
        run("[0,0,5,5]", "[5,5,15,15]", ((10, 10),), ((10, 10),), box_format="xyxy")
    with pytest.raises(ValueError, match="ground truth"):
        run("[0,0,5,5]", "a cat")


DYNAMIC_CASES = [
    # (predicted box against the truth [0,0,10,10], progress, expected). Default schedule: 0.85 while
    # progress <= 0.1, 0.95 while <= 0.25, then 0.99.
    ("[0,0,10,9]", 0.05, 1.0),  # IoU 90/100 = 0.9 >= 0.85
    ("[0,0,10,9]", 0.2, 0.0),  # 0.9 < 0.95
    ("[0,0,10,9]", 0.5, 0.0),  # 0.9 < 0.99
    ("[0,0,10,9.6]", 0.05, 1.0),  # IoU 96/100 = 0.96
    ("[0,0,10,9.6]", 0.2, 1.0),  # 0.96 >= 0.95
    ("[0,0,10,9.6]", 0.5, 0.0),  # 0.96 < 0.99
    ("[0,0,10,10]", 0.5, 1.0),  # identical: 1.0 >= 0.99
    ("[0,0,10,8]", 0.05, 0.0),  # IoU 0.8 < 0.85 even at the loosest stage
]


@pytest.mark.parametrize("pred,progress,expected", DYNAMIC_CASES)
def test_dynamic_threshold(pred, progress, expected):
    inp = RewardInput(completion=f"<answer>{pred}</answer>", answer="[0,0,10,10]", task="grounding",
                      progress=progress)
    assert iou(inp, threshold="dynamic") == expected


def test_dynamic_threshold_with_a_custom_schedule():
    schedule = [[0.5, 0.5], [1.0, 0.9]]
    for progress, expected in ((0.3, 1.0), (0.7, 0.0)):  # IoU 0.8: >= 0.5 early, < 0.9 late
        inp = RewardInput(completion="[0,0,10,8]", answer="[0,0,10,10]", task="grounding", progress=progress)
        assert iou(inp, threshold="dynamic", iou_schedule=schedule) == expected


def test_bad_threshold_raises():
    with pytest.raises(ValueError, match="iou: threshold must be"):
        run("[0,0,10,10]", "[0,0,10,10]", threshold="sometimes")
    with pytest.raises(ValueError, match="iou: iou_schedule"):
        run("[0,0,10,10]", "[0,0,10,10]", threshold="dynamic", iou_schedule=[[0.5, 2.0]])


def test_float_limits_score_zero_not_nan():
    # 1e-200 squared underflows to 0: before the fix this divided by a zero union and raised.
    assert run("[0,0,1e-200,1e-200]", "[0,0,1e-200,1e-200]") == 0.0
    assert run("[0,0,1e308,1e308]", "[0,0,1e308,1e308]") == 0.0  # inf / inf used to give NaN


def test_old_names_still_import_from_iou():
    from vlrl.rewards import boxes
    from vlrl.rewards import iou as iou_module

    assert iou_module.parse_box is boxes.parse_box
    assert iou_module.box_iou is boxes.box_iou
    assert iou_module.to_original_pixels is boxes.to_original_pixels
    assert iou_module.BOX_FORMATS == ("abs", "qwen2_5_vl", "rel1000", "rel1")
    assert iou_module.Box == tuple[float, float, float, float]
