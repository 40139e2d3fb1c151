"""`vlrl rewards score`: the line format, errors that name the line and field, config forms."""

from __future__ import annotations

import json
import re

import pytest

from vlrl.cli import build_parser, main
from vlrl.rewards.offline import LineError, input_line, parse_line


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def run(tmp_path, rows, *args):
    src = write(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    code = main(["rewards", "score", str(src), "-o", str(out), "-q", *args])
    return code, [json.loads(s) for s in out.read_text().splitlines()] if out.exists() else []


def test_scores_with_the_default_mix(tmp_path):
    rows = [
        {"id": "a", "completion": "<answer> red </answer>", "answer": "red", "task": "colour"},
        {"completion": "<answer> 4 </answer>", "answer": 3, "task": "count", "data_source": "shapes"},
        {"completion": "<answer>[0, 0, 5, 5]</answer>", "answer": [[0, 0, 10, 10]], "task": "detection",
         "image_size": [20, 20], "resized_size": [10, 10], "reward": {"params": {"accuracy": {"box_format": "qwen2_5_vl"}}}},
    ]
    code, out = run(tmp_path, rows, "workers=0")
    assert code == 0
    # Defaults: accuracy (1.0) + partial-credit format (0.5). Row 1: right and well formed: 1 + 0.5.
    # Row 2: wrong count, well formed: 0 + 0.5. Row 3: [0,0,5,5] in a 10x10 input is [0,0,10,10] in the
    # 20x20 original: IoU 1 with one box each -> detection 1.0, so 1 + 0.5.
    assert [o["total"] for o in out] == [1.5, 0.5, 1.5]
    assert out[0] == {"line": 1, "id": "a", "total": 1.5, "accuracy": 1.0, "format": 1.0}
    assert [o["line"] for o in out] == [1, 2, 3]


@pytest.mark.parametrize("row, message", [
    ('{"completion": "x", "answer": "y"', ":1: invalid JSON"),
    ({"answer": "y", "task": "t"}, "missing required field 'completion'"),
    ({"completion": 3, "answer": "y", "task": "t"}, "'completion' must be a string"),
    ({"completion": "x", "answer": "y", "task": ""}, "'task' must be a non-empty string"),
    ({"completion": "x", "answer": "y", "task": "t", "progress": 2}, "'progress' must be a number in [0, 1]"),
    ({"completion": "x", "answer": "y", "task": "t", "image_size": [3]}, "'image_size' must be [w, h]"),
    ({"completion": "x", "answer": "y", "task": "t", "num_tokens": -1}, "'num_tokens' must be a non-negative"),
    ({"completion": "x", "answer": "y", "task": "t", "reward": [1]}, "'reward' must be an object"),
    ({"completion": "x", "answer": "y", "task": "t", "reward": {"weights": {"nope": 1}}}, "re:line 1 .*'nope' names no term"),
])
def test_bad_lines_name_line_and_field(tmp_path, capsys, row, message):
    code, _ = run(tmp_path, [row], "workers=0")
    assert code == 2
    err = capsys.readouterr().err
    assert "in.jsonl:1" in err or "line 1" in err
    if message.startswith("re:"):
        assert re.search(message[3:], err), err
    else:
        assert message in err, err


def test_skip_invalid_counts_and_keeps_order(tmp_path, capsys):
    good = {"completion": "<answer> red </answer>", "answer": "red", "task": "colour"}
    code, out = run(tmp_path, [good, "not json", {"task": "t"}, good], "--skip-invalid", "workers=0")
    assert code == 0
    assert [o["line"] for o in out] == [1, 4]
    err = capsys.readouterr().err
    assert "skipped 2 invalid" in err and "in.jsonl:2" in err and "in.jsonl:3" in err


def test_config_forms(tmp_path):
    row = {"completion": "<answer> red </answer>", "answer": "red", "task": "colour"}
    section = tmp_path / "reward.yaml"
    section.write_text("terms: [{name: exact_text, weight: 2.0}]\nworkers: 0\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("reward:\n  terms: [{name: exact_text, weight: 3.0}]\n  workers: 0\n")
    assert run(tmp_path, [row], "--config", str(section))[1][0] == {"line": 1, "total": 2.0, "exact_text": 1.0}
    assert run(tmp_path, [row], "--config", str(recipe))[1][0]["total"] == 3.0
    # A recipe without a reward section uses the default mix.
    bare = tmp_path / "bare.yaml"
    bare.write_text("model: {path: tiny}\n")
    assert run(tmp_path, [row], "--config", str(bare), "workers=0")[1][0]["total"] == 1.0 + 0.5
    # Overrides after the options apply to the reward section, on top of the file.
    assert run(tmp_path, [row], "--config", str(section), "normalize_weights=true")[1][0]["total"] == 1.0


def test_unknown_config_key_is_an_error(tmp_path, capsys):
    code, _ = run(tmp_path, [{"completion": "x", "answer": "y", "task": "t"}], "wrkers=2")
    assert code == 2 and "wrkers" in capsys.readouterr().err


def test_input_line_round_trips():
    from vlrl.rewards import RewardInput

    inp = RewardInput("c", "[1, 2, 3, 4]", "grounding", "src", ((640, 480),), ((644, 476),), {"k": 1}, 0.25, 7, 9)
    back, spec = parse_line(json.loads(json.dumps(input_line(inp, {"weights": {"iou": 2}}))), "x")
    assert back == inp and spec == {"weights": {"iou": 2}}
    with pytest.raises(LineError, match="not both"):
        parse_line({"completion": "", "answer": "", "task": "t", "image_size": [1, 1], "image_sizes": [[1, 1]]}, "x")


def test_images_never_enter_a_completions_line():
    import PIL.Image

    from vlrl.rewards import RewardInput

    inp = RewardInput("c", "red", "colour", images=(PIL.Image.new("RGB", (4, 4)),), image_sizes=((4, 4),))
    line = input_line(inp, None)
    assert "images" not in line and line["image_sizes"] == [[4, 4]]
    back, _ = parse_line(json.loads(json.dumps(line)), "x")
    assert back.images == () and back == inp  # images are no part of an input's identity


def test_help_documents_the_format():
    sub = build_parser()._subparsers._group_actions[0].choices["rewards"]
    text = sub._subparsers._group_actions[0].choices["score"].format_help()
    for field in ("completion", "answer", "task", "reward", "image_size", "resized_size", "data_source",
                  "progress", "--config", "timeout_s", "workers"):
        assert field in text, field


def test_an_input_error_leaves_an_existing_output_untouched(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    out.write_text('{"line": 1, "total": 0.25}\n')  # the scores of an earlier, good run
    good = {"completion": "<answer> red </answer>", "answer": "red", "task": "colour"}
    # Line 2 is bad after line 1 was scored: the old code had already emptied OUT and written line 1.
    src = write(tmp_path / "in.jsonl", [good, '{"completion": "x"'])
    assert main(["rewards", "score", str(src), "-o", str(out), "-q", "--batch-size", "1", "workers=0"]) == 2
    assert "in.jsonl:2" in capsys.readouterr().err
    assert out.read_text() == '{"line": 1, "total": 0.25}\n'
    assert main(["rewards", "score", str(tmp_path / "missing.jsonl"), "-o", str(out), "-q"]) == 2
    assert "input file not found" in capsys.readouterr().err
    assert out.read_text() == '{"line": 1, "total": 0.25}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]  # no temporary left


def test_output_may_be_the_input_file(tmp_path):
    # Written under a temporary name and renamed at the end, so the input is read whole before it is replaced.
    path = write(tmp_path / "rows.jsonl", [{"completion": "<answer> red </answer>", "answer": "red", "task": "c"}])
    assert main(["rewards", "score", str(path), "-o", str(path), "-q", "workers=0"]) == 0
    assert json.loads(path.read_text()) == {"line": 1, "total": 1.5, "accuracy": 1.0, "format": 1.0}
