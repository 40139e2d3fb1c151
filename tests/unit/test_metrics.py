"""metrics.truncate_jsonl: what a resume keeps of metrics.jsonl and completions.jsonl."""

import json

from vlrl.metrics import truncate_jsonl


def test_truncate_drops_later_steps_and_a_half_written_line(tmp_path):
    path = tmp_path / "completions.jsonl"
    path.write_text(json.dumps({"step": 1, "a": 1}) + "\n" + json.dumps({"step": 2}) + "\n"
                    + json.dumps({"step": 3}) + "\n" + '{"step": 4, "compl')  # killed mid-write
    truncate_jsonl(path, 2)
    assert [json.loads(s)["step"] for s in path.read_text().splitlines()] == [1, 2]
    truncate_jsonl(path, 0)
    assert path.read_text() == ""
    truncate_jsonl(tmp_path / "missing.jsonl", 3)  # nothing to do
