"""Training and `vlrl rewards score` share one scoring path: identical inputs give identical scores."""

from __future__ import annotations

import json

import pytest

from vlrl.cli import main
from vlrl.config_loader import save_config
from vlrl.trainer import COMPLETIONS_FILE, Trainer

# A mix exercising routing, params, penalties that read token counts, per-task terms, and the `random` control
# (whose draw reads the row id, step and seed that completions.jsonl keeps).
REWARD_OVERRIDES = (
    "reward.terms=[{name: accuracy, weight: 1.0, params: {single: true}}, "
    "{name: format, weight: 0.5, params: {partial_credit: true}}, "
    "{name: overlong, weight: -0.25, params: {buffer: 3}}, {name: repetition, weight: -0.1, "
    "params: {ngram: 1, min_words: 2}}, {name: random, weight: 0.2, params: {p: 0.5}}]",
    "reward.per_task.count=[{name: number, weight: 2.0, params: {abs_tol: 0.5}}, {name: format, weight: 0.5}]",
)


@pytest.mark.parametrize("workers", [0, 2])
def test_training_and_offline_scores_are_identical(tiny_config, tmp_path, workers):
    cfg = tiny_config("trainer.save_completions=1", "rollout.max_new_tokens=5", f"reward.workers={workers}",
                      *REWARD_OVERRIDES)
    Trainer(cfg).fit()
    completions = tmp_path / "run" / COMPLETIONS_FILE
    lines = [json.loads(s) for s in completions.read_text().splitlines()]
    assert [ln["step"] for ln in lines] == [1] * 16 + [2] * 16  # 4 prompts x G=4, every step
    assert {ln["task"] for ln in lines} == {"colour", "count"}

    recipe = tmp_path / "recipe.yaml"
    save_config(cfg, recipe)  # --config takes the training recipe; its reward section is used
    out = tmp_path / "scores.jsonl"
    assert main(["rewards", "score", str(completions), "-o", str(out), "--config", str(recipe), "-q"]) == 0
    scored = [json.loads(s) for s in out.read_text().splitlines()]
    assert [s["line"] for s in scored] == list(range(1, len(lines) + 1))
    for line, offline in zip(lines, scored, strict=True):
        offline.pop("line")
        assert offline.pop("id") == line["id"] and line["seed"] == cfg.trainer.seed
        assert offline == line["scores"]  # exact: the same float32 arithmetic on the same inputs
    # The mix was really exercised: counts use `number`, colours the default terms with penalties.
    count = next(s for s, ln in zip(scored, lines, strict=True) if ln["task"] == "count")
    colour = next(s for s, ln in zip(scored, lines, strict=True) if ln["task"] == "colour")
    assert set(count) == {"total", "number", "format", "accuracy", "overlong", "repetition", "random"}
    assert count["accuracy"] is None and count["random"] is None and colour["number"] is None
    assert colour["overlong"] is not None
    drawn = [s["random"] for s, ln in zip(scored, lines, strict=True) if ln["task"] == "colour"]
    assert set(drawn) == {0.0, 1.0}
