"""What the reward mix is given for a batch of rollouts: one `RewardInput` per completion, from its prompt's row
(answer, task, data source, meta, images and their sizes) and the completion itself. Training steps, evaluation and
`vlrl eval` build them here, so each scores a completion the same way."""

from __future__ import annotations

from vlrl.data import PromptBatch
from vlrl.rewards import RewardInput
from vlrl.rollout import Rollouts


def reward_inputs(batch: PromptBatch, rollouts: Rollouts, progress: float, max_tokens: int, step: int | None = None,
                  seed: int | None = None) -> tuple[list, list]:
    """(inputs [N], specs [N]): a RewardInput per completion of `rollouts` (N = prompts x group size, a prompt's
    completions contiguous) and its row's reward override. `progress` (0-1) drives reward schedules;
    `max_tokens` is the completion length limit (the overlong penalty's); `step` (as metrics.jsonl numbers it)
    and `seed` (trainer.seed) are what a training step knows of where the completion was produced."""
    G = rollouts.group_size
    inputs, specs = [], []
    lengths = rollouts.completion_mask.sum(-1).tolist()
    for i, text in enumerate(rollouts.texts):
        p = i // G
        row = batch.rows[p]
        inputs.append(RewardInput(completion=text, answer=row.answer, task=row.task, data_source=row.data_source,
                                  image_sizes=batch.image_sizes[p], resized_sizes=batch.resized_sizes[p],
                                  meta=row.meta, progress=progress, num_tokens=int(lengths[i]),
                                  max_tokens=max_tokens, problem=row.problem, row_id=str(row.id), step=step,
                                  seed=seed, images=tuple(row.images)))
        specs.append(row.reward)
    return inputs, specs
