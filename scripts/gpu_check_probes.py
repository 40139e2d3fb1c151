"""The GPU check's probes (scripts/gpu_check.py runs each in a fresh interpreter, so that packages installed a
moment before count): `deps` lists the project's requirements that are missing or too old, `env` reads the machine.
Each writes one JSON file. Standard library only at import: it runs on a bare machine before anything is installed.

    python scripts/gpu_check_probes.py deps OUT.json
    python scripts/gpu_check_probes.py env OUT.json
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def probe_deps(path: str) -> int:
    """Write {"missing": [...]} to `path`: the project's requirements (pyproject dependencies, plus pytest) that are
    absent or too old, and the project modules that fail to import."""
    import importlib

    missing = missing_requirements(project_requirements())
    if not missing:
        for module in ("vlrl.trainer", "vlrl.rollout", "data_pipelines.synthetic.shapes"):
            try:
                importlib.import_module(module)
            except Exception as e:  # any import failure is what this probe reports
                missing.append(f"import {module}: {type(e).__name__}: {e}")
    Path(path).write_text(json.dumps({"missing": missing}))
    print("missing:", missing or "nothing")
    return 0


def project_requirements() -> list[str]:
    """pyproject.toml's `dependencies`, and pytest (what the check runs; the rest of the dev extra it does not)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, re.S | re.M).group(1)
    return re.findall(r'^\s*"([^"]+)"', block, re.M) + ["pytest>=8.3"]


def missing_requirements(reqs: list[str]) -> list[str]:
    """Each requirement of `reqs` that the running interpreter does not satisfy, with what it has instead."""
    import importlib.metadata as md

    try:
        from packaging.requirements import Requirement
    except ImportError:  # a bare interpreter: pip's own copy
        from pip._vendor.packaging.requirements import Requirement
    missing = []
    for line in reqs:
        req = Requirement(line)
        if req.marker and not req.marker.evaluate():
            continue
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            missing.append(f"{line} (not installed)")
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            missing.append(f"{line} ({have} installed)")
    return missing


def probe_env(path: str) -> int:
    """Write the machine's figures to `path`; a bf16 8192^3 matmul's TFLOP/s where CUDA is there."""
    import importlib.metadata as md
    import platform
    import shutil

    fig: dict = dict(python=platform.python_version(), cpu_count=os.cpu_count())
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20) if shutil.which("nvidia-smi") else None
        fig["driver"] = out.stdout.strip().splitlines()[0].split(", ")[1] if out and out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, IndexError):
        fig["driver"] = None
    for name in ("transformers", "accelerate"):
        try:
            fig[name] = md.version(name)
        except md.PackageNotFoundError:
            fig[name] = None
    try:
        import torch
    except Exception as e:
        fig["error"] = f"import torch: {type(e).__name__}: {e}"
        Path(path).write_text(json.dumps(fig))
        print(fig["error"])
        return 1
    fig.update(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
               cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
               gpu_count=torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if fig["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        fig.update(gpu_name=props.name, gpu_memory_gib=props.total_memory / 2**30,
                   compute_capability=f"{props.major}.{props.minor}")
        n = 8192
        a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        for _ in range(3):
            a @ b
        torch.cuda.synchronize()
        start, reps = time.perf_counter(), 10
        for _ in range(reps):
            a @ b
        torch.cuda.synchronize()
        fig["matmul_bf16_tflops"] = 2 * n**3 * reps / (time.perf_counter() - start) / 1e12
    Path(path).write_text(json.dumps(fig))
    print(json.dumps(fig, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    probes = {"deps": probe_deps, "env": probe_env}
    if len(argv) != 2 or argv[0] not in probes:
        print(__doc__, file=sys.stderr)
        return 2
    return probes[argv[0]](argv[1])


if __name__ == "__main__":
    sys.exit(main())
