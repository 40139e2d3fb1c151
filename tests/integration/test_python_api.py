"""The Python API (issue 16): a trainer built in Python equals `vlrl train`; TRL-style rewards, callbacks,
datasets and models in memory; `score_completions` / `build_dataset` equal their commands."""

from __future__ import annotations

import json
import re

import datasets
import pytest
from transformers import AutoModelForImageTextToText, AutoProcessor

import vlrl
from vlrl.cli import main
from vlrl.data.schema import SchemaError
from vlrl.metrics import read_metrics
from vlrl.rewards.base import RewardInput


def comparable(run) -> list[dict]:
    """metrics.jsonl without the timings (perf/, time/), which differ between any two runs."""
    return [{k: v for k, v in line.items() if not k.startswith(("perf/", "time/"))} for line in read_metrics(run)]


def overrides(cfg_dir, tiny_model_dir, extra=()) -> list[str]:
    return [f"model.path={tiny_model_dir}", f"trainer.output_dir={cfg_dir}", "data.prompts_per_step=4",
            "rollout.group_size=4", "rollout.max_new_tokens=6", "trainer.total_steps=2", "trainer.eval_every=2",
            "trainer.save_every=0", "trainer.progress_bar=false", "trainer.device=cpu", "data.max_eval_rows=8",
            "optim.warmup_steps=0", "data.source_weights={}", "reward.workers=0", *extra]


def test_a_trainer_built_in_python_logs_what_vlrl_train_logs(tiny_model_dir, shapes_dir, tmp_path):
    """Same data, config and seed: `vlrl train data.path=DIR` and `vlrl.Trainer(cfg, train_dataset=<the same rows in
    memory>, model=<the same model loaded>)` log equal metrics, step by step."""
    assert main(["train", f"data.path={shapes_dir}", *overrides(tmp_path / "cli", tiny_model_dir)]) == 0

    cfg = vlrl.load_config(overrides=overrides(tmp_path / "py", tiny_model_dir))
    rows = datasets.load_from_disk(str(shapes_dir))  # a DatasetDict: train and test
    model = AutoModelForImageTextToText.from_pretrained(str(tiny_model_dir))
    processor = AutoProcessor.from_pretrained(str(tiny_model_dir))
    heard = []
    trainer = vlrl.Trainer(cfg, train_dataset=rows, model=model, processor=processor,
                           callbacks=[lambda step, metrics: heard.append((step, metrics))])
    trainer.fit()
    cli, py = comparable(tmp_path / "cli"), comparable(tmp_path / "py")
    assert [line["step"] for line in cli] == [0, 1, 2, 2]  # eval before training, two steps, eval at the end
    assert py == cli
    # the callback heard exactly what metrics.jsonl holds, in order
    assert [(s, m) for s, m in heard] == [(line.pop("step"), line) for line in read_metrics(tmp_path / "py")]
    # the objects were written into the run, and its config names them: `vlrl eval` / `--resume` read it
    saved = (tmp_path / "py" / "config.yaml").read_text()
    assert str(tmp_path / "py" / "input_data") in saved and str(tmp_path / "py" / "input_model") in saved


# A reward written for TRL's GRPOTrainer: keyword lists in, a list out, None = does not apply.
def trl_style(prompts, completions, solution, **kwargs):
    out = []
    for prompt, completion, truth in zip(prompts, completions, solution, strict=True):
        if "how many" in prompt:
            out.append(None)
            continue
        words = completion.replace("<answer>", " ").replace("</answer>", " ").split()
        out.append(1.0 if truth in words else 0.0)
    return out


def test_a_trl_style_reward_scores_a_training_step_unchanged(tiny_model_dir, shapes_dir, tmp_path):
    cfg = vlrl.load_config(overrides=overrides(tmp_path / "run", tiny_model_dir, [
        f"data.path={shapes_dir}", "trainer.total_steps=1", "trainer.eval_every=0", "trainer.save_completions=1",
        "reward.terms=[{name: trl, weight: 1.0}, {name: format, weight: 0.5}]"]))
    steps = []
    trainer = vlrl.Trainer(cfg, rewards={"trl": vlrl.trl_reward(trl_style, columns={"solution": "answer"})},
                           callbacks=[lambda step, metrics: steps.append(metrics)])
    trainer.fit()
    lines = [json.loads(t) for t in (tmp_path / "run" / "completions.jsonl").read_text().splitlines()]
    assert len(lines) == 16  # 4 prompts x 4 completions
    # each completion's score is the function's own answer for it, called directly here
    expected = trl_style([ln["problem"] for ln in lines], [ln["completion"] for ln in lines],
                         [ln["answer"] for ln in lines])
    assert [ln["scores"]["trl"] for ln in lines] == expected
    applied = [v for v in expected if v is not None]
    assert steps[0]["reward/trl"] == pytest.approx(sum(applied) / len(applied))
    assert steps[0].get("reward/not_applicable", 0) == expected.count(None)
    assert {ln["task"] for ln in lines if ln["scores"]["trl"] is None} <= {"count"}


def test_rows_in_memory_keep_their_extra_columns_for_the_rewards(tiny_model_dir, shapes_dir, tmp_path):
    """A list of dicts with a single `image` and a column schema v1 does not have: the reward sees it in meta (and a
    TRL reward as a column)."""
    source = datasets.load_from_disk(str(shapes_dir))["train"].select(range(8))
    rows = [{"id": r["id"], "image": r["images"][0], "problem": r["problem"], "answer": r["answer"],
             "task": r["task"], "difficulty": i % 3} for i, r in enumerate(source)]
    seen = []

    def difficulty(inp: RewardInput) -> float:
        seen.append(inp.meta["difficulty"])
        return 0.0

    cfg = vlrl.load_config(overrides=overrides(tmp_path / "run", tiny_model_dir, [
        "trainer.total_steps=1", "trainer.eval_every=0", "reward.terms=[{name: difficulty}]"]))
    vlrl.Trainer(cfg, train_dataset=rows, rewards=[difficulty]).fit()
    assert len(seen) == 16 and set(seen) <= {0, 1, 2}
    with pytest.raises(SchemaError, match=re.escape("row 'x' (index 0) has no field 'answer'")):
        vlrl.Trainer(vlrl.load_config(overrides=overrides(tmp_path / "bad", tiny_model_dir)),
                     train_dataset=[{"id": "x", "image": rows[0]["image"], "problem": "p", "task": "t"}])


def test_score_completions_equals_vlrl_rewards_score(tmp_path, capsys):
    lines = [{"id": "a", "completion": "<think>x</think><answer>3</answer>", "answer": "3", "task": "count"},
             {"id": "b", "completion": "<answer>(C)</answer>", "answer": "B", "task": "mcq"},
             {"id": "c", "completion": "<answer>[0, 0, 10, 10]</answer>", "answer": "[0, 0, 10, 20]",
              "task": "grounding", "image_sizes": [[50, 50]]}]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(ln) + "\n" for ln in lines))
    assert main(["rewards", "score", str(path), "-o", str(tmp_path / "cli.jsonl"), "--quiet", "workers=0"]) == 0
    cli = [json.loads(t) for t in (tmp_path / "cli.jsonl").read_text().splitlines()]
    assert vlrl.score_completions(path, overrides={"workers": 0}) == cli
    assert vlrl.score_completions(lines, overrides={"workers": 0}, output=tmp_path / "py.jsonl") == cli
    assert (tmp_path / "py.jsonl").read_text() == (tmp_path / "cli.jsonl").read_text()
    # by hand: grounding IoU of [0,0,10,10] with [0,0,10,20] = 100 / 200
    assert cli[2]["accuracy"] == pytest.approx(0.5)


def test_build_dataset_equals_vlrl_data_build_also_from_a_dataset_in_memory(tmp_path):
    from data_pipelines.synthetic.shapes import build_shapes_dataset

    build_shapes_dataset(tmp_path / "src", train_rows_per_task=6, eval_rows_per_task=2, seed=1)
    columns = {"image": "images", "problem": "problem", "answer": "answer", "task": "task"}
    on_disk = {"kind": "hf", "name": "shapes", "params": {"path": str(tmp_path / "src"), "columns": columns}}
    yaml_path = tmp_path / "build.yaml"
    yaml_path.write_text(json.dumps({"sources": [on_disk], "output_dir": str(tmp_path / "cli")}))
    assert main(["data", "build", str(yaml_path)]) == 0
    card = vlrl.build_dataset(yaml_path, output_dir=tmp_path / "py")
    memory = datasets.load_from_disk(str(tmp_path / "src"))
    in_memory = {**on_disk, "params": {"dataset": memory, "columns": columns}}
    card_mem = vlrl.build_dataset(sources=[in_memory], output_dir=tmp_path / "mem")

    def rl(out):
        d = datasets.load_from_disk(str(out / "rl"))
        return {split: [(r["id"], r["problem"], r["answer"], r["task"]) for r in d[split]] for split in d}

    assert rl(tmp_path / "py") == rl(tmp_path / "cli") == rl(tmp_path / "mem")
    assert card["outputs"] == card_mem["outputs"] and card["outputs"]["rl_train"]["rows"] > 0
    assert "<in memory: Dataset" in (tmp_path / "mem" / "build_config.yaml").read_text()
