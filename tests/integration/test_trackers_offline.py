"""trainer.report_to: a CPU run logs the same scalars, the config and its samples to TensorBoard, wandb
(offline), mlflow (file store in the run directory) and trackio (a local directory), read back from what each
tracker wrote; a resume continues the same tracker runs. Runs `vlrl train` in a subprocess: trackio reads its
directory from the environment when it is imported."""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from vlrl.metrics import read_metrics

for module in ("wandb", "mlflow", "trackio"):
    pytest.importorskip(module, reason=f"pip install 'vlrl[trackers]' to test {module}")


def train(args: list[str], env: dict) -> None:
    done = subprocess.run([sys.executable, "-m", "vlrl.cli", "train", *args], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def wandb_records(path: Path):
    """The protobuf records of a .wandb file: a 7-byte header (':W&B', magic, version), then LevelDB-log
    records in 32 KiB blocks (crc32 4, length 2, type 1: full/first/middle/last), read here from the format's
    description since wandb no longer ships a Python reader."""
    from wandb.proto import wandb_internal_pb2

    data, pos, parts = path.read_bytes(), 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # the block's tail is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        parts += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


def wandb_history(run: Path, key: str) -> dict[int, float]:
    out = {}
    for path in sorted(run.glob("wandb/offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            if record.WhichOneof("record_type") == "history":
                items = {i.key or "/".join(i.nested_key): i.value_json for i in record.history.item}
                if key in items:
                    out.setdefault(int(items["_step"]), json.loads(items[key]))  # wandb keeps a step's first value
    return out


def wandb_config_keys(run: Path) -> set[str]:
    return {i.key for path in run.glob("wandb/offline-run-*/run-*.wandb") for record in wandb_records(path)
            if record.WhichOneof("record_type") == "config" for i in record.config.update}


def trackio_history(trackio_dir: Path, key: str) -> dict[int, float]:
    with sqlite3.connect(trackio_dir / "vlrl.db") as db:
        rows = db.execute("SELECT step, metrics FROM metrics WHERE run_name = 'run' ORDER BY id").fetchall()
    return {step: json.loads(metrics)[key] for step, metrics in rows if key in json.loads(metrics)}


def test_every_tracker_gets_the_same_scalars_config_and_samples_and_resume_continues_them(
        tiny_model_dir, shapes_dir, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, trackio_dir = tmp_path / "run", tmp_path / "trackio"
    env = {**os.environ, "WANDB_MODE": "offline", "TRACKIO_DIR": str(trackio_dir), "WANDB_SILENT": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)  # vlrl's default: a file store in the run directory
    args = [f"model.path={tiny_model_dir}", f"data.path={shapes_dir}", f"trainer.output_dir={run}",
            "data.prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=6", "trainer.eval_every=0",
            "trainer.save_every=0", "trainer.progress_bar=false", "trainer.device=cpu", "data.source_weights={}",
            "reward.workers=0", "trainer.log_samples_every=2", "trainer.report_to=[tensorboard,wandb,mlflow,trackio]"]
    train([*args, "trainer.total_steps=3"], env)
    ids = json.loads((run / "trackers.json").read_text())
    train(["--resume", str(run), "trainer.total_steps=4", "trainer.progress_bar=false"], env)
    assert json.loads((run / "trackers.json").read_text()) == ids  # the same tracker runs, continued

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 reads its file store only when told to
    expected = {ln["step"]: ln["reward/mean"] for ln in read_metrics(run) if "reward/mean" in ln}
    assert sorted(expected) == [1, 2, 3, 4]
    tb = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    tb.Reload()
    logged = {
        "tensorboard": {e.step: e.value for e in tb.Scalars("reward/mean")},
        "wandb": wandb_history(run, "reward/mean"),
        "mlflow": {m.step: m.value for m in MlflowClient(tracking_uri=(run / "mlflow").as_uri())
                   .get_metric_history(ids["mlflow"], "reward/mean")},
        "trackio": trackio_history(trackio_dir, "reward/mean"),
    }
    for tracker, values in logged.items():
        assert sorted(values) == [1, 2, 3, 4], tracker
        assert values == pytest.approx(expected, rel=1e-5), tracker

    # The resolved config is each run's config, under the same flat names.
    mlflow_run = MlflowClient(tracking_uri=(run / "mlflow").as_uri()).get_run(ids["mlflow"]).data
    assert mlflow_run.params["rollout.group_size"] == "4" and mlflow_run.params["trainer.total_steps"] == "3"
    assert mlflow_run.tags["resumed.trainer.total_steps"] == "4"  # mlflow params cannot change: a tag
    assert "rollout.group_size" in wandb_config_keys(run)
    # Samples at steps 2 and 4: an image and a text per sample in TensorBoard, a table in wandb, and the
    # run directory's samples/ (each step once across the resume).
    assert {e.step for tag in tb.Tags()["images"] if tag.startswith("samples/") for e in tb.Images(tag)} == {2, 4}
    assert any(tag.startswith("samples/") for tag in tb.Tags()["tensors"])  # text summaries are tensors
    assert list(run.glob("wandb/offline-run-*/files/media/table/samples_*.table.json"))
    steps = [json.loads(ln)["step"] for ln in (run / "samples" / "samples.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == [2, 4] and len(steps) <= 2 * 2 * 2  # at most 2 per source per step
