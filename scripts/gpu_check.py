"""The GPU check: one command for the first minutes a GPU is lent (`bash scripts/gpu_check.sh`, which runs this).

On a bare GPU machine it installs what is missing, reads the machine (GPU, driver, torch, CUDA, a bf16 matmul's
TFLOP/s), builds a random-weight Qwen2.5-VL-3B offline, runs `tests/gpu` and the two GPU benchmarks, and writes
ONE JSON of figures (`gpu_check.json`) and ONE log (`gpu_check.log`) to the output directory: `--out DIR`, else
`$OUT` where set (the device tool brings back what is written there), else `runs/gpu_check/`. The JSON is
rewritten before and after every part, so a check killed half-way still holds every figure measured until then.
`python scripts/gpu_check_report.py gpu_check.json` turns it into markdown for docs/benchmarks.md.

Parts, most valuable figures first, with the seconds of the 9-minute budget each one owns (a part may also use
what the parts before it left unused, never what the parts after it own, so the whole check ends within the
budget and a slow part cannot eat the rest; a part over its time is killed, recorded as `timeout`, and the
check goes on):

    part            owns   what
    install         120 s  only what is missing: carried wheels in .whl/ (offline), then `pip install -e .[dev]`
    env              30 s  GPU name and memory, driver, torch / CUDA / transformers versions, bf16 matmul TFLOP/s
    model            75 s  `vlrl models random --like qwen2.5-vl-3b` (weights drawn on the GPU, 7.5 GB written)
    gpu_tests        60 s  tests/gpu but the 3B recipe: the engine's CUDA graphs vs eager vs cached vs reference
    bench_step       90 s  scripts/bench_step.py: a whole GRPO step, 8 prompts x G=8, 448x448, 256 tokens, bf16
    bench_rollout   105 s  scripts/bench_rollout.py: engine (graphs, eager), cached, reference backends
    gpu_tests_3b     60 s  tests/gpu/test_recipe_3b_shape.py: 2 steps of the 3B recipe through Trainer.fit
                   -----
                   540 s  (`--budget` scales every share)

`--tiny` rehearses the same flow on CPU in a minute or two: no install, the tiny model, the benchmarks' `--device
cpu --tiny` smoke sizes, the GPU tests collected and reported skipped (CUDA is hidden from every part).
Each status is one of ok, failed, timeout, skipped. The exit code is 0 when no part failed or timed out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests import this file as a module, not as a script
from figures_json import finite  # noqa: E402 (after the path it is found on)

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
SCHEMA = "vlrl.gpu_check/1"
LIKE = "qwen2.5-vl-3b"
RECIPE_TEST = "tests/gpu/test_recipe_3b_shape.py"
# Each family's recipe on a released size (three models drawn and trained: over any part's share of the 9 minutes);
# run on its own when a GPU allows: python -m pytest -q tests/gpu/test_families_gpu.py
FAMILIES_TEST = "tests/gpu/test_families_gpu.py"
MIN_PART_S = 5.0  # a part left less than this is skipped ("no time left") rather than started
KILL_GRACE_S = 10.0  # SIGTERM, then this long, then SIGKILL for the part's whole process group


# ----------------------------------------------------------------------------------------------------------- parts


@dataclass
class Part:
    name: str
    owns_s: float  # seconds of the default 540 s budget this part owns
    what: str
    run: Callable[[Check, Part, float], tuple[str, str]]  # (check, part, deadline) -> (status, note)
    figures: dict = field(default_factory=dict)  # every key the part reports, None until measured
    needs_cuda: bool = True


def figures_of_tests() -> dict:
    return dict(tests=None, passed=None, failed=None, errors=None, skipped=None, failed_tests=[], peak_gib=None)


def parts(tiny: bool = False) -> list[Part]:
    return [
        Part("install", 120, "install what is missing", run_install, needs_cuda=False,
             figures=dict(action=None, missing_before=None, missing_after=None)),
        Part("env", 30, "machine, versions, bf16 matmul", run_env, needs_cuda=False, figures=dict(
            gpu_name=None, gpu_count=None, gpu_memory_gib=None, compute_capability=None, driver=None,
            cuda_available=None, torch=None, cuda=None, cudnn=None, transformers=None, accelerate=None,
            python=None, cpu_count=None, matmul_bf16_tflops=None)),
        Part("model", 75, "tiny model built offline" if tiny else f"random {LIKE} built offline", run_model,
             figures=dict(path=None, like=None, size_gib=None)),
        Part("gpu_tests", 60, "tests/gpu but the 3B recipe", run_gpu_tests, figures=figures_of_tests()),
        Part("bench_step", 90, "a whole GRPO step (bench_step.py)", run_bench_step, figures=dict(
            device=None, backend=None, shared_prompt=None, prompts=None, group_size=None, image_size=None,
            new_tokens=None, warmup=None, steps_timed=None, step_s=None, rollout_s=None, reward_s=None,
            update_s=None, old_logprobs_s=None, rollout_tok_s=None, step_tok_s=None, update_tflops=None, mfu=None,
            peak_gib=None, completion_len_mean=None, perf=None)),
        Part("bench_rollout", 105, "rollout backends (bench_rollout.py)", run_bench_rollout, figures=dict(
            device=None, prompts=None, group_size=None, image_size=None, new_tokens=None, image_tokens=None,
            prompt_len=None, repeats=None, backends=None, engine_over_cached=None, engine_over_reference=None,
            graphs_over_eager=None, error=None)),
        Part("gpu_tests_3b", 60, "tests/gpu 3B recipe, 2 steps", run_gpu_tests_3b, figures=figures_of_tests()),
    ]


# ----------------------------------------------------------------------------------------------------- the check


class Check:
    """The state of one check: where it writes, its children's environment, the JSON it keeps up to date."""

    def __init__(self, args: argparse.Namespace, plan: list[Part]):
        self.args = args
        self.plan = plan
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.json_path = self.out / "gpu_check.json"
        self.log_path = self.out / "gpu_check.log"
        self.work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="vlrl_gpu_check_"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.model_dir = self.work / ("tiny_model" if args.tiny else LIKE)
        self.log = open(self.log_path, "w", buffering=1)
        self.cuda = None  # set by the env part: whether torch sees a CUDA device
        self.child: subprocess.Popen | None = None
        self.current: str | None = None
        self.env = dict(os.environ)
        self.env.update(PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
                        PYTHONUNBUFFERED="1", PIP_DISABLE_PIP_VERSION_CHECK="1", HF_HUB_OFFLINE="1",
                        TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        if args.tiny:
            self.env["CUDA_VISIBLE_DEVICES"] = ""  # the same flow on every machine: CPU only, GPU tests skipped
        self.env["VLRL_RANDOM_3B_DIR"] = str(self.model_dir) if not args.tiny else ""
        scale = args.budget / sum(p.owns_s for p in plan) if plan else 1.0
        self.t0 = time.monotonic()
        self.deadlines, total = {}, 0.0
        for p in plan:
            total += p.owns_s * scale
            self.deadlines[p.name] = total
        self.state = {
            "schema": SCHEMA, "mode": "tiny" if args.tiny else "full",
            "command": " ".join(["bash scripts/gpu_check.sh", *map(shlex.quote, args.argv)]),
            "started_at": now_iso(), "finished_at": None, "elapsed_s": 0.0, "budget_s": args.budget,
            "commit": git_commit(), "out": str(self.out), "log": self.log_path.name, "machine": {},
            "parts": {p.name: dict(status="pending", seconds=None, limit_s=None, note="", what=p.what,
                                   commands=[], figures=dict(p.figures)) for p in plan},
            "summary": {},
        }

    # -- output
    def say(self, line: str) -> None:
        """A line to the console and the log (the log alone once the console is gone, e.g. a closed pipe)."""
        try:
            print(line, flush=True)
        except OSError:
            pass
        self.log.write(line + "\n")
        self.log.flush()

    def save(self) -> None:
        self.state["elapsed_s"] = round(time.monotonic() - self.t0, 2)
        counts = {}
        for p in self.state["parts"].values():
            counts[p["status"]] = counts.get(p["status"], 0) + 1
        self.state["summary"] = counts
        tmp = self.json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(finite(self.state), indent=2) + "\n")
        os.replace(tmp, self.json_path)

    def part(self, name: str) -> dict:
        return self.state["parts"][name]

    # -- children
    def call(self, cmd: list[str], deadline: float, env: dict | None = None) -> int | None:
        """Run `cmd` from the repository root, its output into the log, until the part's deadline (seconds since
        the check started). Returns its exit code, or None when it ran out of time (its process group killed)."""
        self.part(self.current)["commands"].append(" ".join(map(shlex.quote, cmd)))
        self.save()
        self.say(f"$ {' '.join(map(shlex.quote, cmd))}")
        timeout = deadline - (time.monotonic() - self.t0)
        if timeout <= 0:
            return None
        self.child = subprocess.Popen(cmd, cwd=ROOT, env={**self.env, **(env or {})}, stdin=subprocess.DEVNULL,
                                      stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return self.child.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.child)
            return None
        finally:
            kill_group(self.child, grace=0)  # whatever the part left behind (workers) goes with it
            self.child = None

    def output_since(self, offset: int) -> str:
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            f.seek(offset)
            return f.read()

    # -- the loop
    def run(self) -> int:
        a = self.args
        self.say(f"vlrl GPU check ({self.state['mode']}): {self.state['command']}")
        self.say(f"output: {self.json_path} and {self.log_path}; work: {self.work}; budget {a.budget:.0f} s")
        self.save()
        for p in self.plan:
            rec = self.part(p.name)
            elapsed = time.monotonic() - self.t0
            deadline = self.deadlines[p.name]
            reason = self.skip_reason(p, deadline - elapsed)
            if reason:
                rec.update(status="skipped", note=reason, seconds=0.0)
                self.say(f"== {p.name}: skipped ({reason})")
                self.save()
                continue
            rec.update(status="running", limit_s=round(deadline - elapsed, 1))
            self.current = p.name
            self.say(f"== {p.name}: {p.what} (limit {deadline - elapsed:.0f} s, at {elapsed:.0f} s of {a.budget:.0f})")
            self.save()
            start = time.monotonic()
            try:
                status, note = p.run(self, p, deadline)
            except Exception as e:  # a bug in the check itself must not lose the figures of the other parts
                status, note = "failed", f"gpu_check.py: {type(e).__name__}: {e}"
            rec.update(status=status, note=note, seconds=round(time.monotonic() - start, 2))
            self.current = None
            self.say(f"== {p.name}: {status} in {rec['seconds']:.1f} s" + (f" ({note})" if note else ""))
            self.save()
        self.state["finished_at"] = now_iso()
        self.save()
        self.log.write("\n")
        report = render_report(self.state)
        self.say(report)
        bad = [n for n, r in self.state["parts"].items() if r["status"] in ("failed", "timeout")]
        self.say(f"vlrl GPU check: {self.state['elapsed_s']:.0f} s; " + (
            f"{len(bad)} part(s) not ok: {', '.join(bad)}" if bad else "every part ok or skipped")
            + f"; figures in {self.json_path}, log in {self.log_path}")
        return 1 if bad else 0

    def skip_reason(self, p: Part, left_s: float) -> str:
        a = self.args
        if a.only and p.name not in a.only:
            return "not selected (--only)"
        if p.name in a.skip:
            return "not selected (--skip)"
        if p.name == "install" and (a.tiny or a.no_install):
            return "--tiny" if a.tiny else "--no-install"
        if p.needs_cuda and not a.tiny and self.cuda is False:
            return "no CUDA device (see env)"
        if left_s < MIN_PART_S:
            return f"no time left ({left_s:.0f} s of the budget)"
        return ""

    def on_signal(self, signum, frame) -> None:
        """Killed from outside (e.g. the device tool's limit): end the running part, keep what was measured."""
        if self.child is not None:
            kill_group(self.child, grace=2)
        if self.current:
            self.part(self.current).update(status="timeout", note=f"the check was stopped by signal {signum}")
        self.state["finished_at"] = now_iso()
        self.save()
        self.say(f"vlrl GPU check: stopped by signal {signum}; figures so far in {self.json_path}")
        os._exit(128 + signum)


# -------------------------------------------------------------------------------------------------- part bodies


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def probe(check: Check, what: str, deadline: float) -> tuple[int | None, dict]:
    """Run scripts/gpu_check_probes.py's `<what>` probe in a fresh interpreter (so that packages installed a moment
    ago count); returns (exit code or None, the JSON it wrote)."""
    path = check.work / f"probe_{what}.json"
    path.unlink(missing_ok=True)
    rc = check.call(python(str(SCRIPTS / "gpu_check_probes.py"), what, str(path)), deadline)
    return rc, read_json(path)


def run_install(check: Check, part: Part, deadline: float) -> tuple[str, str]:
    fig = check.part(part.name)["figures"]
    rc, found = probe(check, "deps", deadline)
    fig["missing_before"] = found.get("missing", ["(the probe did not finish)"])
    missing, actions = fig["missing_before"], []
    wheels = sorted(Path(check.args.wheels).glob("*.whl")) if check.args.wheels else []
    if missing and wheels:  # offline: wheels carried with the working tree
        # Into a folder of their own, first on every later part's path (as the device notes advise): the image's
        # environment is left as it is, writable or not.
        site = check.work / "site"
        paths = [str(ROOT), str(site), os.environ.get("PYTHONPATH")]
        check.env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        actions.append(f"wheels ({len(wheels)} from {check.args.wheels} into {site})")
        pip = python("-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--upgrade",
                     "--target", str(site))
        if check.call(pip + list(map(str, wheels)), deadline) not in (0, None):
            for wheel in wheels:  # pip refuses the whole list for one unfit wheel (another Python's): one by one
                check.call(pip + [str(wheel)], deadline)
        missing = probe(check, "deps", deadline)[1].get("missing", ["(the probe did not finish)"])
    if missing:
        actions.append("pip install -e .[dev]")
        pip = python("-m", "pip", "install", "-q", "--retries", "2", "--timeout", "20")
        check.call(pip + ["-e", ".[dev]"], deadline)
        missing = probe(check, "deps", deadline)[1].get("missing", ["(the probe did not finish)"])
    fig.update(action=" then ".join(actions) or "none", missing_after=missing)
    if time.monotonic() - check.t0 >= deadline and missing:
        return "timeout", "still missing: " + "; ".join(missing)
    return ("failed", "still missing: " + "; ".join(missing)) if missing else ("ok", "")


def run_env(check: Check, part: Part, deadline: float) -> tuple[str, str]:
    fig = check.part(part.name)["figures"]
    rc, found = probe(check, "env", deadline)
    fig.update({k: v for k, v in found.items() if k in fig})
    check.state["machine"] = {k: fig[k] for k in ("gpu_name", "gpu_memory_gib", "driver", "torch", "cuda",
                                                 "transformers", "python", "matmul_bf16_tflops")}
    check.cuda = bool(fig.get("cuda_available"))
    if rc is None:
        return "timeout", ""
    if rc != 0:
        return "failed", found.get("error", f"the probe exited {rc}")
    if not check.cuda and not check.args.tiny:
        if not fig.get("cuda"):
            return "failed", (f"torch.cuda.is_available() is False: torch {fig.get('torch')} is a CPU-only build; "
                              "install a CUDA build (the default Linux wheel from PyPI is one)")
        driver = f"NVIDIA driver {fig['driver']}" if fig.get("driver") else "no NVIDIA driver found (nvidia-smi)"
        return "failed", (f"torch.cuda.is_available() is False: torch {fig.get('torch')} is built for CUDA "
                          f"{fig['cuda']} but sees no device; {driver}")
    return "ok", "" if check.cuda else "no CUDA device (expected with --tiny)"


def run_model(check: Check, part: Part, deadline: float) -> tuple[str, str]:
    fig = check.part(part.name)["figures"]
    out = check.model_dir
    if check.args.tiny:
        cmd = python("-m", "vlrl.cli", "models", "tiny", str(out))
    else:
        cmd = python("-m", "vlrl.cli", "models", "random", "--like", LIKE, str(out), "--device", "cuda")
    fig.update(path=str(out), like="tiny" if check.args.tiny else LIKE)
    rc = check.call(cmd, deadline)
    if out.exists():
        fig["size_gib"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**30
    return status_of(rc)


def run_pytest(check: Check, part: Part, deadline: float, paths: list[str]) -> tuple[str, str]:
    fig = check.part(part.name)["figures"]
    junit = check.work / f"junit_{part.name}.xml"
    junit.unlink(missing_ok=True)
    offset = check.log.tell()
    rc = check.call(python("-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "--junitxml", str(junit), "--basetemp", str(check.work / f"pytest_{part.name}"), *paths),
                    deadline)
    fig.update(junit_counts(junit))
    peak = re.findall(r"peak GPU memory ([0-9.]+) GiB", check.output_since(offset))
    fig["peak_gib"] = float(peak[-1]) if peak else None
    if rc == 5:
        return "failed", "no test collected"
    return status_of(rc)


def run_gpu_tests(check: Check, part: Part, deadline: float) -> tuple[str, str]:
    return run_pytest(check, part, deadline, ["tests/gpu", "--ignore", RECIPE_TEST, "--ignore", FAMILIES_TEST])


def run_gpu_tests_3b(check: Check, part: Part, deadline: float) -> tuple[str, str]:
    return run_pytest(check, part, deadline, [RECIPE_TEST])


def bench_args(check: Check) -> list[str]:
    args = ["--model-dir", str(check.model_dir)]
    return ["--device", "cpu", "--tiny", *args] if check.args.tiny else args


def run_bench_step(check: Check, part: Part, deadline: float) -> tuple[str, str]:
    fig = check.part(part.name)["figures"]
    path = check.work / "bench_step.json"
    path.unlink(missing_ok=True)
    steps = ["--warmup", "1", "--steps", "1" if check.args.tiny else "3"]
    rc = check.call(python(str(SCRIPTS / "bench_step.py"), *bench_args(check), *steps, "--json", str(path)), deadline)
    found = read_json(path)
    fig.update({k: v for k, v in {**found, **found.get("figures", {})}.items() if k in fig})
    fig["warmup"] = found.get("warmup")
    return status_of(rc)


def run_bench_rollout(check: Check, part: Part, deadline: float) -> tuple[str, str]:
    fig = check.part(part.name)["figures"]
    path = check.work / "bench_rollout.json"
    path.unlink(missing_ok=True)
    repeats = ["--repeats", "1" if check.args.tiny else "2"]
    rc = check.call(python(str(SCRIPTS / "bench_rollout.py"), *bench_args(check), *repeats, "--json", str(path)),
                    deadline)
    found = read_json(path)
    fig.update({k: v for k, v in found.items() if k in fig})
    b = found.get("backends") or {}

    def ratio(slow: str, fast: str) -> float | None:  # how many times faster `fast` rolls out than `slow`
        s, f = (b.get(slow) or {}).get("rollout_s"), (b.get(fast) or {}).get("rollout_s")
        return s / f if s and f else None

    fig.update(engine_over_cached=ratio("cached", "engine"), engine_over_reference=ratio("reference", "engine"),
               graphs_over_eager=ratio("engine-eager", "engine"))
    status, note = status_of(rc)
    return status, found.get("error") or note


def status_of(rc: int | None) -> tuple[str, str]:
    if rc is None:
        return "timeout", "killed at its time limit"
    return ("ok", "") if rc == 0 else ("failed", f"exit code {rc}; see the log")


# ------------------------------------------------------------------------------------------------------- helpers


def kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE_S) -> None:
    """End `proc` and every process of its session (started with start_new_session): TERM, `grace` s, KILL."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if sig == signal.SIGTERM and grace <= 0:
            continue
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass


def junit_counts(path: Path) -> dict:
    """tests/passed/failed/errors/skipped and the failed tests' names from pytest's JUnit XML (absent: Nones)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return dict(tests=None, passed=None, failed=None, errors=None, skipped=None, failed_tests=[])
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in root.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    return dict(tests=n["tests"], passed=n["tests"] - n["failures"] - n["errors"] - n["skipped"],
                failed=n["failures"], errors=n["errors"], skipped=n["skipped"], failed_tests=failed)


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def render_report(state: dict) -> str:
    sys.path.insert(0, str(SCRIPTS))
    try:
        from gpu_check_report import render
    finally:
        sys.path.pop(0)
    return render(state)


# ---------------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="rehearse on CPU: tiny model, no install, GPU tests skipped")
    ap.add_argument("--out", default="", help="output directory (default: $OUT if set, else runs/gpu_check)")
    ap.add_argument("--work", default="", help="scratch directory for the model and intermediate files (default: a "
                    "new temporary directory, removed at the end)")
    ap.add_argument("--budget", type=float, default=540.0, help="seconds for the whole check (default 540)")
    ap.add_argument("--no-install", action="store_true", help="skip the install part")
    ap.add_argument("--wheels", default=str(ROOT / ".whl"), help="wheels to install offline when packages are "
                    "missing (default: .whl/ in the repository; scripts/gpu_check_wheels.sh fills it)")
    names = [p.name for p in parts()]
    ap.add_argument("--only", nargs="+", default=[], choices=names, metavar="PART",
                    help=f"run only these parts ({', '.join(names)})")
    ap.add_argument("--skip", nargs="+", default=[], choices=names, metavar="PART", help="skip these parts")
    args = ap.parse_args(argv)
    args.argv = argv
    args.out = args.out or os.environ.get("OUT") or str(ROOT / "runs" / "gpu_check")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    check = Check(args, parts(args.tiny))
    signal.signal(signal.SIGTERM, check.on_signal)
    signal.signal(signal.SIGINT, check.on_signal)
    try:
        return check.run()
    finally:
        check.log.close()
        if not args.work:
            import shutil

            shutil.rmtree(check.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
