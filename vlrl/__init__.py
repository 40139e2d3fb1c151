"""vlrl: train vision-language models with reinforcement learning from verifiable rewards.

The Python API is the names below (``vlrl.__all__``); each does what a ``vlrl`` command does, with the same code.
Everything else is an internal module a script need not import.

Configuration and training
    ``Config``             the training configuration (typed sections: model, data, rollout, reward, ...)
    ``load_config``        defaults, then a YAML file, then overrides: ``load_config("configs/x.yaml", {...})``
    ``Trainer``            ``Trainer(cfg, train_dataset=..., rewards=..., callbacks=...).fit()`` = ``vlrl train``
    ``Callback``           hooks after each step, evaluation and save (or pass a function ``fn(step, metrics)``)

Rewards
    ``RewardInput``        what a reward function receives: ``fn(inp, **params) -> float | None``
    ``register_reward``    name a reward function for configs: ``@vlrl.register_reward("my_reward")``
    ``trl_reward``         use a reward written for TRL's GRPOTrainer unchanged
    ``BatchReward``        a reward scoring a whole list of completions in one call
    ``RewardMixer``        the weighted mix of reward terms training uses: ``RewardMixer(cfg.reward).score(...)``
    ``score_completions``  score completions with a mix = ``vlrl rewards score``

Data and evaluation
    ``build_dataset``      the data pipeline = ``vlrl data build`` (sources may be datasets in memory)
    ``evaluate``           score checkpoints on a held-out split = ``vlrl eval``

Example (the whole of ``examples/train_custom_reward.py``, the README's "Python API")::

    import vlrl

    def brief(inp):  # a reward: 1 for an answer of at most 3 words
        return 1.0 if len(inp.completion.split()) <= 3 else 0.0

    cfg = vlrl.load_config(overrides={"trainer.total_steps": 20, "trainer.output_dir": "runs/api",
                                      "reward.terms": [{"name": "accuracy"}, {"name": "brief", "weight": 0.1}]})
    vlrl.Trainer(cfg, train_dataset=rows, rewards={"brief": brief}).fit()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "BatchReward",
    "Callback",
    "Config",
    "RewardInput",
    "RewardMixer",
    "Trainer",
    "build_dataset",
    "evaluate",
    "load_config",
    "register_reward",
    "score_completions",
    "trl_reward",
]

# Loaded on first use, so `import vlrl` (and the `vlrl` command's start) stays quick: torch and transformers come
# in only with the names that need them.
_WHERE = {
    "BatchReward": "vlrl.rewards.batched",
    "Callback": "vlrl.callbacks",
    "Config": "vlrl.config",
    "RewardInput": "vlrl.rewards.base",
    "RewardMixer": "vlrl.rewards.mixer",
    "Trainer": "vlrl.trainer",
    "build_dataset": "vlrl.api",
    "evaluate": "vlrl.api",
    "load_config": "vlrl.api",
    "register_reward": "vlrl.rewards.base",
    "score_completions": "vlrl.api",
    "trl_reward": "vlrl.rewards.batched",
}

if TYPE_CHECKING:
    from vlrl.api import build_dataset, evaluate, load_config, score_completions
    from vlrl.callbacks import Callback
    from vlrl.config import Config
    from vlrl.rewards.base import RewardInput, register_reward
    from vlrl.rewards.batched import BatchReward, trl_reward
    from vlrl.rewards.mixer import RewardMixer
    from vlrl.trainer import Trainer


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vlrl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
