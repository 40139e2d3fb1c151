"""Stage 6, curate: rule filters, duplicate removal, the visual-token budget, and the split into two sets.

Filters run on every collected row (the RL set does not need a reasoning chain); the reasoning-chain set is
the curated rows whose chain survived rewrite and verify. Each dropped row is a :class:`Drop` with its
reason: ``answer_too_long``, ``too_many_boxes``, ``box_too_small``, ``box_outside_image``, ``duplicate``,
``over_token_budget``.

The budget counts a row's prompt exactly as training will — the chat template, the images resized within
``min_pixels``/``max_pixels`` and expanded to their vision tokens — through ``vlrl.data.PromptEncoder``; a row
over ``max_prompt_tokens`` is dropped, never truncated (truncating would cut image tokens or the question).
"""

from __future__ import annotations

import hashlib
import json

from tqdm.auto import tqdm

from data_pipelines.config import CurateConfig
from data_pipelines.records import Drop, image_hash
from data_pipelines.stages.teach import StageResult, iter_rows
from vlrl.rewards.accuracy import normalize_text
from vlrl.rewards.boxes import parse_boxes

STAGE = "curate"
BOX_TASKS = ("grounding", "detection")


def curate(collected, verified, cfg: CurateConfig, seed: int = 0) -> tuple[StageResult, dict]:
    """Filter ``collected`` and split it. Returns the curated rows and ``{"rl": DatasetDict-ready dict of
    splits, "chains": Dataset}``."""
    if cfg.max_prompt_tokens and not cfg.processor:
        raise ValueError("curate.max_prompt_tokens needs curate.processor (a model directory) to count tokens")
    counter = _TokenCounter(cfg) if cfg.max_prompt_tokens else None
    keep, drops, seen, groups = [], [], {}, {}
    for i, row in enumerate(tqdm(iter_rows(collected), total=len(collected), desc=STAGE, unit="row")):
        groups[row["id"]] = split_group(row)
        problem = _rule_problem(row, cfg) or _duplicate(row, cfg, seen)
        if problem is None and counter is not None:
            n = counter(row)
            if n > cfg.max_prompt_tokens:
                problem = ("over_token_budget", f"{n} prompt tokens > {cfg.max_prompt_tokens}")
        if problem:
            drops.append(Drop(row["id"], STAGE, *problem))
        else:
            keep.append(i)
    curated = collected.select(keep)
    kept_ids = set(curated["id"])
    # A chain needs a chain: with distill and verify off, rows without reasoning stay out of this set.
    with_chain = [i for i, (row_id, chain) in enumerate(zip(verified["id"], verified["reasoning"], strict=True))
                  if row_id in kept_ids and chain.strip()]
    chains = verified.select(with_chain)
    chain_ids = chains["id"]
    if cfg.rl_from not in ("all", "verified"):
        raise ValueError(f"curate.rl_from must be 'all' or 'verified', got {cfg.rl_from!r}")
    chain_set = set(chain_ids)
    if cfg.rl_from == "verified":
        rl_index = [i for i, row_id in enumerate(curated["id"]) if row_id in chain_set]
    elif cfg.disjoint:
        rl_index = [i for i, row_id in enumerate(curated["id"]) if row_id not in chain_set]
    else:
        rl_index = list(range(len(curated)))
    rl = curated.select(rl_index)
    test = [i for i, row_id in enumerate(rl["id"])
            if groups[row_id][1] or _held_out(groups[row_id][0], seed, cfg.eval_fraction)]
    if cfg.eval_fraction > 0 and not test and len(rl) >= 2:
        # A tiny build still gets held-out rows to evaluate on: the last row's whole group, never half of it.
        last = groups[rl["id"][-1]][0]
        test = [i for i, row_id in enumerate(rl["id"]) if groups[row_id][0] == last]
        if len(test) == len(rl):
            test = []
    test_set = set(test)
    splits = {"train": rl.select([i for i in range(len(rl)) if i not in test_set]), "test": rl.select(test)}
    stats = {"curated": len(curated), "rl_train": len(splits["train"]), "rl_test": len(splits["test"]),
             "chains": len(chains)}
    return StageResult(curated, drops, stats), {"rl": splits, "chains": chains}


def _rule_problem(row: dict, cfg: CurateConfig) -> tuple[str, str] | None:
    answer = row["answer"]
    if row["task"] not in BOX_TASKS:
        # A length limit is for text answers: a detection answer's length grows with its boxes (a 4-box
        # V-Triune answer is ~280 characters), which max_boxes bounds instead.
        if cfg.max_answer_chars and len(answer) > cfg.max_answer_chars:
            return "answer_too_long", f"{len(answer)} characters > {cfg.max_answer_chars}"
        return None
    boxes = parse_boxes(answer) or []
    if not boxes:  # it could only ever score 0; a source that let it through is counted here
        return "missing_box", f"a {row['task']} answer with no box: {answer[:80]!r}"
    if cfg.max_boxes and len(boxes) > cfg.max_boxes:
        return "too_many_boxes", f"{len(boxes)} boxes > {cfg.max_boxes}"
    sizes = [image.size for image in row["images"]]
    for box in boxes:
        x1, y1, x2, y2 = box.xyxy
        if min(x2 - x1, y2 - y1) < cfg.min_box_side:
            return "box_too_small", f"box {[x1, y1, x2, y2]} has a side under {cfg.min_box_side} px"
        if len(sizes) == 1:
            w, h = sizes[0]
            if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
                return "box_outside_image", f"box {[x1, y1, x2, y2]} outside the {w}x{h} image"
    return None


def _duplicate(row: dict, cfg: CurateConfig, seen: dict) -> tuple[str, str] | None:
    if cfg.dedupe == "none":
        return None
    if cfg.dedupe not in ("image", "image_problem"):
        raise ValueError(f"curate.dedupe must be 'image_problem', 'image' or 'none', got {cfg.dedupe!r}")
    parts = [image_hash(image) for image in row["images"]]
    if cfg.dedupe == "image_problem" or not parts:  # text-only rows are duplicates only by their question
        parts.append(normalize_text(row["problem"]))
    key = "\0".join(parts)
    if key in seen:
        return "duplicate", f"same {'images' if cfg.dedupe == 'image' else 'images and question'} as {seen[key]!r}"
    seen[key] = row["id"]
    return None


def split_group(row: dict) -> tuple[str, bool]:
    """(the key the held-out split groups a row by, whether its source holds it out).

    Rows about the same picture must land on one side of the split — else a test question about an image
    (or a RefCOCO object) was trained on through its sibling questions — so the key is the hash of the row's
    images' pixels, which also groups the same COCO image reached through two sources. A source may set
    ``meta.split_group`` instead, and ``meta.heldout: true`` for rows of a published test split it keeps.
    Text-only rows group by their id.
    """
    meta = row["meta"]
    if isinstance(meta, str):
        meta = json.loads(meta) if meta.strip() else {}
    heldout = bool(meta.get("heldout")) if isinstance(meta, dict) else False
    if isinstance(meta, dict) and meta.get("split_group") not in (None, ""):
        return f"group:{meta['split_group']}", heldout
    if row["images"]:
        return "images:" + "+".join(image_hash(image) for image in row["images"]), heldout
    return f"id:{row['id']}", heldout


def _held_out(group: str, seed: int, fraction: float) -> bool:
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


class _TokenCounter:
    """Prompt length in tokens as the trainer will encode it (template + resized images + question)."""

    def __init__(self, cfg: CurateConfig):
        from transformers import AutoProcessor

        from vlrl.data import PromptEncoder

        processor = AutoProcessor.from_pretrained(cfg.processor)
        self.encoder = PromptEncoder(processor, cfg.min_pixels, cfg.max_pixels)

    def __call__(self, row: dict) -> int:
        from vlrl.data import validate_row

        raw = dict(row, meta=row["meta"] if isinstance(row["meta"], str) else json.dumps(row["meta"]))
        batch = self.encoder([validate_row(raw, 0)], group_size=1)
        return int(batch.attention_mask.sum())
