"""Stage 3, distill: an R1-style reasoning chain from a text reasoner given the caption and the question.

The reasoner never sees the pixels; the prompt asks it to reason as if it did, and to end with
``<answer>…</answer>`` so the verify stage can check the answer. The reply becomes the row's ``reasoning``.
Text-only rows are asked with their question alone; an image row without a caption (the caption stage
disabled, the source shipping none) is dropped as ``no_caption`` rather than reasoned about blind.
"""

from __future__ import annotations

from data_pipelines.cache import ReplyCache
from data_pipelines.config import TeacherStageConfig
from data_pipelines.records import Drop
from data_pipelines.stages.teach import (
    StageResult,
    TeachStats,
    ask_teacher,
    load_template,
    meta_of,
    teacher_metadata,
    with_columns,
)
from data_pipelines.teachers.base import ChatRequest, Teacher

STAGE = "distill"
NO_IMAGE = "(there is no image; the question is self-contained)"


def distill(ds, teacher: Teacher, cache: ReplyCache, cfg: TeacherStageConfig, batch_size: int = 32) -> StageResult:
    template = load_template(STAGE, cfg.prompt_file)
    stats = TeachStats()

    def request(row: dict) -> ChatRequest | None:
        caption_text = meta_of(row).get("caption") or ""
        if row["images"] and not caption_text:
            return None  # reasoned blind, the chain would be about nothing: dropped as no_caption below
        question = row["problem"].replace("<image>", "").strip()
        text = template.replace("{caption}", caption_text or NO_IMAGE).replace("{question}", question)
        return ChatRequest(
            messages=[{"role": "user", "content": text}],
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            metadata=teacher_metadata(STAGE, row),
        )

    replies = ask_teacher(ds, request, teacher, cache, STAGE, template, batch_size, stats, decode_images=False)
    chains, keep, drops = [], [], []
    for i, (row_id, reply) in enumerate(zip(ds["id"], replies, strict=True)):
        if reply is None:
            drops.append(Drop(row_id, STAGE, "no_caption", "an image row without a caption (caption stage off?)"))
        elif not reply.ok:
            drops.append(Drop(row_id, STAGE, "teacher_error", reply.error or ""))
        elif not reply.text.strip():
            drops.append(Drop(row_id, STAGE, "empty_reply", "the teacher replied with nothing"))
        else:
            keep.append(i)
            chains.append(reply.text.strip())
    return StageResult(with_columns(ds.select(keep), reasoning=chains), drops, stats.as_dict())
