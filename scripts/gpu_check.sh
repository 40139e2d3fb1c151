#!/usr/bin/env bash
# The GPU check: the one command to run when a GPU is lent (bare machine, 9 minutes of a 15-minute lease).
#
#   bash scripts/gpu_check.sh                 # on the GPU machine; writes gpu_check.json + gpu_check.log to $OUT
#   bash scripts/gpu_check.sh --out DIR       # ... or to DIR (default: $OUT if set, else runs/gpu_check/)
#   bash scripts/gpu_check.sh --tiny          # rehearsal on CPU, 1-2 minutes (run by the test suite)
#   bash scripts/gpu_check.sh --only bench_step bench_rollout --no-install    # rerun some parts
#   python scripts/gpu_check_report.py DIR/gpu_check.json                     # markdown for docs/benchmarks.md
#
# Time budget, 540 s in all (--budget scales it); each part is killed at its limit and the check goes on.
# A part may use the seconds the parts before it left unused, never those of the parts after it:
#   install        120 s  only what is missing: wheels carried in .whl/ (offline), else pip install -e ".[dev]"
#   env             30 s  GPU, driver, torch/CUDA/transformers versions, bf16 matmul TFLOP/s
#   model           75 s  vlrl models random --like qwen2.5-vl-3b (weights drawn on the GPU)
#   gpu_tests       60 s  tests/gpu but the 3B recipe (the engine's CUDA graphs vs eager vs cached vs reference)
#   bench_step      90 s  scripts/bench_step.py: whole GRPO step, 8 prompts x G=8, 448x448, 256 tokens, bf16
#   bench_rollout  105 s  scripts/bench_rollout.py: engine (graphs, eager), cached, reference
#   gpu_tests_3b    60 s  tests/gpu/test_recipe_3b_shape.py: 2 steps of the 3B recipe
# The work is done by scripts/gpu_check.py (standard library only, so it runs before anything is installed).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=$(command -v python3 || command -v python) || { echo "gpu_check.sh: no python3 on PATH" >&2; exit 127; }
export PYTHONUNBUFFERED=1
exec "$PY" scripts/gpu_check.py "$@"
