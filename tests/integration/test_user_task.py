"""A user's own task end to end: `scripts/make_user_task.py` writes images + JSONL, `vlrl data build` imports them
RL-only with configs/data/user_task.yaml, and `vlrl train model.path=tiny` trains on them with a vocabulary taken
from the data; the demo's tiny model, which lacks the task's words, is refused before training."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from data_pipelines.synthetic.shapes import WORDS
from vlrl.cli import main
from vlrl.data.schema import load_rows

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "make_user_task.py"
ANSWERS = {"position": {"top-left", "top-right", "bottom-left", "bottom-right"},
           "shape": {"circle", "square", "triangle"}, "size": {"big", "small"}, "leftright": {"left", "right"}}


def make_task(kind: str, out: Path, n: int, size: int = 56) -> list[dict]:
    run = subprocess.run([sys.executable, str(SCRIPT), kind, str(out), "--n", str(n), "--size", str(size),
                          "--seed", "3"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", sorted(ANSWERS))
def test_each_task_is_balanced_and_speaks_words_the_demo_lacks(kind, tmp_path):
    from PIL import Image

    records = make_task(kind, tmp_path / kind, n=12, size=84)
    counts = Counter(r["answer"] for r in records)
    assert set(counts) == ANSWERS[kind] and len(set(counts.values())) == 1  # every answer equally often
    assert not ANSWERS[kind] & set(WORDS)
    with Image.open(tmp_path / kind / records[0]["image"]) as image:
        assert image.size == (84, 84)


def build_args(out: Path, annotations: Path) -> list[str]:
    source = json.dumps([{"kind": "folder", "name": "user", "params": {
        "annotations": str(annotations),
        "columns": {"id": "id", "image": "image", "problem": "question", "answer": "answer", "task": "task"}}}])
    return ["data", "build", str(REPO / "configs" / "data" / "user_task.yaml"), f"output_dir={out}",
            f"sources={source}", "curate.eval_fraction=0.25"]


TRAIN = ["trainer.total_steps=1", "trainer.eval_every=1", "trainer.save_every=0", "trainer.progress_bar=false",
         "data.prompts_per_step=4", "rollout.group_size=2", "data.max_eval_rows=4", "reward.workers=0",
         "data.source_weights={}"]


def test_folder_task_builds_rl_only_and_trains_on_a_vocabulary_from_its_words(tmp_path, capsys):
    records = make_task("leftright", tmp_path / "task", n=16)
    data = tmp_path / "data"
    assert main(build_args(data, tmp_path / "task" / "annotations.jsonl")) == 0
    card = json.loads((data / "card.json").read_text())
    # RL-only: no teacher stage ran, nothing was dropped, every row is in the RL set.
    assert [s["stage"] for s in card["stages"]] == ["collect", "curate"] and card["dropped"] == 0
    assert card["outputs"]["rl_train"]["rows"] + card["outputs"]["rl_test"]["rows"] == len(records)

    run = tmp_path / "run"
    assert main(["train", f"data.path={data / 'rl'}", "model.path=tiny", f"trainer.output_dir={run}", *TRAIN]) == 0
    tokenizer = AutoTokenizer.from_pretrained(str(run / "tiny_model"))
    vocab = tokenizer.get_vocab()
    for word in ("Is", "figure", "left", "right", "of", "one", "?"):
        assert word in vocab, word
    # Every problem reads without an unknown token, and every answer is one token the policy can write.
    train = load_rows(str(data / "rl"), "train")
    for problem in train["problem"]:
        assert tokenizer.unk_token_id not in tokenizer(problem, add_special_tokens=False)["input_ids"]
    assert all(len(tokenizer(a, add_special_tokens=False)["input_ids"]) == 1 for a in ANSWERS["leftright"])
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss/loss" in m] == [1]
    assert any("eval/accuracy/user" in m for m in metrics)


def test_a_model_without_the_task_words_is_refused_before_training(tiny_model_dir, tmp_path, capsys):
    make_task("position", tmp_path / "task", n=8)
    data = tmp_path / "data"
    assert main(build_args(data, tmp_path / "task" / "annotations.jsonl")) == 0
    capsys.readouterr()
    # The demo's tiny model knows "the" and "?" but none of the task's own words: exit 2, no step taken.
    assert main(["train", f"data.path={data / 'rl'}", f"model.path={tiny_model_dir}",
                 f"trainer.output_dir={tmp_path / 'run'}", *TRAIN]) == 2
    err = capsys.readouterr().err
    assert "unknown token '<unk>'" in err and "'corner'" in err and "--vocab-from" in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    # Rebuilt from the data with `vlrl models tiny --vocab-from`, the same model trains.
    model = tmp_path / "tiny_from_data"
    assert main(["models", "tiny", str(model), "--vocab-from", str(data / "rl")]) == 0
    assert {"corner", "top-left", "bottom-right", "picture"} <= set(AutoTokenizer.from_pretrained(str(model)).get_vocab())
    assert main(["train", f"data.path={data / 'rl'}", f"model.path={model}", f"trainer.output_dir={tmp_path / 'run2'}",
                 *TRAIN]) == 0
