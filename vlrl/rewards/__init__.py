"""Rewards: verifiable scores for completions, and the mixer that weighs them.

Contract
--------
- A reward is a plain function ``fn(inp: RewardInput, **params) -> float | None``: a score in [0, 1],
  or None when it does not apply to the row (the mixer then skips the term for that row).
- :class:`RewardInput` carries the completion text, the row's ground truth ``answer``, ``task``,
  ``data_source``, original and resized image sizes, ``meta`` and training ``progress`` in [0, 1]; rewards
  run in the trainer's process (batched ones) also get the row's ``images``.
- A batched reward (``fn.batched = True``, e.g. :class:`~vlrl.rewards.batched.BatchReward`) takes the step's
  list of inputs and returns one score per input; the mixer calls it in the trainer's process.
- Rewards are named in a registry (:func:`register_reward`, :func:`registered_rewards`);
  :func:`get_reward` resolves a registered name, ``"pkg.module:function"`` or
  ``"path/to/file.py:function"``.
- Verifiers read the answer region: :func:`extract_answer` (the last ``<answer>…</answer>``), falling
  back to the whole completion where the verifier's ``fallback_to_completion`` param allows.
- Rewards never raise on malformed model output (it scores 0.0). Anything that does raise is caught by
  :func:`~vlrl.rewards.mixer.call_reward`, scored 0.0 and counted in ``Scores.parse_failures``.

Built-in rewards
----------------
``format`` (answer/think tag layout), ``exact_text``, ``number``, ``choice``, ``one_of``, ``math``
(equivalence through math-verify, with cost guards), ``ocr`` (ANLS-style similarity), ``yes_no``,
``accuracy`` (routes by task to one of those, ``iou`` or ``detection``), ``iou`` (single box, with
``box_format`` conversion and an optional fixed or ``"dynamic"`` threshold), ``detection`` (a set of boxes:
one-to-one IoU matching, completeness and a count penalty, after V-Triune), ``map`` (COCO-style mean
average precision over IoU 0.50:0.95), and the penalties ``overlong`` and ``repetition`` (amounts in
[0, 1], for negative weights), and the spurious-reward controls ``random`` and ``incorrect``
(:mod:`vlrl.rewards.spurious`). Model-scored and batched: ``judge`` (a chat model behind an OpenAI-compatible
endpoint grades the answer against the reference, with the image) and ``reward_model`` (a local
sequence-classification checkpoint). Box parsing and frames are shared in :mod:`vlrl.rewards.boxes`; calls run
through :mod:`vlrl.rewards.runner` (time limits, worker processes).

:class:`RewardMixer` turns a :class:`~vlrl.config.RewardConfig` plus per-row overrides into
:class:`Scores`: a total [N], one [N] tensor per component, and per-data-source metrics.
"""

from vlrl.rewards import accuracy as _accuracy  # noqa: F401  (registers exact_text, number, choice, accuracy)
from vlrl.rewards import average_precision as _average_precision  # noqa: F401  (registers map)
from vlrl.rewards import detection as _detection  # noqa: F401  (registers detection)
from vlrl.rewards import format as _format  # noqa: F401  (registers format)
from vlrl.rewards import iou as _iou  # noqa: F401  (registers iou)
from vlrl.rewards import judge as _judge  # noqa: F401  (registers judge)
from vlrl.rewards import length as _length  # noqa: F401  (registers overlong, repetition)
from vlrl.rewards import mathexpr as _mathexpr  # noqa: F401  (registers math)
from vlrl.rewards import ocr as _ocr  # noqa: F401  (registers ocr)
from vlrl.rewards import reward_model as _reward_model  # noqa: F401  (registers reward_model)
from vlrl.rewards import spurious as _spurious  # noqa: F401  (registers random, incorrect)
from vlrl.rewards import yesno as _yesno  # noqa: F401  (registers yes_no)
from vlrl.rewards.base import (
    RewardInput,
    answer_region,
    extract_answer,
    get_reward,
    register_reward,
    registered_rewards,
)
from vlrl.rewards.mixer import RewardMixer, Scores, call_reward

__all__ = [
    "RewardInput",
    "RewardMixer",
    "Scores",
    "answer_region",
    "call_reward",
    "extract_answer",
    "get_reward",
    "register_reward",
    "registered_rewards",
]
