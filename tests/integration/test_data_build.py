"""`vlrl data build` end to end: synthetic shapes + handwritten digits, `vlrl serve` as the teacher over HTTP on
loopback, a build killed mid-stage and rerun, the card, and the RL set trained on by `vlrl train` unchanged."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import datasets
import yaml
from serve_process import running_server

from data_pipelines.build import build
from data_pipelines.config import BuildConfig
from vlrl.config_loader import load_config
from vlrl.data.schema import load_rows, validate_row

ROWS_PER_TASK = 3  # 4 tasks -> 12 rows, every one with an image
SOURCES = [
    {"kind": "shapes", "params": {"tasks": ["colour", "count"], "rows_per_task": ROWS_PER_TASK}},
    {"kind": "digits", "params": {"tasks": ["sum", "grounding"], "rows_per_task": ROWS_PER_TASK}},
]


def served(root_url: str) -> int:
    with urllib.request.urlopen(root_url + "/health", timeout=10) as response:
        return json.load(response)["requests_served"]


def settled(root_url: str, quiet_s: float = 2.0, limit_s: float = 60.0) -> int:
    """The server's request count once it has stopped changing for `quiet_s`."""
    deadline = time.monotonic() + limit_s
    last = served(root_url)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = served(root_url)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the server kept answering for {limit_s} s after the build was killed")


def cached_replies(out: Path) -> int:
    path = out / "teacher_cache.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]


def write_config(path: Path, out: Path, base_url: str) -> Path:
    cfg = {
        "output_dir": str(out),
        "sources": SOURCES,
        "teacher": {"kind": "openai", "base_url": base_url, "model": "tiny", "max_concurrency": 1, "batch_size": 2},
        "caption": {"max_tokens": 6},
        "distill": {"max_tokens": 6},
        "rewrite": {"max_tokens": 6},
        "curate": {"eval_fraction": 0.25},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_build_over_http_survives_a_kill_and_repeats_no_answered_request(tiny_model_dir, tmp_path):
    out = tmp_path / "data"
    with running_server(tiny_model_dir, tmp_path / "serve.log") as (base_url, root):
        config = write_config(tmp_path / "build.yaml", out, base_url)
        command = [sys.executable, "-m", "vlrl.cli", "data", "build", str(config)]
        # First run: killed (SIGKILL, no chance to clean up) once the server has answered 5 requests, i.e.
        # inside the caption stage (12 requests).
        with open(tmp_path / "run1.log", "w") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 180
            while served(root) < 5:
                assert proc.poll() is None, (tmp_path / "run1.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the build made no progress"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        # A request in flight at the kill still finishes on the server (and counts there): wait until it has.
        first_served = settled(root)
        kept = cached_replies(out)
        # Every answered request is cached, except at most the one in flight when the kill came.
        assert first_served >= 5 and first_served - 1 <= kept <= first_served
        assert not (out / "card.json").exists()

        # Second run: completes, and sends exactly the requests the cache had no reply for.
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
        total = cached_replies(out)
        assert served(root) - first_served == total - kept
        card = json.loads((out / "card.json").read_text())
        teach = {s["stage"]: s["stats"] for s in card["stages"] if "asked" in s["stats"]}
        caption = teach["caption"]
        assert caption["cached"] == kept and caption["asked"] + caption["shared"] == 12 - kept
        assert sum(s["asked"] for s in teach.values()) == total - kept

        # Third run: every teacher reply comes from the cache.
        again = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert served(root) - first_served == total - kept

    # The card accounts for every row: collect -> each stage's out = next stage's in, drops make up the rest.
    stages = {s["stage"]: s for s in card["stages"]}
    assert stages["collect"]["rows_out"] == 4 * ROWS_PER_TASK
    for s in card["stages"]:
        if s["stage"] not in ("collect", "curate"):
            assert s["rows_in"] - s["rows_out"] == sum(s["drops"].values()), s
    drops = [json.loads(line) for line in (out / "drops.jsonl").read_text().splitlines()]
    assert len(drops) == card["dropped"] and all(d["id"] and d["reason"] for d in drops)
    # The random tiny teacher writes no <answer> tags, so verify keeps no chain, and says why.
    assert stages["verify"]["drops"].get("no_answer_tag", 0) + stages["verify"]["drops"].get("answer_mismatch", 0) \
        == stages["verify"]["rows_in"] - stages["verify"]["rows_out"]

    # The RL set is schema v1 and has every collected row (none failed curation).
    rl = datasets.load_from_disk(str(out / "rl"))
    assert len(rl["train"]) + len(rl["test"]) == 4 * ROWS_PER_TASK and len(rl["test"]) >= 1
    for i, raw in enumerate(load_rows(str(out / "rl"), "train")):
        validate_row(raw, i)


def test_programmatic_teacher_build_keeps_verified_chains(tmp_path):
    cfg = load_config(BuildConfig, None, [f"output_dir={tmp_path / 'p'}", f"sources={json.dumps(SOURCES)}",
                                          "teacher.kind=programmatic"])
    card = build(cfg)
    stages = {s["stage"]: s for s in card["stages"]}
    # Exact captions and chains from the scenes: every chain verifies against the generators' answers.
    assert stages["verify"]["rows_out"] == 4 * ROWS_PER_TASK and card["dropped"] == 0
    chains = datasets.load_from_disk(str(tmp_path / "p" / "chains"))["train"]
    assert len(chains) == 4 * ROWS_PER_TASK
    assert all(row["reasoning"].rstrip().endswith("</answer>") for row in chains)
    assert all(json.loads(row["meta"])["caption"] for row in chains)


def test_rl_set_trains_with_vlrl_train_unchanged(tmp_path):
    cfg = load_config(BuildConfig, None, [f"output_dir={tmp_path / 'd'}", f"sources={json.dumps(SOURCES)}"])
    build(cfg)
    # model.path=tiny: the tiny model's vocabulary comes from this set (the digits questions' words are not the
    # demo's, and unknown words are an error before training).
    run = subprocess.run(
        [sys.executable, "-m", "vlrl.cli", "train", f"data.path={tmp_path / 'd' / 'rl'}",
         "model.path=tiny", f"trainer.output_dir={tmp_path / 'run'}", "trainer.total_steps=2",
         "trainer.eval_every=2", "data.prompts_per_step=4", "rollout.group_size=2", "model.max_pixels=12544",
         "reward.workers=0"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss/loss" in m] == [1, 2]
    assert any(k.startswith("eval/accuracy/") for m in metrics for k in m)  # the held-out split is evaluated
