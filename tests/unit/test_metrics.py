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


def scalars(tensorboard_dir, tag):
    """(step, value) of every event of `tag` TensorBoard reads from the directory's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tensorboard_dir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def tensorboard_logger(run_dir):
    """A MetricsLogger sending to accelerate's TensorBoard tracker in RUN_DIR/tensorboard, as the trainer's."""
    from accelerate.tracking import TensorBoardTracker

    from vlrl.metrics import MetricsLogger

    tracker = TensorBoardTracker("", run_dir / "tensorboard")
    return MetricsLogger(run_dir, log=tracker.log), tracker


def test_truncate_events_drops_later_steps_from_every_event_file(tmp_path):
    first, tracker = tensorboard_logger(tmp_path)
    tracker.start()
    for step in (1, 2, 3):
        first.log(step, {"reward/mean": float(step), "rollout/length_mean": float("nan")})
    tracker.finish()
    with (next((tmp_path / "tensorboard").glob("events.*"))).open("ab") as f:
        f.write(b"\x07\x00\x00")  # a record cut short by a kill
    resumed, tracker = tensorboard_logger(tmp_path)  # as the trainer does on resume from step 2: trim, then
    resumed.truncate_after(2)                         # start the trackers, then log step 3 again
    tracker.start()
    resumed.log(3, {"reward/mean": 30.0})
    tracker.finish()
    assert scalars(tmp_path / "tensorboard", "reward/mean") == [(1, 1.0), (2, 2.0), (3, 30.0)]
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["reward/mean"] for line in lines] == [1.0, 2.0, 30.0]
    assert lines[0]["rollout/length_mean"] is None  # NaN: null in the file, not sent to the trackers


def test_summary_table_per_source(tmp_path):
    from vlrl.metrics import summary_table

    lines = [
        {"step": 0, "eval/accuracy": 0.1, "eval/accuracy/colour": 0.0, "eval/accuracy/count": 0.2},
        {"step": 1, "reward/mean": 0.5, "reward/accuracy": 0.25, "reward/colour/mean": 0.4,
         "reward/colour/accuracy": 0.0, "reward/count/mean": 0.6, "reward/count/accuracy": 0.5},
        {"step": 2, "reward/mean": 1.0, "reward/accuracy": 0.75, "reward/colour/mean": 0.8,
         "reward/colour/accuracy": 0.5, "reward/count/mean": 1.2, "reward/count/accuracy": None},
        {"step": 2, "eval/accuracy": 0.9, "eval/accuracy/colour": 0.85, "eval/accuracy/count": 0.95},
    ]
    table = summary_table(lines, seconds=95.4, first_step=0, last=10).splitlines()
    assert table[0].split() == ["source", "eval", "acc", "start", "eval", "acc", "end", "train", "acc", "(last",
                                "2)", "train", "reward"]
    # colour: train accuracy mean(0.0, 0.5) = 0.25, reward mean(0.4, 0.8) = 0.60; count's accuracy at step 2
    # did not apply (None), so its mean is step 1's 0.50.
    assert table[1].split() == ["colour", "0.00", "0.85", "0.25", "0.60"]
    assert table[2].split() == ["count", "0.20", "0.95", "0.50", "0.90"]
    assert table[3].split() == ["all", "0.10", "0.90", "0.50", "0.75"]
    assert table[4] == "steps 1-2 in 1 min 35 s"
    resumed = summary_table(lines, seconds=3, first_step=1, last=1).splitlines()
    assert resumed[1].split() == ["colour", "0.00", "0.85", "0.50", "0.80"] and resumed[-1] == "step 2 in 3 s"
