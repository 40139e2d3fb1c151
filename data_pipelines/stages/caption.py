"""Stage 2, caption: a structured description of each row's images, from a vision-language teacher.

The caption goes to ``meta.caption``; the distill stage reasons from it instead of the pixels. A row that
already has a caption (VLAA-Thinking rows ship one) keeps it and costs no request; a text-only row needs
none. A row whose request fails is dropped with reason ``teacher_error`` (and retried on the next run), one
whose caption comes back empty with ``empty_reply``.
"""

from __future__ import annotations

import json

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

STAGE = "caption"


def caption(ds, teacher: Teacher, cache: ReplyCache, cfg: TeacherStageConfig, batch_size: int = 32) -> StageResult:
    template = load_template(STAGE, cfg.prompt_file)
    stats = TeachStats()

    def request(row: dict) -> ChatRequest | None:
        if not row["images"] or meta_of(row).get("caption"):
            return None
        parts = [{"type": "image", "image": image} for image in row["images"]]
        return ChatRequest(
            messages=[{"role": "user", "content": [*parts, {"type": "text", "text": template}]}],
            max_tokens=cfg.max_tokens,
            temperature=cfg.temperature,
            metadata=teacher_metadata(STAGE, row),
        )

    replies = ask_teacher(ds, request, teacher, cache, STAGE, template, batch_size, stats)
    metas, keep, drops = [], [], []
    for i, (row_id, meta_text, reply) in enumerate(zip(ds["id"], ds["meta"], replies, strict=True)):
        meta = json.loads(meta_text) if meta_text else {}
        if reply is not None and not reply.ok:
            drops.append(Drop(row_id, STAGE, "teacher_error", reply.error or ""))
            continue
        if reply is not None and not reply.text.strip():
            drops.append(Drop(row_id, STAGE, "empty_reply", "the teacher replied with no caption"))
            continue
        if reply is not None:
            meta["caption"] = reply.text.strip()
        keep.append(i)
        metas.append(json.dumps(meta, sort_keys=True) if meta else "")
    out = with_columns(ds.select(keep), meta=metas)
    return StageResult(out, drops, stats.as_dict())

