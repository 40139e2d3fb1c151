"""`vlrl report RUN_DIR [RUN_DIR ...]`: one self-contained static HTML page of one or several runs.

Curves from each run's metrics.jsonl — reward, every reward component and accuracy per data source (train
`reward/<source>/…`, held-out `eval/accuracy/<source>`), completion length, clip fraction, entropy, KL,
learning rate, stage times — with the runs overlaid; then each run's latest rollout samples
(RUN_DIR/samples/, `vlrl.samples`) with their images and scores. Plots are matplotlib PNGs and images are
embedded as data URLs, so the page needs no server, no network and no JavaScript, and opens the same in a
browser, an e-mail or a CI artifact viewer years later. Needs the `report` extra (matplotlib).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

from vlrl.atomic import write_text_atomic
from vlrl.metrics import read_metrics, summary_table
from vlrl.samples import read_samples

REPORT_FILE = "report.html"  # where `vlrl train` writes a run's report
LINESTYLES = ("-", "--", ":", "-.")  # one per run when a panel's colours already tell its keys apart
# Training panels after the per-source ones: (title, metric keys). Keys a run did not log are left out.
TRAINING_PANELS = [
    ("completion length (tokens)", ["rollout/length_mean", "rollout/length_max"]),
    ("clip fraction", ["loss/clip_frac"]),
    ("entropy (per token)", ["loss/entropy"]),
    ("KL", ["loss/kl", "loss/approx_kl"]),
    ("learning rate", ["optim/lr"]),
    ("gradient norm", ["loss/grad_norm"]),
    ("loss", ["loss/loss", "loss/pg_loss"]),
    ("truncated / kept fraction", ["rollout/truncated_frac", "rollout/kept_frac"]),
    ("update TFLOP/s", ["perf/update_tflops"]),
]


class ReportError(ValueError):
    """A report that cannot be made as asked; the message says why."""


@dataclass
class Run:
    name: str  # as shown in legends
    path: Path
    lines: list[dict]  # metrics.jsonl
    samples: list[dict]  # samples/samples.jsonl
    config: dict  # config.yaml ({} when absent)


def load_run(path: str | Path, name: str) -> Run:
    path = Path(path)
    if not (path / "metrics.jsonl").is_file():
        raise ReportError(f"{path} has no metrics.jsonl: not a vlrl run directory (vlrl train writes one)")
    config = {}
    if (path / "config.yaml").is_file():
        import yaml

        config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    return Run(name, path, read_metrics(path), read_samples(path), config)


def run_names(paths: list[Path]) -> list[str]:
    """Short legend names: each directory's name, with its parent's where two runs share a name."""
    names = [p.resolve().name for p in paths]
    return [f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names, strict=True)]


def series(run: Run, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` over the run's lines that hold a number for it."""
    pts = [(ln["step"], ln[key]) for ln in run.lines if isinstance(ln.get(key), (int, float))]
    return [s for s, _ in pts], [float(v) for _, v in pts]


def sources_of(runs: list[Run]) -> list[str]:
    """Data sources named by train (`reward/<source>/mean`) or eval (`eval/accuracy/<source>`) metrics."""
    found = set()
    for run in runs:
        for line in run.lines:
            for key in line:
                parts = key.split("/")
                if len(parts) == 3 and parts[0] == "reward" and parts[2] == "mean":
                    found.add(parts[1])
                elif len(parts) == 3 and parts[:2] == ["eval", "accuracy"]:
                    found.add(parts[2])
    return sorted(found)


def source_panels(runs: list[Run], source: str | None) -> list[tuple[str, list[str]]]:
    """The panels of one data source (None: all sources together): train reward, train accuracy, held-out
    accuracy and the other reward components."""
    train = f"reward/{source}" if source else "reward"
    label = source or "all sources"
    components = sorted({k for run in runs for ln in run.lines for k in ln if k.startswith(train + "/")
                         and k.count("/") == train.count("/") + 1} - {f"{train}/{n}" for n in
                                                                    ("mean", "accuracy", "parse_failures", "timeouts")})
    # A lone component is named in the title: a panel with one line has no legend.
    named = f"reward component {components[0].rsplit('/', 1)[1]}" if len(components) == 1 else "reward components"
    return [(f"{label}: train reward", [f"{train}/mean"]), (f"{label}: train accuracy", [f"{train}/accuracy"]),
            (f"{label}: eval accuracy", ["eval/accuracy" + (f"/{source}" if source else "")]),
            (f"{label}: {named}", components)]


def smooth(values: list[float]) -> list[float]:
    """Trailing mean over ~1/25 of the run: one step holds a few prompts per source, so raw train curves are
    too noisy to read a trend from; the raw values are drawn faintly behind."""
    w = max(2, len(values) // 25)
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - w] if i >= w else 0.0)
        out.append(total / min(i + 1, w))
    return out


def plot_panel(title: str, keys: list[str], runs: list[Run]) -> str | None:
    """One panel as a PNG data URL: `keys` of every run; None when no run logged any of them. Colours tell
    runs apart (one key) or keys apart (several keys, then line styles tell the runs)."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend
    from matplotlib.ticker import MaxNLocator

    drawn = [(run, key, *series(run, key)) for run in runs for key in keys]
    drawn = [d for d in drawn if d[2]]
    if not drawn:
        return None
    fig = Figure(figsize=(4.4, 2.7), dpi=90, layout="constrained")
    ax = fig.subplots()
    colours = [f"C{i}" for i in range(10)]  # matplotlib's default cycle
    for run_index, run in enumerate(runs):
        for key_index, key in enumerate(keys):
            steps, values = series(run, key)
            if not steps:
                continue
            many_keys = len(keys) > 1
            colour = colours[(key_index if many_keys else run_index) % len(colours)]
            style = LINESTYLES[run_index % len(LINESTYLES)] if many_keys else "-"
            label = " · ".join(([run.name] if len(runs) > 1 else []) + ([key] if many_keys else [])) or None
            if len(steps) < 20:  # evaluations: a few points, each worth a marker
                ax.plot(steps, values, style, color=colour, marker="o", markersize=3, label=label)
            else:
                ax.plot(steps, values, style, color=colour, alpha=0.25, linewidth=0.8)
                ax.plot(steps, smooth(values), style, color=colour, linewidth=1.6, label=label)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if any(line.get_label() and not line.get_label().startswith("_") for line in ax.get_lines()):
        ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return data_url(buf.getvalue(), "image/png")


def data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def panels_html(panels: list[tuple[str, list[str]]], runs: list[Run]) -> str:
    images = [(title, plot_panel(title, keys, runs)) for title, keys in panels]
    return "".join(f'<img class="plot" alt="{html.escape(t)}" src="{url}">' for t, url in images if url)


def sample_rows_html(run: Run, samples: list[dict]) -> str:
    """A table of samples: images, source, question, completion, answer, scores."""
    rows = []
    for s in samples:
        imgs = "".join(f'<img class="sample" alt="{html.escape(p)}" src="{image_url(run.path / p)}">'
                       for p in s.get("images", []) if (run.path / p).is_file())
        scores = "<br>".join(f"{html.escape(k)} {v:.3f}" for k, v in s["scores"].items() if v is not None)
        rows.append(f"<tr><td>{imgs or '(no image)'}</td><td>{html.escape(s['data_source'])}<br>"
                    f"<small>{html.escape(str(s['row_id']))}</small></td><td>{html.escape(s['question'])}</td>"
                    f"<td><pre>{html.escape(s['completion']) or '<i>(empty)</i>'}</pre></td><td>{html.escape(s['answer'])}</td>"
                    f"<td>{scores}<br><small>group mean {s['group_reward']:.3f}</small></td></tr>")
    head = "<tr><th>image</th><th>source</th><th>question</th><th>completion</th><th>answer</th><th>scores</th></tr>"
    return f"<table class='samples'>{head}{''.join(rows)}</table>"


def image_url(path: Path) -> str:
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(path.suffix.lower(), "image/png")
    return data_url(path.read_bytes(), mime)


def samples_html(run: Run) -> str:
    """The run's latest samples, and its first ones folded away beside them (what changed since)."""
    if not run.samples:
        return f"<p>{html.escape(run.name)}: no rollout samples (trainer.log_samples_every=0, or no step yet)</p>"
    steps = sorted({s["step"] for s in run.samples})
    at = lambda step: [s for s in run.samples if s["step"] == step]  # noqa: E731
    out = f"<h3>{html.escape(run.name)}: step {steps[-1]}</h3>" + sample_rows_html(run, at(steps[-1]))
    if len(steps) > 1:
        out += (f"<details><summary>{html.escape(run.name)}: step {steps[0]} (the first samples)</summary>"
                f"{sample_rows_html(run, at(steps[0]))}</details>")
    return out


def run_summary_html(run: Run) -> str:
    """What the run was (model, data, algorithm) and the end-of-run table per data source."""
    c = run.config
    pick = [("model", c.get("model", {}).get("path")), ("data", c.get("data", {}).get("path")),
            ("advantage", c.get("algorithm", {}).get("advantage")),
            ("prompts x group", f"{c.get('data', {}).get('prompts_per_step')} x {c.get('rollout', {}).get('group_size')}"),
            ("lr", c.get("optim", {}).get("lr"))]
    steps = [ln["step"] for ln in run.lines if "reward/mean" in ln]
    facts = ", ".join(f"{k} {html.escape(str(v))}" for k, v in pick if v is not None)
    # summary_table's last line is the wall time of one invocation, which metrics.jsonl does not hold.
    table = "\n".join(summary_table(run.lines, 0.0).splitlines()[:-1])
    return (f"<h3>{html.escape(run.name)}</h3><p><code>{html.escape(str(run.path))}</code>: "
            f"{len(steps)} train steps{', last ' + str(steps[-1]) if steps else ''}; {facts}</p>"
            f"<pre>{html.escape(table)}</pre>")


STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}h2{border-bottom:1px solid #ccc;margin-top:1.5em}
.plots{display:flex;flex-wrap:wrap;gap:6px}img.plot{width:396px;border:1px solid #eee}
table.samples{border-collapse:collapse;font-size:13px}table.samples td,table.samples th{border:1px solid #ddd;
padding:4px;vertical-align:top;max-width:28em}img.sample{width:160px;image-rendering:pixelated;margin:1px}
pre{white-space:pre-wrap;margin:0}"""


def render(runs: list[Run]) -> str:
    """The whole page as HTML text."""
    sources = sources_of(runs)
    per_source = [panel for source in [None, *sources] for panel in source_panels(runs, source)]
    stages = sorted({k for run in runs for ln in run.lines for k in ln if k.startswith("perf/") and k.endswith("_s")})
    body = [f"<h1>vlrl report: {html.escape(', '.join(r.name for r in runs))}</h1>",
            "<h2>Runs</h2>", *[run_summary_html(r) for r in runs],
            "<h2>Reward and accuracy per data source</h2>", f"<div class='plots'>{panels_html(per_source, runs)}</div>",
            "<h2>Training</h2>", f"<div class='plots'>{panels_html(TRAINING_PANELS, runs)}</div>",
            "<h2>Stage times (seconds per step)</h2>",
            f"<div class='plots'>{panels_html([('stage times (s)', stages)], runs)}</div>",
            "<h2>Rollout samples</h2>", *[samples_html(r) for r in runs]]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>vlrl report</title><style>{STYLE}</style>"
            f"</head><body>{''.join(body)}</body></html>")


def write_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Draw `run_dirs` into the page `out` (written whole: a temporary file renamed into place)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ReportError("vlrl report draws with matplotlib: pip install 'vlrl[report]'") from e
    if not run_dirs:
        raise ReportError("give at least one run directory")
    paths = [Path(p) for p in run_dirs]
    runs = [load_run(p, name) for p, name in zip(paths, run_names(paths), strict=True)]
    write_text_atomic(out, render(runs))
    return Path(out)
