"""scripts/gpu_check.sh, the one command for a lent GPU: its `--tiny` CPU rehearsal end to end, a part killed at
its limit while the check goes on, the JSON kept up to date between parts, and the markdown report."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = ["install", "env", "model", "gpu_tests", "bench_step", "bench_rollout", "gpu_tests_3b"]
TEST_KEYS = {"tests", "passed", "failed", "errors", "skipped", "failed_tests", "peak_gib"}
FIGURE_KEYS = {
    "install": {"action", "missing_before", "missing_after"},
    "env": {"gpu_name", "gpu_count", "gpu_memory_gib", "compute_capability", "driver", "cuda_available", "torch",
            "cuda", "cudnn", "transformers", "accelerate", "python", "cpu_count", "matmul_bf16_tflops"},
    "model": {"path", "like", "size_gib"},
    "gpu_tests": TEST_KEYS,
    "bench_step": {"device", "backend", "shared_prompt", "prompts", "group_size", "image_size", "new_tokens", "warmup",
                   "steps_timed", "step_s", "rollout_s", "reward_s", "update_s", "old_logprobs_s", "rollout_tok_s",
                   "step_tok_s", "update_tflops", "mfu", "peak_gib", "completion_len_mean", "perf"},
    "bench_rollout": {"device", "prompts", "group_size", "image_size", "new_tokens", "image_tokens", "prompt_len",
                      "repeats", "backends", "engine_over_cached", "engine_over_reference", "graphs_over_eager",
                      "error"},
    "gpu_tests_3b": TEST_KEYS,
}


def load_driver(name: str = "gpu_check"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve the module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


@pytest.mark.slow
def test_tiny_rehearsal_writes_every_part_its_figures_and_the_log(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--tiny", "--out", str(out)],
                          env=child_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["mode"] == "tiny" and result["finished_at"]
    assert list(result["parts"]) == PARTS
    for name, part in result["parts"].items():
        assert part["status"] == ("skipped" if name == "install" else "ok"), (name, part)
        assert set(part["figures"]) == FIGURE_KEYS[name], name
        assert part["seconds"] is not None
    parts = {name: part["figures"] for name, part in result["parts"].items()}
    assert parts["env"]["cuda_available"] is False and parts["env"]["torch"]
    assert Path(parts["model"]["path"]).name == "tiny_model" and parts["model"]["size_gib"] > 0
    for name in ("gpu_tests", "gpu_tests_3b"):  # collected, and skipped without a GPU
        assert parts[name]["tests"] >= 1 and parts[name]["skipped"] == parts[name]["tests"], parts[name]
        assert parts[name]["failed"] == 0 and parts[name]["errors"] == 0
    step = parts["bench_step"]
    assert step["steps_timed"] == 1 and step["step_s"] > 0 and step["rollout_tok_s"] > 0
    roll = parts["bench_rollout"]
    assert set(roll["backends"]) == {"engine", "engine-eager", "cached", "reference"} and roll["error"] is None
    for figures in roll["backends"].values():  # 2 prompts x G=2 x 16 forced tokens each
        assert figures["tokens"] == 64 and figures["rollout_s"] > 0 and figures["rollout_tok_s"] > 0
    assert roll["engine_over_cached"] > 0
    log = (out / "gpu_check.log").read_text()
    for name in PARTS[1:]:
        assert f"== {name}: ok" in log
    assert "bench_rollout.py" in log and "| gpu_tests_3b | ok |" in proc.stdout  # the report, on the console too

    report = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check_report.py"), str(out / "gpu_check.json")],
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    assert "| bench_rollout | ok |" in report.stdout and "| engine-eager |" in report.stdout
    assert "Whole GRPO step" in report.stdout


def test_a_part_over_its_limit_is_killed_and_the_check_goes_on(tmp_path):
    gc = load_driver()
    pidfile = tmp_path / "grandchild.pid"
    json_path = tmp_path / "out" / "gpu_check.json"
    reader = ("import json, sys; p = json.load(open(sys.argv[1]))['parts'];"
              "ok = [p[n]['status'] for n in ('slow', 'reads', 'fails')] == ['timeout', 'running', 'pending'];"
              "sys.exit(0 if ok else 1)")

    def command(*cmd):
        return lambda check, part, deadline: gc.status_of(check.call(list(cmd), deadline))

    plan = [
        # a part that never ends, with a grandchild: killed at its limit, the grandchild with it
        gc.Part("slow", 10, "sleeps", command("bash", "-c", f"sleep 300 & echo $! > {pidfile}; wait"), needs_cuda=False),
        # the JSON on disk already holds the part before and says which one runs
        gc.Part("reads", 120, "reads the JSON", command(sys.executable, "-c", reader, str(json_path)), needs_cuda=False),
        gc.Part("fails", 120, "exits 3", command(sys.executable, "-c", "raise SystemExit(3)"), needs_cuda=False),
        gc.Part("after", 120, "runs after a failure", command(sys.executable, "-c", "print('after')"),
                needs_cuda=False),
        gc.Part("unwanted", 120, "not selected", command(sys.executable, "-c", "raise SystemExit(1)"),
                needs_cuda=False),
    ]
    args = gc.parse_args(["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--budget", "490"])
    args.skip = ["unwanted"]
    check = gc.Check(args, plan)
    rc = check.run()
    check.log.close()

    result = json.loads(json_path.read_text())
    status = {name: part["status"] for name, part in result["parts"].items()}
    assert status == {"slow": "timeout", "reads": "ok", "fails": "failed", "after": "ok", "unwanted": "skipped"}
    assert rc == 1
    assert result["parts"]["fails"]["note"] == "exit code 3; see the log"
    assert result["summary"] == {"timeout": 1, "ok": 2, "failed": 1, "skipped": 1}
    pid = int(pidfile.read_text())
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z"), f"the timed-out part's grandchild {pid} still runs (state {state})"
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert "== slow: timeout" in log and "after\n" in log


def test_requirements_and_junit_counts(tmp_path):
    gc = load_driver()
    probes = load_driver("gpu_check_probes")
    missing = probes.missing_requirements(["pytest>=1", "pytest>=9999", "surely-not-installed-vlrl-pkg>=1"])
    assert len(missing) == 2
    assert missing[0].startswith("pytest>=9999 (") and missing[1].endswith("(not installed)")
    assert any(r.startswith("transformers") for r in probes.project_requirements())

    junit = tmp_path / "junit.xml"
    junit.write_text('<testsuites><testsuite tests="4" failures="1" errors="1" skipped="1">'
                     '<testcase classname="tests.gpu.a" name="t_ok"/>'
                     '<testcase classname="tests.gpu.a" name="t_bad"><failure message="x"/></testcase>'
                     '<testcase classname="tests.gpu.b" name="t_err"><error message="y"/></testcase>'
                     '<testcase classname="tests.gpu.b" name="t_skip"><skipped/></testcase>'
                     '</testsuite></testsuites>')
    assert gc.junit_counts(junit) == dict(tests=4, passed=1, failed=1, errors=1, skipped=1,
                                          failed_tests=["tests.gpu.a::t_bad", "tests.gpu.b::t_err"])
    assert gc.junit_counts(tmp_path / "absent.xml")["tests"] is None


def test_report_of_a_check_cut_short(tmp_path):
    gc = load_driver()
    parts = {p.name: dict(status="pending", seconds=None, limit_s=None, note="", figures=dict(p.figures))
             for p in gc.parts()}
    parts["env"].update(status="ok", seconds=9.0, figures=dict(parts["env"]["figures"], gpu_name="NVIDIA H200",
                                                               torch="2.11.0+cu130", matmul_bf16_tflops=780.0))
    parts["gpu_tests"].update(status="failed", seconds=40.0, figures=dict(
        parts["gpu_tests"]["figures"], tests=1, passed=0, failed=1, errors=0, skipped=0,
        failed_tests=["tests.gpu.test_rollout_engine_gpu::test_cuda_graph"]))
    parts["bench_rollout"].update(status="timeout", seconds=105.0, note="killed at its time limit", figures=dict(
        parts["bench_rollout"]["figures"], prompts=8, group_size=8, backends={"engine": dict(rollout_s=2.0)}))
    state = dict(mode="full", command="bash scripts/gpu_check.sh", started_at="2027-01-01T00:00:00+00:00",
                 elapsed_s=300.0, budget_s=540.0, commit="abc", parts=parts)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(state))
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check_report.py"), str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    md = proc.stdout
    assert "NVIDIA H200" in md and "780 TFLOP/s" in md
    assert "| bench_rollout | **timeout** |" in md and "| gpu_tests | **failed** |" in md
    assert "| engine | 2.000 | - |" in md  # measured before the kill; the rest unknown
    assert "tests.gpu.test_rollout_engine_gpu::test_cuda_graph" in md
    assert "Whole GRPO step" not in md  # bench_step measured nothing
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check_report.py")], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2


def test_random_model_of_a_released_shape_is_drawn_on_the_device_asked(tmp_path, monkeypatch):
    """The check's `model` part: `vlrl models random --like … --device cuda` reaches build_random_model, which
    draws the weights there (here a small stand-in shape on CPU; the 3B shape itself needs 15 GB)."""
    import torch

    import vlrl.models.shapes as shapes
    import vlrl.models.tiny as tiny
    from vlrl.cli import main

    seen = {}
    monkeypatch.setattr(tiny, "build_random_model", lambda out, **kw: seen.update(kw) or out)
    assert main(["models", "random", "--like", "qwen2.5-vl-3b", str(tmp_path / "m"), "--device", "cuda"]) == 0
    assert seen["device"] == "cuda" and seen["like"] == "qwen2.5-vl-3b"
    monkeypatch.undo()

    small = dict(family="qwen2_5_vl", source="test", text=dict(tiny.TINY_TEXT, vocab_size=1024),
                 vision=tiny.TINY_VISION["qwen2_5_vl"])
    monkeypatch.setitem(shapes.RELEASED_SHAPES, "small-test", small)
    path = tiny.build_random_model(tmp_path / "small", like="small-test", words=["red", "blue"], device="cpu")
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(path)
    assert model.config.text_config.vocab_size == 1024 and model.dtype == torch.bfloat16
