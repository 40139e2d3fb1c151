"""Bad training data through the trainer and `vlrl train`: problems found at start-up stop the run in one message
(exit 2, no traceback); long prompts are dropped and listed; a row whose image fails to decode mid-run is skipped,
replaced and counted, in training and in evaluation."""

from __future__ import annotations

import io
import json
import logging

import datasets
import numpy as np
import PIL.Image

from data_pipelines.synthetic.shapes import shape_rows
from vlrl.cli import main
from vlrl.data.rows import RowReader
from vlrl.data.schema import SCHEMA_FEATURES
from vlrl.metrics import read_metrics
from vlrl.startup import DROPPED_ROWS_FILE
from vlrl.trainer import COMPLETIONS_FILE, Trainer


def _png(image: PIL.Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _truncated_png() -> bytes:
    """56x40 noise whose header reads but whose pixels are cut short."""
    pixels = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    data = _png(PIL.Image.fromarray(pixels))
    return data[: len(data) // 2]


def _rows(n: int, split: str, seed: int = 0) -> list[dict]:
    rows = shape_rows("colour", n, seed=seed, split=split)
    return [dict(row, images=[{"bytes": _png(im), "path": None} for im in row["images"]]) for row in rows]


def _dataset(rows: list[dict]) -> datasets.Dataset:
    if not rows:  # from_list cannot type an empty list: an empty selection of a typed dataset
        return datasets.Dataset.from_list(_rows(1, "empty"), features=SCHEMA_FEATURES).select([])
    return datasets.Dataset.from_list(rows, features=SCHEMA_FEATURES)


def _save(path, train: list[dict], test: list[dict]) -> str:
    datasets.DatasetDict(train=_dataset(train), test=_dataset(test)).save_to_disk(str(path))
    return str(path)


def _train_cli(tiny_model_dir, tmp_path, data: str, *extra: str) -> int:
    return main(["train", f"model.path={tiny_model_dir}", f"data.path={data}", f"trainer.output_dir={tmp_path / 'run'}",
                 "trainer.device=cpu", "trainer.progress_bar=false", "data.source_weights={}", *extra])


def test_start_up_problems_stop_vlrl_train_in_one_message(tiny_model_dir, tmp_path, capsys):
    train = _rows(6, "train")
    train[4]["id"] = train[1]["id"]
    train[2].update(task="grounding", answer="[0, 0, 80, 20]")  # the image is 56x56
    data = _save(tmp_path / "bad", train, _rows(2, "test"))
    capsys.readouterr()  # the save's progress bars
    assert _train_cli(tiny_model_dir, tmp_path, data) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith(f"error: data.path={data}, split 'train' (data.train_split): 2 problems in 6 rows")
    assert f"row {train[1]['id']!r} (index 1): field 'id' is not unique: 2 rows have it (indices 1, 4)" in err
    assert f"row {train[2]['id']!r} (index 2): field 'answer' box [0.0, 0.0, 80.0, 20.0] is outside its 56x56" in err

    empty_eval = _save(tmp_path / "empty_eval", _rows(4, "train"), [])
    capsys.readouterr()
    assert _train_cli(tiny_model_dir, tmp_path, empty_eval) == 2
    assert f"error: data.path={empty_eval}, split 'test' (data.eval_split) has no rows" in capsys.readouterr().err

    legacy = tmp_path / "legacy"
    datasets.Dataset.from_dict({"id": ["a"], "question": ["q"], "answer": ["1"], "task": ["t"]}).save_to_disk(str(legacy))
    capsys.readouterr()
    assert _train_cli(tiny_model_dir, tmp_path, str(legacy)) == 2
    assert "missing required columns ['images', 'problem']" in capsys.readouterr().err


def test_prompts_over_the_limit_are_dropped_and_listed(tiny_config, tmp_path, caplog):
    train = _rows(6, "train")
    train[3].update(id="long-problem", problem=" ".join(["red"] * 15000) + " ?")  # ~15,000 tokens
    data = _save(tmp_path / "long", train, _rows(2, "test"))
    with caplog.at_level(logging.WARNING):
        trainer = Trainer(tiny_config(f"data.path={data}"))  # data.max_prompt_tokens: null -> 8192
    assert len(trainer.train_rows) == 5 and "long-problem" not in trainer.train_rows["id"]
    lines = [json.loads(line) for line in (tmp_path / "run" / DROPPED_ROWS_FILE).read_text().splitlines()]
    assert [(ln["id"], ln["index"], ln["limit"], ln["reason"]) for ln in lines] == [
        ("long-problem", 3, 8192, "prompt_tokens")]
    assert lines[0]["tokens"] > 15000
    assert "dropped 1 of 6 rows, their prompts being over data.max_prompt_tokens=8192" in caplog.text
    assert "'long-problem'" in caplog.text


def test_rows_that_fail_to_decode_mid_run_are_skipped_counted_and_replaced(tiny_config, tmp_path, caplog):
    train, test = _rows(6, "train"), _rows(3, "test")
    train[2]["images"] = [{"bytes": _truncated_png(), "path": None}]
    test[1]["images"] = [{"bytes": _truncated_png(), "path": None}]
    data = _save(tmp_path / "corrupt", train, test)
    # 2 steps of 4 prompts over 6 rows: the shuffled epoch reaches every row, the corrupt one included.
    cfg = tiny_config(f"data.path={data}", "trainer.total_steps=2", "trainer.eval_every=2", "trainer.save_completions=1")
    with caplog.at_level(logging.WARNING):
        trainer = Trainer(cfg)
        trainer.fit()
    expected = [len(RowReader(trainer.train_rows).step_rows(trainer.sampler, s, range(4))[1]) for s in range(2)]
    assert sum(expected) >= 1
    metrics = read_metrics(cfg.trainer.output_dir)
    assert [m["data/skipped_rows"] for m in metrics if "reward/mean" in m] == expected
    assert [m["eval/skipped_rows"] for m in metrics if "eval/accuracy" in m] == [1, 1]
    completions = [json.loads(line) for line in (tmp_path / "run" / COMPLETIONS_FILE).read_text().splitlines()]
    for step in (1, 2):  # every step kept its 4 prompts x 4 samples, none of them the corrupt row
        assert sum(c["step"] == step for c in completions) == 16
    # completions carry no row id; the corrupt row's image is the only 56x40 one
    assert all(c["image_sizes"] == [[56, 56]] for c in completions)
    assert f"row {train[2]['id']!r} (index 2): field 'images[0]' cannot be decoded: OSError" in caplog.text
    assert f"skipped: row {test[1]['id']!r} (index 1)" in caplog.text
