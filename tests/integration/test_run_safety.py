"""A crash or a second `vlrl train` loses no run: damaged checkpoints are skipped on resume, TensorBoard keeps
one value per step, an existing run is refused unless resumed or overwritten, checkpoints are also taken by
time; and what `vlrl train` prints (the first-step line, the bar's train accuracy, the final table)."""

from __future__ import annotations

import json
import re

import pytest

from vlrl.checkpoint import STATE_FILE, checkpoint_problem
from vlrl.cli import main
from vlrl.config_loader import save_config
from vlrl.metrics import read_metrics
from vlrl.run_dir import RunDirError, check_run_dir
from vlrl.trainer import Trainer


def checkpoints(run) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def tensorboard_scalars(run, tag) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_resume_skips_a_checkpoint_killed_mid_write_and_trims_tensorboard(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    cfg = tiny_config("trainer.total_steps=3", "trainer.save_every=1", "trainer.keep_checkpoints=0",
                      "trainer.save_every_minutes=0")
    Trainer(cfg).fit()
    assert checkpoints(run) == ["step_000001", "step_000002", "step_000003"]
    # A kill while step 3 was saved, as older versions left it: a 0-byte trainer_state.pt. And a kill during
    # a later save: its half-written temporary directory.
    (run / "checkpoints" / "step_000003" / STATE_FILE).write_bytes(b"")
    partial = run / "checkpoints" / ".step_000004.partial"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    capsys.readouterr()

    assert main(["train", "--resume", str(run), "trainer.progress_bar=false"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"skipping \S*step_000003: trainer_state.pt is truncated or damaged \(0 bytes\)", out), out
    assert re.search(r"resuming from \S*step_000002 at step 2 of 3", out), out
    # Step 3 was trained again and saved whole over the damaged one; the partial directory is gone.
    assert checkpoints(run) == ["step_000001", "step_000002", "step_000003"]
    assert all(checkpoint_problem(run / "checkpoints" / name) is None for name in checkpoints(run))
    assert (run / "final").resolve() == (run / "checkpoints" / "step_000003").resolve()

    steps = [ln for ln in read_metrics(run) if "reward/mean" in ln]
    assert [ln["step"] for ln in steps] == [1, 2, 3]
    # TensorBoard reads each step once, with the values metrics.jsonl holds: step 3's are the resumed run's
    # (its stage times differ from the first run's step 3, which was dropped).
    for tag in ("reward/mean", "perf/rollout_s"):
        scalars = tensorboard_scalars(run, tag)
        assert [s for s, _ in scalars] == [1, 2, 3], tag
        assert [v for _, v in scalars] == pytest.approx([ln[tag] for ln in steps], rel=1e-6), tag


def test_timed_checkpoints_follow_the_clock(tiny_config, tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(tiny_config("trainer.total_steps=3", "trainer.save_every=0", "trainer.save_every_minutes=1",
                                  "trainer.keep_checkpoints=0"))
    now = [1000.0]
    trainer.clock = lambda: now[0]
    train_step = trainer.train_step

    def step_of_35_seconds(step):
        now[0] += 35
        return train_step(step)

    trainer.train_step = step_of_35_seconds
    trainer.fit()
    # 35 s after the start: not due; 70 s: due (>= 60), the clock restarts; 35 s later: not due, but step 3
    # is the last step, which is always saved.
    assert checkpoints(run) == ["step_000002", "step_000003"]


def test_caches_are_not_a_run(tmp_path):
    (tmp_path / "tiny_model").mkdir()
    (tmp_path / "tiny_model" / "config.json").write_text("{}")
    (tmp_path / "data").mkdir()
    (tmp_path / "config.yaml").write_text("")
    (tmp_path / "tensorboard").mkdir()  # empty: nothing logged yet
    check_run_dir(tmp_path, resume=False, overwrite=False)
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n')
    with pytest.raises(RunDirError, match=r"already holds a run \(metrics.jsonl\)"):
        check_run_dir(tmp_path, resume=False, overwrite=False)
    with pytest.raises(RunDirError, match="give one of them"):
        check_run_dir(tmp_path, resume=True, overwrite=True)


def old_run(run):
    """A run directory as an earlier run left it, with the caches a default run builds."""
    (run / "checkpoints" / "step_000007").mkdir(parents=True)
    (run / "tensorboard").mkdir()
    (run / "tensorboard" / "events.out.tfevents.old").write_bytes(b"old")
    (run / "metrics.jsonl").write_text('{"step": 7, "reward/mean": 0.5}\n')
    for cache in ("tiny_model", "data"):
        (run / cache).mkdir()
        (run / cache / "kept").write_text("cache")


def test_train_refuses_a_directory_that_holds_a_run(tmp_path, capsys):
    run = tmp_path / "run"
    old_run(run)
    assert main(["train", f"trainer.output_dir={run}", "trainer.device=cpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "already holds a run (metrics.jsonl, tensorboard/, checkpoints/)" in err
    for way_out in (f"vlrl train --resume {run}", "trainer.output_dir=NEW_DIR", "--overwrite"):
        assert way_out in err, way_out
    assert (run / "metrics.jsonl").read_text() == '{"step": 7, "reward/mean": 0.5}\n'  # untouched
    assert main(["train", "--resume", str(run), "--overwrite"]) == 2


def test_overwrite_clears_the_old_run_keeps_caches_and_reports_progress(tiny_config, tmp_path, capsys):
    run = tmp_path / "run"
    old_run(run)
    recipe = tmp_path / "recipe.yaml"
    save_config(tiny_config("trainer.total_steps=1", "trainer.progress_bar=true", "trainer.eval_every=1"), recipe)
    assert main(["train", str(recipe), "--overwrite"]) == 0
    captured = capsys.readouterr()
    lines = read_metrics(run)
    assert [ln["step"] for ln in lines] == [0, 1, 1]  # eval, step, eval: nothing of the old run's step 7
    assert checkpoints(run) == ["step_000001"]
    assert [p.name for p in (run / "tensorboard").iterdir() if p.name.endswith(".old")] == []
    assert (run / "tiny_model" / "kept").exists() and (run / "data" / "kept").exists()

    # Before the slow first step, a line says what it does; the bar shows that step's own train accuracy.
    assert "step 1/1: sampling 4 prompts x 4 completions (16, up to 6 tokens each)" in captured.out
    step = lines[1]
    assert f"acc={step['reward/accuracy']:.3f}" in captured.err and f"reward={step['reward/mean']:.3f}" in captured.err
    # The final table: one row per data source and overall, from the evaluations at steps 0 and 1.
    table = {ln.split()[0]: ln.split()[1:] for ln in captured.out.splitlines() if ln.startswith(("shapes", "all"))}
    assert set(table) == {"shapes_colour", "shapes_count", "all"}
    assert table["all"][:2] == [f"{lines[0]['eval/accuracy']:.2f}", f"{lines[2]['eval/accuracy']:.2f}"]
    assert table["shapes_count"][3] == f"{step['reward/shapes_count/mean']:.2f}"
    assert re.search(r"^step 1 in \d+", captured.out, re.M), captured.out
    assert json.loads(json.dumps(step))  # the metrics line itself is intact


@pytest.mark.parametrize("is_main, own_clock, main_says, due", [
    (True, 59.0, None, False), (True, 61.0, None, True),  # the main process reads its clock and sends it
    (False, 1e6, False, False), (False, 0.0, True, True),  # another rank follows the main process, not its clock
])
def test_every_rank_saves_when_the_main_process_says(monkeypatch, is_main, own_clock, main_says, due):
    import types

    import torch

    import vlrl.trainer
    from vlrl.config import Config

    sent = []

    def broadcast(tensor, from_process=0):  # what rank 0 sends reaches every rank
        sent.append(int(tensor.item()))
        return tensor if is_main else torch.tensor([int(main_says)])

    monkeypatch.setattr(vlrl.trainer, "broadcast", broadcast)
    trainer = Trainer.__new__(Trainer)  # only the decision: no model
    trainer.cfg = Config()
    trainer.cfg.trainer.save_every, trainer.cfg.trainer.save_every_minutes = 100, 1.0
    trainer.accelerator = types.SimpleNamespace(is_main_process=is_main, device=torch.device("cpu"))
    trainer.clock, trainer._last_save = (lambda: own_clock), 0.0
    assert trainer._save_due(7, done=False) is due
    assert len(sent) == 1  # every rank takes part in the broadcast, whatever it decides
    assert trainer._save_due(200, done=False) and trainer._save_due(7, done=True)  # by step: no broadcast
    assert len(sent) == 1
