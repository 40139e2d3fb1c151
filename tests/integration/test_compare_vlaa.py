"""scripts/compare_vlaa.py end to end, shrunk to a step or two per arm, so the recipe the README shows cannot rot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compare_vlaa.py"


def test_the_three_arms_run_and_make_one_table(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("compare_vlaa", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "cmp"
    script.compare(script.parse_args([
        "--out", str(out), "--rows-per-task", "3", "--eval-fraction", "0.3", "--grpo-steps", "1",
        "--prompts-per-step", "2", "--group-size", "2", "--sft-epochs", "1", "--sft-batch-size", "2",
        "--max-new-tokens", "8"]))
    printed = capsys.readouterr().out
    models = json.loads((out / "eval" / "summary.json").read_text())["models"]
    labels = [m["label"] for m in models]
    assert labels[:2] == ["base_model", "grpo-step_000001"] and labels[3] == "sft_grpo-step_000001"
    assert labels[2].startswith("sft-step_")  # one epoch of the chains left after the held-out rows
    assert {m["rows"] for m in models} == {models[0]["rows"]} and models[0]["rows"] > 0  # the same rows for all
    table = (out / "eval" / "table.txt").read_text()
    assert "sft_grpo-step_000001" in table and table.strip() in printed
    assert "$ vlrl sft " in printed and "$ vlrl train model.path=" + str(out / "sft" / "final") in printed
