#!/usr/bin/env bash
# Wheels for a GPU machine that reaches no package registry: run HERE (where pip reaches one), before the device
# call (from the checkout that the call sends); scripts/gpu_check.sh installs them there only when a requirement
# is missing or too old (`pip install --no-index --no-deps --target WORK/site`, first on every later part's path),
# and then checks again.
#
#   bash scripts/gpu_check_wheels.sh                       # the default set below, into .whl/ (git-ignored)
#   bash scripts/gpu_check_wheels.sh regex==2026.5.9 av    # more packages (NAME or NAME==VERSION)
#
# The default set: the project's requirements that the device image lacked or had too old when last read
# (docs/benchmarks.md, "GPU check"): transformers (5.17 there, >=5.23 needed), datasets and its dill,
# multiprocess and fsspec bounds, math-verify with latex2sympy2_extended and antlr4, qwen-vl-utils (without its
# `av` dependency, which vlrl never imports). Each is pinned to the version installed here, so the GPU runs the
# versions the CPU suite passed with. Pure-Python wheels except multiprocess (per Python version): PYVER below.
# About 15 MB; the device tool carries at most 64 MiB with the working tree (`carry: [".whl"]`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(command -v python3 || command -v python)
PYVER=${PYVER:-3.12}      # the device image's Python (3.12.3 when last read)
DEST=${DEST:-.whl}
DEFAULT=(transformers datasets dill multiprocess fsspec math-verify latex2sympy2_extended antlr4-python3-runtime
         qwen-vl-utils)
mkdir -p "$DEST"
for spec in "${DEFAULT[@]}" "$@"; do
  if [[ "$spec" != *==* ]]; then  # pin to the version installed here, when there is one
    have=$("$PY" -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass" "$spec")
    [[ -n "$have" ]] && spec="$spec==$have"
  fi
  echo "== $spec"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$DEST" "$spec"
done
ls -l "$DEST"
du -sh "$DEST"
