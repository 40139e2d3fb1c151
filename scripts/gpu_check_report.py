"""Markdown for docs/benchmarks.md from the JSON that `scripts/gpu_check.sh` wrote:

    python scripts/gpu_check_report.py runs/gpu_check/gpu_check.json >> /tmp/section.md

Prints the machine, the command, one row per part (status, seconds, limit) and the figures of each part that
measured any: the whole GRPO step, the rollout backends, the tests. Parts that failed, timed out or were
skipped are shown as such; figures they did not reach read "-". Standard library only.
"""

from __future__ import annotations

import json
import sys


def num(x, digits: int = 2, thousands: bool = False) -> str:
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)):
        return "-" if x is None else str(x)
    return f"{x:,.{digits}f}" if thousands else f"{x:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def render(state: dict) -> str:
    parts = state.get("parts", {})
    m = state.get("machine") or {}
    env = (parts.get("env") or {}).get("figures") or {}
    mode = state.get("mode", "?")
    date = (state.get("started_at") or "")[:10]
    lines = [f"### GPU check ({mode}), {date}: {m.get('gpu_name') or env.get('gpu_name') or 'no GPU'}", ""]
    lines.append(f"Command: `{state.get('command', '?')}` at commit {state.get('commit') or 'unknown'}; "
                 f"{state.get('elapsed_s', 0):.0f} s of a {state.get('budget_s', 0):.0f} s budget.")
    lines.append(
        f"Machine: {env.get('gpu_name') or 'no CUDA device'}"
        + (f" ({num(env.get('gpu_memory_gib'), 0)} GiB, compute capability {env.get('compute_capability')})"
           if env.get("gpu_name") else "")
        + f", driver {env.get('driver') or '-'}, torch {env.get('torch') or '-'} (CUDA {env.get('cuda') or '-'}, "
        f"cuDNN {env.get('cudnn') or '-'}), transformers {env.get('transformers') or '-'}, Python "
        f"{env.get('python') or '-'}, {env.get('cpu_count') or '-'} CPUs"
        + (f"; bf16 8192^3 matmul {num(env.get('matmul_bf16_tflops'), 0)} TFLOP/s"
           if env.get("matmul_bf16_tflops") else "") + ".")
    lines.append("")
    lines += table(["part", "status", "seconds", "limit s", "note"], [
        [name, f"**{p.get('status')}**" if p.get("status") in ("failed", "timeout") else str(p.get("status")),
         num(p.get("seconds"), 1), num(p.get("limit_s"), 0), (p.get("note") or "").replace("|", "/")[:160]]
        for name, p in parts.items()])

    step = (parts.get("bench_step") or {}).get("figures") or {}
    if step.get("steps_timed"):
        lines += ["", f"Whole GRPO step (`scripts/bench_step.py`, {step.get('device')}): {step.get('prompts')} prompts "
                  f"x G={step.get('group_size')}, {step.get('image_size')}x{step.get('image_size')} images, "
                  f"{step.get('new_tokens')} forced tokens, backend {step.get('backend')}, prompt once "
                  f"{step.get('shared_prompt')}; median of {step.get('steps_timed')} step(s) after "
                  f"{step.get('warmup')} warm-up:", ""]
        lines += table(["step s", "rollout s", "reward s", "update s", "rollout tok/s", "step tok/s",
                        "update TFLOP/s", "MFU", "peak GiB"], [[
                            num(step.get("step_s"), 3), num(step.get("rollout_s"), 3), num(step.get("reward_s"), 3),
                            num(step.get("update_s"), 3), num(step.get("rollout_tok_s"), 0, True),
                            num(step.get("step_tok_s"), 0, True), num(step.get("update_tflops"), 1),
                            num(step.get("mfu"), 3), num(step.get("peak_gib"), 1)]])

    roll = (parts.get("bench_rollout") or {}).get("figures") or {}
    if roll.get("backends"):
        lines += ["", f"Rollout backends (`scripts/bench_rollout.py`, {roll.get('device')}): {roll.get('prompts')} "
                  f"prompts x G={roll.get('group_size')}, {roll.get('image_size')}x{roll.get('image_size')} images "
                  f"({roll.get('image_tokens')} image tokens, prompt {roll.get('prompt_len')} tokens), "
                  f"{roll.get('new_tokens')} forced tokens; median of {roll.get('repeats')} rollout(s) after 1 "
                  "warm-up; peak: allocated above the loaded model:", ""]
        lines += table(["backend", "rollout s", "vision ms", "prefill ms", "decode s", "decode tok/s",
                        "rollout tok/s", "peak GiB"], [[
                            name, num(r.get("rollout_s"), 3), num(r.get("vision_ms"), 1), num(r.get("prefill_ms"), 1),
                            num(r.get("decode_s"), 3), num(r.get("decode_tok_s"), 0, True),
                            num(r.get("rollout_tok_s"), 0, True), num(r.get("peak_gib"), 2)]
                            for name, r in roll["backends"].items()])
        ratios = [f"{label} {num(roll.get(key), 2)}x" for key, label in (
            ("engine_over_cached", "engine over cached"), ("engine_over_reference", "engine over reference"),
            ("graphs_over_eager", "CUDA graphs over eager")) if roll.get(key)]
        if ratios:
            lines += ["", "Rollout time ratios: " + ", ".join(ratios) + "."]

    tests = [(name, p.get("figures") or {}) for name, p in parts.items() if name.startswith("gpu_tests")]
    if any(f.get("tests") is not None for _, f in tests):
        lines += ["", "Tests:", ""]
        lines += table(["part", "passed", "failed", "errors", "skipped", "peak GiB", "failed tests"], [
            [name, num(f.get("passed"), 0), num(f.get("failed"), 0), num(f.get("errors"), 0),
             num(f.get("skipped"), 0), num(f.get("peak_gib"), 1), ", ".join(f.get("failed_tests") or []) or "-"]
            for name, f in tests])
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        print(render(json.load(f)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
