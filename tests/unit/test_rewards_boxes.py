"""Box parsing, frames, IoU matrices, threshold schedules and the shared row reader (vlrl.rewards.boxes)."""

import numpy as np
import pytest

from vlrl.rewards import RewardInput
from vlrl.rewards.boxes import (
    Box,
    box_iou,
    frame_scale,
    iou_matrix,
    normalize_label,
    parse_boxes,
    read_boxes,
    resolve_threshold,
    scheduled_threshold,
)


def box(x1, y1, x2, y2, label=None, score=None):
    return Box((float(x1), float(y1), float(x2), float(y2)), label, score)


PARSE_CASES = [
    # (text, expected boxes; None = no box and not an explicit empty list)
    ("[1,2,3,4]", [box(1, 2, 3, 4)]),
    ("[[1,2,3,4],[5,6,7,8]]", [box(1, 2, 3, 4), box(5, 6, 7, 8)]),  # a JSON list of lists
    ("boxes: [1, 2, 3, 4] and [5,6,7,8].", [box(1, 2, 3, 4), box(5, 6, 7, 8)]),  # lists in prose
    ('{"bbox_2d": [1,2,3,4], "label": "cat"}', [box(1, 2, 3, 4, "cat")]),  # Qwen2.5-VL grounding
    ("{'bbox_2d': [1, 2, 3, 4], 'label': 'cat'}", [box(1, 2, 3, 4, "cat")]),  # Python-literal quoting
    ('{"label": "cat", "bbox_2d": [1,2,3,4]}', [box(1, 2, 3, 4, "cat")]),  # label before the box
    ('[{"bbox_2d": [1,2,3,4], "label": "cat", "confidence": 0.9}, '
     '{"bbox_2d": [5,6,7,8], "label": "dog", "score": 0.25}]',
     [box(1, 2, 3, 4, "cat", 0.9), box(5, 6, 7, 8, "dog", 0.25)]),
    ('```json\n[\n  {"bbox_2d": [10, 20, 30.5, 40], "label": "cat"}\n]\n```', [box(10, 20, 30.5, 40, "cat")]),
    ('{"label": [9, 9, 9, 9], "bbox_2d": [1, 2, 3, 4]}', [box(1, 2, 3, 4)]),  # the keyed list wins; a list is no label
    ('{"bbox": [1,2,3,4], "label": "cat"}', [box(1, 2, 3, 4, "cat")]),  # key "bbox"
    ('{"coords": [1,2,3,4], "label": "cat"}', [box(1, 2, 3, 4)]),  # no box key: a plain, unlabelled list
    ('{"label": "a \\"big\\" dog", "bbox_2d": [1,2,3,4]}', [box(1, 2, 3, 4, 'a "big" dog')]),  # escaped quotes
    ("[-1, 0.5, 3e1, .5]", [box(-1, 0.5, 30, 0.5)]),
    ('[5,6,7,8] then {"bbox_2d": [1,2,3,4], "label": "cat"}', [box(5, 6, 7, 8), box(1, 2, 3, 4, "cat")]),  # text order
    ('{"bbox_2d": [1,2,3,4], "label": "cat", "attrs": {"c": 1}}', [box(1, 2, 3, 4)]),  # nested braces: plain list
    ('[{"bbox_2d": [1,2,3,4], "label": "ca', [box(1, 2, 3, 4)]),  # truncated object: plain list
    ("[[1,2,3,1e400],[5,6,7,8]]", [box(5, 6, 7, 8)]),  # the infinite box is dropped
    ('{"bbox_2d": [1,2,3,4], "confidence": 1e999}', None),  # infinite confidence: dropped, nothing left
    ("[1,2,3,1e400]", None),
    ("[]", []),  # an explicit empty list is "no boxes", not "no answer"
    ("```json\n[ ]\n```", []),
    ("no boxes here", None),
    ("", None),
    ("[1,2,3]", None),  # three numbers
    ("[1,2,3,4,5]", None),  # five numbers
    ("(1,2,3,4)", None),  # not a list
]


@pytest.mark.parametrize("text,expected", PARSE_CASES)
def test_parse_boxes(text, expected):
    assert parse_boxes(text) == expected


def test_parse_boxes_limit_stops_the_scan():
    text = "[0,0,1,1]" * 10
    assert len(parse_boxes(text, limit=3)) == 3
    assert len(parse_boxes(text)) == 10


@pytest.mark.parametrize("label,expected", [
    ("Cat", "cat"), ("  traffic   LIGHT ", "traffic light"), ("", None), ("   ", None), (None, None),
])
def test_normalize_label(label, expected):
    assert normalize_label(label) == expected


SCALE_CASES = [
    # (box_format, original (w, h), resized (w, h), expected (sx, sy))
    ("abs", (), (), (1.0, 1.0)),  # needs no sizes
    ("qwen2_5_vl", (200, 100), (100, 50), (2.0, 2.0)),  # 200/100, 100/50
    ("qwen2_5_vl", (300, 200), (150, 400), (2.0, 0.5)),  # 300/150, 200/400
    ("rel1000", (500, 200), (), (0.5, 0.2)),  # 500/1000, 200/1000
    ("rel1", (500, 200), (), (500.0, 200.0)),
]


@pytest.mark.parametrize("box_format,orig,resized,expected", SCALE_CASES)
def test_frame_scale(box_format, orig, resized, expected):
    sizes = (orig,) if orig else ()
    resized_sizes = (resized,) if resized else ()
    assert frame_scale(box_format, sizes, resized_sizes) == pytest.approx(expected)


def test_frame_scale_errors_name_the_reward():
    with pytest.raises(ValueError, match="detection: box_format 'rel1' needs image_sizes"):
        frame_scale("rel1", (), (), who="detection")
    with pytest.raises(ValueError, match="map: unknown box_format"):
        frame_scale("xywh", ((10, 10),), (), who="map")
    with pytest.raises(ValueError, match="not a positive"):
        frame_scale("rel1", ((float("inf"), 10),), ())


EDGE_IOU_CASES = [
    # Arithmetic that leaves the floats must score 0, never raise or return NaN.
    ((0, 0, 1e-200, 1e-200), (0, 0, 1e-200, 1e-200), 0.0),  # area 1e-400 underflows to 0: union 0
    ((0, 0, 1e308, 1e308), (0, 0, 1e308, 1e308), 0.0),  # areas overflow: inf / inf
    ((-1e308, 0, 1e308, 10), (0, 0, 10, 10), 0.0),  # width overflows to inf: 100 / inf = 0
    ((0, 0, 1e150, 1e150), (0, 0, 1e150, 1e150), 1.0),  # 1e300 still fits: identical boxes
]


@pytest.mark.parametrize("a,b,expected", EDGE_IOU_CASES)
def test_box_iou_and_iou_matrix_at_float_limits(a, b, expected):
    assert box_iou(a, b) == expected
    assert iou_matrix(np.array([a]), np.array([b]))[0, 0] == expected


def test_iou_matrix_agrees_with_box_iou():
    a = [(0, 0, 10, 10), (5, 5, 15, 15), (10, 10, 0, 0), (0, 0, 4, 2)]
    b = [(0, 0, 20, 20), (5, 0, 15, 10), (1, 1, 3, 5)]
    m = iou_matrix(np.array(a), np.array(b))
    assert m.shape == (4, 3)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            assert m[i, j] == pytest.approx(box_iou(x, y))
    assert m[0, 0] == pytest.approx(0.25)  # inter 100, union 400
    assert iou_matrix(np.zeros((0, 4)), np.array(b)).shape == (0, 3)


@pytest.mark.parametrize("progress,expected", [
    (0.0, 0.85), (0.05, 0.85), (0.1, 0.85),  # <= 0.1 is inclusive
    (0.2, 0.95), (0.25, 0.95), (0.5, 0.99), (1.0, 0.99), (1.5, 0.99),  # past the last pair: its threshold
])
def test_default_schedule_is_v_triunes(progress, expected):
    assert scheduled_threshold(progress) == expected


def test_resolve_threshold():
    assert resolve_threshold(None, (), 0.3, "iou") is None
    assert resolve_threshold(0.5, (), 0.3, "iou") == 0.5
    assert resolve_threshold("dynamic", [[0.5, 0.3], [1.0, 0.7]], 0.6, "iou") == 0.7  # 0.6 > 0.5
    for bad in ("dynamc", 1.5, -0.1):
        with pytest.raises(ValueError, match="iou:"):
            resolve_threshold(bad, (), 0.3, "iou")
    for schedule in ([], [[0.5]], [[0.5, 0.3], [0.2, 0.7]], [[1.0, 2.0]]):
        with pytest.raises(ValueError, match="iou_schedule"):
            resolve_threshold("dynamic", schedule, 0.3, "iou")


def row(completion, answer="[[0,0,10,10]]", **kw):
    return RewardInput(completion=completion, answer=answer, task="detection", **kw)


def test_read_boxes():
    preds, truths = read_boxes(row("<answer>[0,0,5,5] [1,1,2,2]</answer>", image_sizes=((200, 100),)),
                               "detection", "rel1000", 10, True)
    assert [c for b in preds for c in b.xyxy] == pytest.approx([0, 0, 1, 0.5, 0.2, 0.1, 0.4, 0.2])  # x*0.2, y*0.1
    assert truths == [box(0, 0, 10, 10)]  # ground truth is never converted
    assert read_boxes(row("<answer>none</answer>"), "d", "abs", 10, True)[0] == []
    assert read_boxes(row("[0,0,1,1]"), "d", "abs", 10, False)[0] is None  # no answer region
    assert read_boxes(row("[0,0,1,1]" * 3), "d", "abs", 2, True)[0] is None  # 3 > max_boxes: spam
    assert len(read_boxes(row("[0,0,1,1]" * 3), "d", "abs", 3, True)[0]) == 3
    assert read_boxes(row("x", answer="[]"), "d", "abs", 3, True)[1] == []
    with pytest.raises(ValueError, match="d: ground truth"):
        read_boxes(row("x", answer="a cat"), "d", "abs", 3, True)
    with pytest.raises(ValueError, match="max_boxes"):
        read_boxes(row("x"), "d", "abs", 0, True)
