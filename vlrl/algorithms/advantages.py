"""Group-relative advantage estimators for outcome rewards (one scalar reward per completion).

Follows GRPO (DeepSeekMath, arXiv 2402.03300, "outcome supervision"): every completion of a prompt is scored
once, and its advantage is its reward relative to the other completions of the same prompt; every token of
the completion then shares that advantage. Estimators:

- ``grpo``: (r - mean_g) / (std_g + eps). ``std_g`` is the *unbiased* (Bessel-corrected, divide by G - 1)
  standard deviation, as ``torch.std`` computes it by default; a group of 4 rewards [1, 0, 0, 1] therefore
  gets advantages of +-0.866, not +-1. The paper does not say which it uses.
- ``drgrpo``: r - mean_g. Dr.GRPO (arXiv 2503.20783) drops the division by std, which up-weights groups whose
  rewards barely differ (too easy or too hard prompts).
- ``rloo``: r_i - mean_{j != i} r_j, the leave-one-out baseline of RLOO (Ahmadian et al., arXiv 2402.14740),
  which equals G / (G - 1) * (r_i - mean_g). No std normalisation.

Departures: none in the formulas. Where they differ from the papers is only that DAPO's dynamic sampling is
exposed as a mask (``groups_with_signal``) for the caller to filter and refill with, not done here.

Baseline and scale are two choices (``algorithm.advantage``, ``algorithm.scale_rewards``): ``centred_advantages``
subtracts a baseline (``group`` mean, ``rloo``, or the step's per-task mean ``batch``), ``scale_advantages``
divides by a std (``group``: the prompt's G rewards, GRPO; ``batch``: every reward of the step, as TRL's
``scale_rewards="batch"``; ``none``: Dr.GRPO). ``grpo`` and ``drgrpo`` are the two combinations the field named
first (``ADVANTAGE_ALIASES``); ``compute_advantages`` keeps them as estimators.

``split_duplicates`` divides each advantage by the number of identical completions in the group (see its
docstring); it is not from a paper.

Layout: rewards are *group-contiguous*, rows ``[g*G:(g+1)*G]`` being the G completions of prompt g.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# Each estimator maps grouped rewards [P, G] (float) to advantages [P, G].
AdvantageFn = Callable[[Tensor, float], Tensor]


def _grpo(grouped: Tensor, eps: float) -> Tensor:
    mean = grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, unbiased=True, keepdim=True)
    return (grouped - mean) / (std + eps)


def _drgrpo(grouped: Tensor, eps: float) -> Tensor:
    return grouped - grouped.mean(dim=1, keepdim=True)


def _rloo(grouped: Tensor, eps: float) -> Tensor:
    g = grouped.shape[1]
    # mean of the others: (sum - r_i) / (G - 1); written out so the value is the definition, not the identity
    others_mean = (grouped.sum(dim=1, keepdim=True) - grouped) / (g - 1)
    return grouped - others_mean


ADVANTAGE_ESTIMATORS: dict[str, AdvantageFn] = {
    "grpo": _grpo,
    "drgrpo": _drgrpo,
    "group": _drgrpo,  # the group-mean baseline alone (scale_advantages divides, if asked)
    "rloo": _rloo,
}

BASELINES = ("group", "rloo", "batch")  # algorithm.advantage
SCALES = ("group", "batch", "none")  # algorithm.scale_rewards
# Deprecated values of algorithm.advantage -> (baseline, scale_rewards) they stand for.
ADVANTAGE_ALIASES: dict[str, tuple[str, str]] = {"grpo": ("group", "group"), "drgrpo": ("group", "none")}

# Estimators that are undefined for a group of one (unbiased std, leave-one-out mean).
_NEEDS_TWO = {"grpo", "rloo"}


def _grouped(rewards: Tensor, group_size: int) -> Tensor:
    """Rewards [N] -> [N // group_size, group_size], with errors naming the numbers."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(rewards.shape)}")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    n = rewards.shape[0]
    if n % group_size != 0:
        raise ValueError(f"number of rewards N={n} is not divisible by group_size={group_size}")
    return rewards.reshape(n // group_size, group_size)


def compute_advantages(rewards: Tensor, group_size: int, method: str, eps: float = 1e-6) -> Tensor:
    """Per-completion advantages from group-contiguous rewards.

    rewards: [N] with N = P * group_size; returns [N] in the rewards' float dtype (float32 for integer input).
    ``method`` is a key of ``ADVANTAGE_ESTIMATORS``; ``eps`` guards the std division of ``grpo``, so a group
    whose rewards are all equal gets advantage 0 under every method.
    """
    if method not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"unknown advantage method {method!r}; valid: {sorted(ADVANTAGE_ESTIMATORS)}")
    if method in _NEEDS_TWO and group_size < 2:
        raise ValueError(f"advantage method {method!r} needs group_size >= 2, got group_size={group_size}")
    if not rewards.is_floating_point():
        rewards = rewards.float()
    grouped = _grouped(rewards, group_size)  # [P, G]
    return ADVANTAGE_ESTIMATORS[method](grouped, eps).reshape(-1)


def advantage_setting(advantage: str, scale_rewards: str) -> tuple[str, str]:
    """(baseline, scale) of ``algorithm.advantage`` / ``algorithm.scale_rewards``, the deprecated aliases resolved:
    ``grpo`` is group + group, ``drgrpo`` group + none. ``scale_rewards`` is read as given unless an alias fixes
    it: ``grpo`` with the default ``none`` means group (what ``grpo`` always meant), ``grpo`` with ``batch`` and
    ``drgrpo`` with anything but ``none`` contradict themselves and raise."""
    if scale_rewards not in SCALES:
        raise ValueError(f"unknown algorithm.scale_rewards {scale_rewards!r}; valid: {list(SCALES)}")
    if advantage in ADVANTAGE_ALIASES:
        baseline, scale = ADVANTAGE_ALIASES[advantage]
        if scale_rewards not in ("none", scale):
            raise ValueError(f"algorithm.advantage={advantage} (deprecated) means advantage={baseline} "
                             f"scale_rewards={scale}, which contradicts scale_rewards={scale_rewards}; write "
                             f"algorithm.advantage={baseline} algorithm.scale_rewards={scale_rewards}")
        return baseline, scale
    if advantage not in BASELINES:
        raise ValueError(f"unknown algorithm.advantage {advantage!r}; valid: {list(BASELINES)} "
                         f"(deprecated: {sorted(ADVANTAGE_ALIASES)})")
    return advantage, scale_rewards


def scale_advantages(centred: Tensor, rewards: Tensor, group_size: int, scale: str, eps: float = 1e-6,
                     step_rewards: Tensor | None = None) -> Tensor:
    """Advantages [N] (reward minus baseline, group-contiguous) divided as ``scale`` says.

    - ``group``: by std_g + eps, std_g the unbiased std of the G rewards of each completion's group;
    - ``batch``: by std + eps, std the unbiased std of ``step_rewards`` [M] (the whole step's rewards, every
      process's, gathered: the divisor is then the same however many processes split the step);
    - ``none``: unchanged (Dr.GRPO).

    rewards: [N], the rewards ``centred`` came from. A group (or step) whose rewards are all equal has std 0, and
    its advantages stay 0 / eps = 0 when the baseline is its mean.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale_rewards {scale!r}; valid: {list(SCALES)}")
    if scale == "none":
        return centred
    if scale == "group":
        if group_size < 2:
            raise ValueError(f"scale_rewards=group needs group_size >= 2, got group_size={group_size}")
        grouped = _grouped(rewards.to(centred.dtype), group_size)  # [P, G]
        std = grouped.std(dim=1, unbiased=True, keepdim=True).expand_as(grouped).reshape(-1)  # [N]
    else:
        if step_rewards is None or step_rewards.numel() < 2:
            raise ValueError("scale_rewards=batch needs the step's rewards (step_rewards), at least two of them")
        std = step_rewards.to(centred.dtype).std(unbiased=True)  # []
    return centred / (std + eps)


def split_duplicates(advantages: Tensor, completion_ids: Tensor, mask: Tensor, group_size: int) -> Tensor:
    """Advantages [N] with each divided by how many completions of its group are identical to it (itself
    included), so that a completion sampled k times weighs as much in the update as one sampled once.

    completion_ids, mask: [N, T] group-contiguous; tokens where mask is 0 are ignored when comparing. Why: with
    a softmax policy the gradient on an answer's logit is proportional to its probability, so answers that
    earn the same reward (every colour word before the image is read) grow fastest where already most likely,
    and the rarer ones die out; sharing the weight among duplicates damps that.
    """
    if completion_ids.shape != mask.shape or completion_ids.shape[0] != advantages.shape[0]:
        raise ValueError(f"completion_ids {tuple(completion_ids.shape)}, mask {tuple(mask.shape)} and advantages "
                         f"{tuple(advantages.shape)} must agree on N")
    ids = torch.where(mask.bool(), completion_ids, torch.full_like(completion_ids, -1))
    grouped = _grouped(torch.arange(ids.shape[0], device=ids.device), group_size)  # [P, G] row numbers
    seqs = ids[grouped]  # [P, G, T]
    same = (seqs.unsqueeze(2) == seqs.unsqueeze(1)).all(-1)  # [P, G, G]
    counts = same.sum(-1).reshape(-1)  # [N], >= 1
    return advantages / counts.to(advantages.dtype)


def weight_negatives(advantages: Tensor, weight: float) -> Tensor:
    """Advantages [N] with the negative ones multiplied by ``weight`` (positive ones and zeros unchanged).

    Why: with group baselines a wrong completion is pushed down only in groups that also hold a right one, and
    there its push is large (the group's mean is high). While the policy cannot yet tell the images apart, those
    pushes lower the wrong word for every image, its own included; an answer that is right on few images and
    wrong on many then dies out before it is learned. ``weight`` < 1 damps them; 1 returns the input.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"negative_weight must be in [0, 1], got {weight}")
    if weight == 1.0:
        return advantages
    return torch.where(advantages < 0, advantages * weight, advantages)


def batch_baseline(rewards: Tensor, keys: Tensor, step_rewards: Tensor, step_keys: Tensor) -> Tensor:
    """Advantages [N]: each reward minus the mean reward of the step's completions with the same key.

    rewards, keys: this process's completions ([N] float, [N] int: the task of each); step_rewards, step_keys:
    the same for the whole step (every process's, gathered), so the baseline does not depend on how the prompts
    were split among processes. Unlike a group baseline, a group whose completions all earn the same reward
    still carries a signal: where every answer to an image is wrong, the answer given is pushed down against
    the task's average, and the others get a chance to be sampled.
    """
    if rewards.shape != keys.shape or step_rewards.shape != step_keys.shape or rewards.dim() != 1:
        raise ValueError(f"rewards {tuple(rewards.shape)} / keys {tuple(keys.shape)} and step_rewards "
                         f"{tuple(step_rewards.shape)} / step_keys {tuple(step_keys.shape)} must be 1-D pairs")
    if not rewards.is_floating_point():
        rewards = rewards.float()
    step_rewards = step_rewards.to(rewards.dtype)
    n_keys = int(torch.cat([keys, step_keys]).max().item()) + 1 if len(keys) else 0
    sums = torch.zeros(n_keys, dtype=rewards.dtype, device=rewards.device).index_add_(0, step_keys, step_rewards)
    counts = torch.zeros(n_keys, dtype=rewards.dtype, device=rewards.device).index_add_(
        0, step_keys, torch.ones_like(step_rewards))
    if len(keys) and bool((counts[keys] == 0).any()):
        raise ValueError("a key of `keys` has no completion in step_keys: the step's rewards must include these")
    return rewards - (sums / counts.clamp(min=1))[keys]


def groups_with_signal(rewards: Tensor, group_size: int, atol: float = 1e-6) -> Tensor:
    """Which groups carry a learning signal: False where all G rewards are equal (within ``atol``).

    rewards: [N] group-contiguous; returns bool [N // group_size]. DAPO's dynamic sampling (arXiv 2503.14476)
    drops the False groups, whose advantages are zero under every estimator.
    """
    grouped = _grouped(rewards, group_size)  # [P, G]
    spread = grouped.max(dim=1).values - grouped.min(dim=1).values
    return spread > atol
