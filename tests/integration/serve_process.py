"""`vlrl serve` started as a subprocess on loopback, for the tests that need a real teacher server."""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

STARTUP_TIMEOUT_S = 120


@contextlib.contextmanager
def running_server(model_dir, log: Path, max_new_tokens: int = 32):
    """Yield ``(base_url_v1, root_url)`` of `python -m vlrl.cli serve MODEL --port 0` until the block ends."""
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "vlrl.cli", "serve", str(model_dir), "--port", "0",
                                 "--model-name", "tiny", "--max-new-tokens", str(max_new_tokens), "--device", "cpu",
                                 "--dtype", "float32"],
                                stdout=subprocess.PIPE, stderr=err, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        url = None
        while url is None:
            try:
                line = lines.get(timeout=STARTUP_TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"no 'serving' line in {STARTUP_TIMEOUT_S} s; stderr:\n{log.read_text()[-3000:]}")
            match = re.match(r"serving \S+ on (http://\S+)", line)
            url = match.group(1) if match else None
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}; stderr:\n{log.read_text()[-3000:]}")
        yield url + "/v1", url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
