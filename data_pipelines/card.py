"""The dataset card: what went in, what came out, and why every missing row is missing.

``card.json`` is the machine-readable record; ``README.md`` (the HF dataset-card convention) renders it for
people. Both are rewritten at the end of every build.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from data_pipelines.records import Drop, drop_counts
from vlrl.atomic import atomic_file, write_text_atomic

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


def answer_kind(answer: str, task: str) -> str:
    """A coarse type of a ground-truth answer, for the card's histogram."""
    text = answer.strip()
    if task in ("grounding", "detection") or text.startswith("[") or text.startswith("{"):
        return "boxes"
    if _NUMBER.match(text.replace(",", "")):
        return "number"
    if re.fullmatch(r"[A-Z]", text):
        return "letter"
    if any(c in text for c in "\\^=/") or text.startswith("$"):
        return "expression"
    return "text"


def histogram(ds) -> dict:
    tasks = Counter(ds["task"])
    kinds = Counter(answer_kind(a, t) for a, t in zip(ds["answer"], ds["task"], strict=True))
    return {"rows": len(ds), "task": dict(sorted(tasks.items())), "answer_kind": dict(sorted(kinds.items())),
            "data_source": dict(sorted(Counter(ds["data_source"]).items()))}


def stage_entry(name: str, rows_in, rows_out, drops: list[Drop], stats: dict) -> dict:
    """One stage's line of the card: counts overall and per data source, drops by reason."""
    sources_in = Counter(rows_in["data_source"]) if rows_in is not None else Counter()
    sources_out = Counter(rows_out["data_source"])
    dropped = Counter()
    if rows_in is not None:  # a stage's drops per data source, by the dropped row's id
        source_of = dict(zip(rows_in["id"], rows_in["data_source"], strict=True))
        dropped = Counter(source_of.get(d.id, "") for d in drops if d.step == name)
    per_source = {s: {"in": sources_in.get(s, 0), "out": sources_out.get(s, 0), "dropped": dropped.get(s, 0)}
                  for s in sorted(set(sources_in) | set(sources_out) | set(dropped))}
    return {
        "stage": name,
        "rows_in": len(rows_in) if rows_in is not None else len(rows_out) + len(drops),
        "rows_out": len(rows_out),
        "per_source": per_source,
        # collect's drops are the sources' (each under its own step) and its own: all of them count here
        "drops": (_merged(drop_counts(drops)) if name == "collect" else drop_counts(drops).get(name, {})),
        "drops_by_step": drop_counts(drops),
        "stats": stats,
    }


def check_totals(card: dict) -> list[str]:
    """Every way the card's counts must add up, as a list of what does not (empty: all is accounted for).

    Per stage: rows in = rows out + that stage's drops, overall and per data source. Per source section at
    collect: the rows a source produced = rows kept + rows collect dropped. A mismatch means a row vanished
    without a drop (or a drop names no row), which the card exists to rule out.
    """
    problems = []
    for stage in card["stages"]:
        name = stage["stage"]
        own = sum(stage["drops_by_step"].get(name, {}).values())
        if name == "collect":
            for source, n in stage["stats"].get("sources", {}).items():
                if n["rows_in"] != n["rows"] + n["collect_drops"]:
                    problems.append(f"collect, source {source!r}: {n['rows_in']} rows in != {n['rows']} kept + "
                                    f"{n['collect_drops']} dropped")
            kept = sum(n["rows"] for n in stage["stats"].get("sources", {}).values())
            if stage["stats"].get("sources") and kept != stage["rows_out"]:
                problems.append(f"collect: sources kept {kept} rows but the stage wrote {stage['rows_out']}")
            continue
        if stage["rows_in"] != stage["rows_out"] + own:
            problems.append(f"{name}: {stage['rows_in']} rows in != {stage['rows_out']} out + {own} dropped")
        for source, n in stage["per_source"].items():
            if n["in"] != n["out"] + n.get("dropped", 0):
                problems.append(f"{name}, data source {source!r}: {n['in']} in != {n['out']} out + "
                                f"{n.get('dropped', 0)} dropped")
    return problems


def _merged(by_step: dict[str, dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for reasons in by_step.values():
        for reason, n in reasons.items():
            out[reason] = out.get(reason, 0) + n
    return out


def write_card(out_dir: Path, card: dict, drops: list[Drop]) -> None:
    write_text_atomic(out_dir / "card.json", json.dumps(card, indent=2, sort_keys=False) + "\n")
    with atomic_file(out_dir / "drops.jsonl") as f:
        for d in drops:
            f.write(json.dumps({"id": d.id, "step": d.step, "reason": d.reason, "detail": d.detail}) + "\n")
    write_text_atomic(out_dir / "README.md", render(card))


def render(card: dict) -> str:
    lines = ["# Dataset card", "", f"Built by `vlrl data build` with `{card['config']}`.", ""]
    if not card.get("teachers"):
        lines += ["RL-only build: no teacher was configured (`teacher.kind: none`), so no caption, distill, rewrite "
                  "or verify stage ran and no reasoning chains were made; the RL set is every curated row.", ""]
    else:
        lines += ["Teachers: " + ", ".join(f"{stage} {kind}" for stage, kind in card["teachers"].items()) + ".", ""]
    lines += ["## Stages", "", "| stage | rows in | rows out | dropped (reason: count) | teacher requests |",
             "|---|---|---|---|---|"]
    for s in card["stages"]:
        dropped = ", ".join(f"{step}/{r}: {n}" if step != s["stage"] else f"{r}: {n}"
                            for step, reasons in s["drops_by_step"].items() for r, n in reasons.items()) or "-"
        teach = s["stats"]
        asked = (f"{teach['asked']} sent, {teach['cached']} cached, {teach['failed']} failed"
                 if "asked" in teach else "-")
        lines.append(f"| {s['stage']} | {s['rows_in']} | {s['rows_out']} | {dropped} | {asked} |")
    lines += ["", "## Rows per data source and stage", "",
              "| data source | " + " | ".join(s["stage"] for s in card["stages"]) + " |",
              "|---|" + "---|" * len(card["stages"])]
    sources = sorted({src for s in card["stages"] for src in s["per_source"]})
    for src in sources:
        cells = [str(s["per_source"].get(src, {}).get("out", 0)) for s in card["stages"]]
        lines.append(f"| {src} | " + " | ".join(cells) + " |")
    for name in ("rl_train", "rl_test", "chains"):
        h = card["outputs"][name]
        lines += ["", f"## {name}: {h['rows']} rows", "",
                  "- tasks: " + (", ".join(f"{k} {v}" for k, v in h["task"].items()) or "-"),
                  "- answer kinds: " + (", ".join(f"{k} {v}" for k, v in h["answer_kind"].items()) or "-")]
    lines += ["", f"Every dropped row, with its id and the details, is in `drops.jsonl` ({card['dropped']} rows).", ""]
    return "\n".join(lines)
