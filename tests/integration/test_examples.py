"""Every script in examples/ runs (so none can rot), through the public API only."""

from __future__ import annotations

import ast
import json
import pydoc
import runpy
import sys
from pathlib import Path

import pytest

import vlrl

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [name, *args])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_examples_import_only_the_public_api(path):
    tree = ast.parse(path.read_text())
    imported = [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    imported += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    ours = [m for m in imported if m and m.split(".")[0] in ("vlrl", "data_pipelines")]
    assert ours == ["vlrl"], f"{path.name} imports {ours}: examples use `import vlrl` only"
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "vlrl"}
    assert used and used <= set(vlrl.__all__), f"{path.name} uses vlrl.{sorted(used - set(vlrl.__all__))}"


def test_train_then_evaluate_two_checkpoints(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    run_example("train_custom_reward.py", "--steps", "2", "--out", str(run), monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert "step 0: held-out accuracy" in out and "step 2: held-out accuracy" in out and f"done: {run}" in out
    steps = [json.loads(t)["step"] for t in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 2]
    assert (run / "checkpoints" / "step_000001").is_dir() and (run / "final" / "config.json").exists()

    run_example("evaluate_checkpoints.py", str(run / "checkpoints" / "step_000001"), str(run), "--out",
                str(tmp_path / "eval"), monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert "run-step_000001" in out and "run-step_000002" in out and "best:" in out
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert [s["rows"] for s in summary["models"]] == [32, 32]
    best = max(summary["models"], key=lambda s: s["overall"]["accuracy"])
    assert f"best: {best['label']} (accuracy {best['overall']['accuracy']:.3f})" in out


def test_score_completions_example(tmp_path, monkeypatch, capsys):
    run_example("score_completions.py", "--out", str(tmp_path / "scores.jsonl"), monkeypatch=monkeypatch)
    scores = [json.loads(t) for t in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert [s["id"] for s in scores] == ["a", "b", "c", "d"]
    # by hand: a is right and thinks (1 + 0.25); b is wrong; c's choice is B; d: IoU of [10,10,50,50] with
    # [12,8,50,52] = 1520 / (1600 + 1672 - 1520) = 0.8676
    assert [s["total"] for s in scores[:3]] == [1.25, 0.0, 1.0]
    assert scores[3]["accuracy"] == pytest.approx(1520 / 1752, abs=1e-4)


def test_build_from_folder_example(tmp_path, monkeypatch, capsys):
    run_example("build_from_folder.py", "--out", str(tmp_path / "set"), monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert "RL set:" in out and "0 rows dropped" in out
    card = json.loads((tmp_path / "set" / "card.json").read_text())
    assert card["outputs"]["rl_train"]["rows"] + card["outputs"]["rl_test"]["rows"] == 24


def test_help_lists_every_public_name_with_a_docstring():
    import vlrl.trainer  # noqa: F401  (a submodule import must not shadow a public name, e.g. vlrl.evaluate)

    assert all(not isinstance(getattr(vlrl, name), type(vlrl)) for name in vlrl.__all__)
    text = pydoc.render_doc(vlrl, renderer=pydoc.plaintext)
    for name in vlrl.__all__:
        assert name in text
        assert (getattr(vlrl, name).__doc__ or "").strip(), f"vlrl.{name} has no docstring"
    readme = (EXAMPLES.parent / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    missing = [name for name in vlrl.__all__ if f"`{name}" not in section and f"vlrl.{name}" not in section]
    assert not missing, f"README's Python API section does not list {missing}"


def test_the_readme_shows_the_first_example_in_full():
    readme = (EXAMPLES.parent / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    code = section[section.index("```python\n") + len("```python\n"):]
    assert code[:code.index("```\n")] == (EXAMPLES / "train_custom_reward.py").read_text()
