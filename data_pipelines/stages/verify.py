"""Stage 5, verify: keep a chain only when its final answer matches the row's ground truth.

The check is ``vlrl.rewards``' ``accuracy`` reward — the verifier training uses, routed by the row's task —
applied to the chain's ``<answer>`` region, so a chain kept here is one the RL reward would also score as
right. Boxes in chains are read in original-image pixels (``box_format: abs``), the frame captions speak in.
"""

from __future__ import annotations

import math

from tqdm.auto import tqdm

from data_pipelines.config import VerifyConfig
from data_pipelines.records import Drop
from data_pipelines.stages.teach import StageResult, iter_rows, meta_of
from vlrl.config import RewardConfig
from vlrl.rewards import RewardInput, RewardMixer
from vlrl.rewards.base import extract_answer

STAGE = "verify"


def verify(ds, cfg: VerifyConfig) -> StageResult:
    inputs, rows_to_score, drops = [], [], []
    for i, row in enumerate(tqdm(iter_rows(ds), total=len(ds), desc=STAGE, unit="row")):
        if extract_answer(row["reasoning"]) is None:
            drops.append(Drop(row["id"], STAGE, "no_answer_tag", "the chain has no <answer>...</answer>"))
            continue
        rows_to_score.append((i, row["id"]))
        inputs.append(RewardInput(
            completion=row["reasoning"], answer=row["answer"], task=row["task"], data_source=row["data_source"],
            image_sizes=tuple(image.size for image in row["images"]), meta=meta_of(row), progress=1.0,
        ))
    keep = []
    if inputs:
        mixer = RewardMixer(RewardConfig(terms=[{"name": "accuracy", "weight": 1.0}], per_task={},
                                         workers=cfg.workers, timeout_s=cfg.timeout_s))
        try:
            scores = mixer.score(inputs).components["accuracy"].tolist()
        finally:
            mixer.close()
        for (i, row_id), inp, score in zip(rows_to_score, inputs, scores, strict=True):
            if math.isnan(score):  # the verifier does not apply (e.g. a ground truth it cannot read)
                drops.append(Drop(row_id, STAGE, "not_verifiable", f"no verifier applies to task {inp.task!r} "
                                  f"with truth {inp.answer[:80]!r}"))
            elif score >= cfg.min_score:
                keep.append(i)
            else:
                answer = extract_answer(inp.completion)
                drops.append(Drop(row_id, STAGE, "answer_mismatch",
                                  f"chain answered {answer[:80]!r}, truth {inp.answer[:80]!r} (score {score:.2f})"))
    stats = {"checked": len(inputs), "kept": len(keep)}
    return StageResult(ds.select(keep), drops, stats)
