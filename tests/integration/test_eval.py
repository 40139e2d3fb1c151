"""`vlrl eval` on the tiny model (CPU, offline): a checkpoint's numbers are the trainer's eval metrics at its step,
pass@k/mean@k follow from the written samples, LoRA and sharded checkpoints load, several models make one table,
and bad input is named."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from vlrl.cli import main
from vlrl.config import Config
from vlrl.config_loader import load_config
from vlrl.evaluation import pass_at_k
from vlrl.metrics import read_metrics
from vlrl.trainer import Trainer

RUN = ("data.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=6", "trainer.total_steps=2",
       "trainer.eval_every=2", "trainer.save_every=2", "trainer.progress_bar=false", "trainer.device=cpu",
       "data.max_eval_rows=12", "optim.warmup_steps=0", "data.source_weights={}", "trainer.report_to=[]",
       "reward.workers=0")


def _train(out: Path, model: Path, data: Path, *extra: str) -> Path:
    cfg = load_config(Config, None, [f"model.path={model}", f"data.path={data}", f"trainer.output_dir={out}",
                                     *RUN, *extra])
    Trainer(cfg).fit()
    return out


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, shapes_dir, tmp_path_factory):
    """A 2-step run evaluated at steps 0 and 2 and saved at step 2."""
    return _train(tmp_path_factory.mktemp("eval_run") / "run", tiny_model_dir, shapes_dir)


def _eval(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["eval", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _summary(out: Path) -> list[dict]:
    return json.loads((out / "summary.json").read_text())["models"]


def _trainer_eval(run: Path, step: int) -> dict[str, float]:
    [line] = [m for m in read_metrics(run) if m["step"] == step and "eval/accuracy" in m]
    return {k: v for k, v in line.items() if k.startswith(("eval/accuracy", "eval/reward"))}


def _eval_metrics(summary: dict) -> dict[str, float]:
    return {k: v for k, v in summary["metrics"].items() if k.startswith(("eval/accuracy", "eval/reward"))}


def test_checkpoint_gives_the_trainers_eval_metrics(run_dir, tiny_model_dir, tmp_path, capsys):
    # The run directory resolves to its newest checkpoint (step 2) and its config.yaml.
    code, printed, err = _eval(capsys, str(run_dir), "--out", str(tmp_path / "e"))
    assert code == 0, err
    [s] = _summary(tmp_path / "e")
    assert s["step"] == 2 and s["kind"] == "hf" and s["split"] == "test" and s["rows"] == 12
    assert _eval_metrics(s) == _trainer_eval(run_dir, 2)  # exactly, per data source and overall
    assert {src: v["rows"] for src, v in s["per_source"].items()} == {"shapes_colour": 6, "shapes_count": 6}
    assert s["per_source"]["shapes_count"]["accuracy"] == s["metrics"]["eval/accuracy/shapes_count"]
    assert "accuracy (greedy)" in printed and "shapes_colour" in printed
    lines = [json.loads(x) for x in (tmp_path / "e" / "completions" / f"{s['label']}.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and {ln["decoding"] for ln in lines} == {"greedy"}
    assert {"completion", "answer", "task", "data_source", "id"} <= set(lines[0])  # vlrl rewards score's input
    acc = [ln["scores"]["accuracy"] for ln in lines]
    assert sum(acc) / len(acc) == pytest.approx(s["overall"]["accuracy"])

    # The base model with the run's settings (--config) gives the step-0 evaluation.
    code, _, err = _eval(capsys, str(tiny_model_dir), "--config", str(run_dir / "config.yaml"),
                         "--out", str(tmp_path / "base"))
    assert code == 0, err
    [base] = _summary(tmp_path / "base")
    assert base["step"] is None and _eval_metrics(base) == _trainer_eval(run_dir, 0)

    # An earlier output is refused, and replaced with --overwrite.
    code, _, err = _eval(capsys, str(run_dir / "final"), "--out", str(tmp_path / "e"))
    assert code == 2 and "--overwrite" in err and str(tmp_path / "e") in err


def test_pass_and_mean_at_k_from_seeded_samples(run_dir, tmp_path, capsys):
    args = [str(run_dir / "final"), "eval.k=2", "eval.n=4", "rollout.temperature=1.5", "data.max_eval_rows=6"]
    code, printed, err = _eval(capsys, *args, "--out", str(tmp_path / "a"))
    assert code == 0, err
    [s] = _summary(tmp_path / "a")
    assert (s["k"], s["n"], s["temperature"]) == (2, 4, 1.5) and "pass@2" in printed
    lines = [json.loads(x) for x in (tmp_path / "a" / "completions" / f"{s['label']}.jsonl").read_text().splitlines()]
    sampled = [ln for ln in lines if ln["decoding"] == "sampled"]
    assert len(sampled) == 6 * 4 and [ln["sample"] for ln in sampled[:4]] == [0, 1, 2, 3]
    # By hand from the written samples: per row c = samples with accuracy 1, pass@2 = 1 - C(4-c, 2)/C(4, 2).
    per_row: dict[str, list[float]] = {}
    for ln in sampled:
        per_row.setdefault(ln["id"], []).append(ln["scores"]["accuracy"] or 0.0)
    passes = [1 - math.comb(4 - sum(a >= 1 for a in accs), 2) / math.comb(4, 2) for accs in per_row.values()]
    assert s["overall"]["pass@2"] == pytest.approx(sum(passes) / len(passes))
    assert passes == pytest.approx([pass_at_k(4, sum(a >= 1 for a in accs), 2) for accs in per_row.values()])
    assert s["overall"]["mean@2"] == pytest.approx(sum(sum(a) / 4 for a in per_row.values()) / len(per_row))
    assert len({ln["completion"] for ln in sampled}) > 1  # sampled, not greedy
    # Each row's samples come from its own seed: another batch size draws the same completions.
    code, _, err = _eval(capsys, *args, "eval.batch_size=4", "--out", str(tmp_path / "b"))
    assert code == 0, err
    again = [json.loads(x) for x in (tmp_path / "b" / "completions" / f"{s['label']}.jsonl").read_text().splitlines()]
    assert [ln["completion"] for ln in again if ln["decoding"] == "sampled"] == [ln["completion"] for ln in sampled]
    assert _summary(tmp_path / "b")[0]["overall"] == s["overall"]


def test_lora_checkpoint_and_a_two_model_table(run_dir, tiny_model_dir, shapes_dir, tmp_path, capsys):
    lora = _train(tmp_path / "lora", tiny_model_dir, shapes_dir, "model.lora_rank=4", "model.lora_alpha=8",
                  "optim.lr=0.05")
    out = tmp_path / "cmp"
    code, printed, err = _eval(capsys, str(lora / "final"), str(run_dir / "final"), "--out", str(out))
    assert code == 0, err
    lora_s, plain_s = _summary(out)
    assert lora_s["kind"] == "lora" and plain_s["kind"] == "hf"
    assert _eval_metrics(lora_s) == _trainer_eval(lora, 2)  # base + adapter, loaded as a resume loads it
    assert _eval_metrics(plain_s) == _trainer_eval(run_dir, 2)
    table = (out / "table.txt").read_text()
    assert table.strip() == printed.split("\n\n" + lora_s["label"] + ":")[0].strip()
    header, *body = table.split("\n\n")[0].splitlines()
    assert header.split()[-2:] == [lora_s["label"], plain_s["label"]]
    assert [line.split()[0] for line in body] == ["shapes_colour", "shapes_count", "all"]
    for line in body:
        source, *cells = line.split()
        key = "accuracy" if source == "all" else f"accuracy/{source}"
        assert cells == [f"{s['metrics'][f'eval/{key}']:.3f}" for s in (lora_s, plain_s)]
    assert sorted(p.name for p in (out / "completions").iterdir()) == sorted(
        f"{s['label']}.jsonl" for s in (lora_s, plain_s))

    # Outside its run (no model.lora_* settings) the adapter is read by peft and merged into its base model.
    adapter = tmp_path / "adapter"
    shutil.copytree((lora / "final").resolve(), adapter)
    code, _, err = _eval(capsys, str(adapter), "--config", str(lora / "config.yaml"), "model.lora_rank=0",
                         "--out", str(tmp_path / "merged"))
    assert code == 0, err
    [merged] = _summary(tmp_path / "merged")
    assert merged["kind"] == "lora" and merged["run"] is None
    assert _eval_metrics(merged) == pytest.approx(_trainer_eval(lora, 2), abs=1e-6)


def test_sharded_checkpoint_equals_its_hf_model(tiny_model_dir, shapes_dir, tmp_path, capsys):
    """A torch.distributed.checkpoint of the model, as FSDP2 saves it, is assembled and evaluated."""
    import torch.distributed.checkpoint as dcp
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlrl.checkpoint import MODEL_PREFIX, SHARDED_DIR

    ckpt = tmp_path / "sharded_ckpt"
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    dcp.save({"model": {MODEL_PREFIX + k: v for k, v in model.state_dict().items()}},
             checkpoint_id=str(ckpt / SHARDED_DIR), no_dist=True)
    model.config.save_pretrained(ckpt)
    AutoProcessor.from_pretrained(tiny_model_dir).save_pretrained(ckpt)
    common = ["--data", str(shapes_dir), "data.max_eval_rows=8", "rollout.max_new_tokens=6", "reward.workers=0"]
    assert _eval(capsys, str(ckpt), *common, "--out", str(tmp_path / "s"))[0] == 0
    assert _eval(capsys, str(tiny_model_dir), *common, "--out", str(tmp_path / "h"))[0] == 0
    sharded, hf = _summary(tmp_path / "s")[0], _summary(tmp_path / "h")[0]
    assert sharded["kind"] == "sharded" and sharded["rows"] == 8
    assert sharded["metrics"] == hf["metrics"]


def test_bad_input_is_named(run_dir, shapes_dir, tmp_path, capsys):
    missing = tmp_path / "no_such_model"
    code, _, err = _eval(capsys, str(missing), "--data", str(shapes_dir))
    assert code == 2 and f"MODEL {missing}: no such file or directory" in err
    code, _, err = _eval(capsys, str(run_dir / "final"), "eval.split=validation", "--out", str(tmp_path / "x"))
    assert code == 2 and f"dataset {shapes_dir} has no split 'validation'" in err and "eval.split=NAME" in err
    code, _, err = _eval(capsys, str(run_dir / "final"), "eval.k=4", "eval.n=2", "--out", str(tmp_path / "x"))
    assert code == 2 and "eval.n=2 is below eval.k=4" in err
    code, _, err = _eval(capsys, str(run_dir / "final"), "eval.kk=2", "--out", str(tmp_path / "x"))
    assert code == 2 and "unknown key 'eval.kk'" in err
    empty = tmp_path / "empty_run" / "checkpoints"
    empty.mkdir(parents=True)
    (empty.parent / "config.yaml").write_text("{}\n")
    code, _, err = _eval(capsys, str(empty.parent), "--out", str(tmp_path / "x"))
    assert code == 2 and "no complete checkpoint" in err
    assert not (tmp_path / "x").exists()  # nothing is written when the input is bad


def test_eval_help_explains_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for needle in ("pass@k", "mean@k", "LoRA", "sharded", "config.yaml", "--overwrite", "eval.k", "eval.split",
                   "summary.json", "completions/", "vlrl eval runs/tiny/final", "data.max_eval_rows"):
        assert needle in text, needle
