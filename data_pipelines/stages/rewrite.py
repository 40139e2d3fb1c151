"""Stage 4, rewrite: make a distilled chain speak of the image, not of the caption it was reasoned from.

A chain that never mentions the caption (no match of :data:`MENTIONS`) is kept as it is, without a request.
Otherwise the teacher rewrites it, and the rewrite is dropped when it changed more than wording — its
character similarity to the original (``difflib`` ratio) falls below ``min_similarity`` — or when it still
mentions the caption, or lost its ``<answer>`` tag.
"""

from __future__ import annotations

import difflib
import re

from data_pipelines.cache import ReplyCache
from data_pipelines.config import RewriteConfig
from data_pipelines.records import Drop
from data_pipelines.stages.teach import (
    StageResult,
    TeachStats,
    ask_teacher,
    load_template,
    teacher_metadata,
    with_columns,
)
from data_pipelines.teachers.base import ChatRequest, Teacher

STAGE = "rewrite"
# Words that give away a chain reasoned from a text description rather than from the image.
MENTIONS = re.compile(
    r"\b(caption|captions|captioned|(the|this|that|given|provided) (image )?description|described as|"
    r"the text (says|states|mentions)|as described|according to the (description|text))\b",
    re.IGNORECASE,
)


def similarity(a: str, b: str) -> float:
    """Share of matching characters between two texts, in [0, 1] (1 = identical)."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def rewrite(ds, teacher: Teacher, cache: ReplyCache, cfg: RewriteConfig, batch_size: int = 32) -> StageResult:
    template = load_template(STAGE, cfg.prompt_file)
    stats = TeachStats()

    def request(row: dict) -> ChatRequest | None:
        if not MENTIONS.search(row["reasoning"]):
            return None
        return ChatRequest(
            messages=[{"role": "user", "content": template.replace("{reasoning}", row["reasoning"])}],
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            metadata={**teacher_metadata(STAGE, row), "reasoning": row["reasoning"]},
        )

    replies = ask_teacher(ds, request, teacher, cache, STAGE, template, batch_size, stats, decode_images=False)
    chains, keep, drops = [], [], []
    for i, (row_id, chain, reply) in enumerate(zip(ds["id"], ds["reasoning"], replies, strict=True)):
        if reply is None:
            keep.append(i)
            chains.append(chain)
            continue
        reason = _problem(chain, reply, cfg.min_similarity)
        if reason:
            drops.append(Drop(row_id, STAGE, *reason))
        else:
            keep.append(i)
            chains.append(reply.text.strip())
    return StageResult(with_columns(ds.select(keep), reasoning=chains), drops, stats.as_dict())


def _problem(chain: str, reply, min_similarity: float) -> tuple[str, str] | None:
    if not reply.ok:
        return "teacher_error", reply.error or ""
    text = reply.text.strip()
    if "<answer>" in chain and "<answer>" not in text:
        return "rewrite_lost_answer", "the rewrite dropped the <answer> tag"
    match = MENTIONS.search(text)
    if match:
        return "rewrite_still_mentions_caption", f"still says {match.group(0)!r}"
    score = similarity(chain, text)
    if score < min_similarity:
        return "rewrite_changed_too_much", f"similarity {score:.2f} < {min_similarity}"
    return None
