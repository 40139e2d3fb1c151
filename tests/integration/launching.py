"""`accelerate launch` of a worker script for the multi-process tests, under a time limit: a hang (a collective
that one rank never joins) fails the test instead of blocking CI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vlrl.metrics import read_metrics

REPO = Path(__file__).resolve().parents[2]
LAUNCH_TIMEOUT_S = 240  # runs take ~25-60 s on two busy cores; a hang is cut here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_launch(launch_args: list[str], timeout_s: float = LAUNCH_TIMEOUT_S) -> str:
    """`accelerate launch LAUNCH_ARGS` on CPU with this checkout first on the path; returns the output."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *launch_args]
    # vlrl may be installed from another checkout: the worker must import this one.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and every rank
        out, _ = proc.communicate()
        pytest.fail(f"multi-process run hung (> {timeout_s} s); output tail:\n{out[-4000:]}")
    assert proc.returncode == 0, f"multi-process run failed:\n{out[-6000:]}"
    return out


def comparable(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the timings."""
    return [{k: v for k, v in line.items() if not k.startswith("perf/")} for line in read_metrics(run_dir)]
