"""The functions of vlrl's Python API (exported by ``import vlrl``): each is the same code as a command.

=======================  ====================================  ===========================================
function                 command                               returns
=======================  ====================================  ===========================================
``load_config``          the YAML + ``key=value`` of ``train``  a :class:`~vlrl.config.Config`
``Trainer(...).fit()``   ``vlrl train``                        the last evaluation's metrics
``score_completions``    ``vlrl rewards score``                one dict of scores per completion
``build_dataset``        ``vlrl data build``                   the dataset card (a dict)
``evaluate``             ``vlrl eval``                         an :class:`Evaluation` (table, summaries)
=======================  ====================================  ===========================================
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlrl.config import Config, RewardConfig

Overrides = Sequence[str] | Mapping[str, Any] | None


def override_list(overrides: Overrides) -> list[str]:
    """``key.sub=value`` strings from a list of them or a mapping ``{"key.sub": value}`` (values of any YAML type:
    numbers, lists, the dicts of reward terms)."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        raise TypeError(f"overrides must be a list of 'key=value' strings or a mapping, got the string {overrides!r}")
    if isinstance(overrides, Mapping):
        return [f"{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in overrides.items()]
    return [str(o) for o in overrides]


def with_overrides(config, overrides: Overrides):
    """A copy of the config dataclass ``config`` with ``overrides`` applied; ``config`` itself is left as it was
    (a deep copy: an override of a dict field such as ``per_task.x=...`` edits the dict in place)."""
    from vlrl.config_loader import _apply_override

    config = copy.deepcopy(config)
    for o in override_list(overrides):
        _apply_override(config, o)
    return config


def load_config(path: str | Path | None = None, overrides: Overrides = None) -> Config:
    """A training config as ``vlrl train`` builds it: the defaults (the tiny CPU demo), then the YAML file at
    ``path`` (e.g. ``configs/qwen2_5_vl_3b_grpo.yaml``), then ``overrides``. Raises ``ConfigError`` naming the
    key for an unknown key or a wrong type.

    >>> cfg = load_config(overrides={"trainer.total_steps": 3, "reward.terms": [{"name": "accuracy"}]})
    >>> cfg.trainer.total_steps, cfg.reward.terms[0]["name"]
    (3, 'accuracy')
    """
    from vlrl.config_loader import load_config as load

    return load(Config, path, override_list(overrides))


def _reward_config(config: RewardConfig | Config | str | Path | None, overrides: Overrides) -> RewardConfig:
    from vlrl.config_loader import load_config as load
    from vlrl.rewards.offline import load_reward_config

    if isinstance(config, Config):
        config = config.reward
    if isinstance(config, RewardConfig):
        return with_overrides(config, overrides)
    if config is None:
        return load(RewardConfig, None, override_list(overrides))
    return load_reward_config(config, override_list(overrides))


def score_completions(completions: str | Path | Iterable[Mapping], config: RewardConfig | Config | str | Path | None
                      = None, overrides: Overrides = None, rewards=None, output: str | Path | None = None,
                      skip_invalid: bool = False) -> list[dict]:
    """Score completions with a reward mix, as ``vlrl rewards score`` does (the same code as training).

    ``completions``: a JSONL file or dicts in its format (``completion``, ``answer``, ``task``, optional
    ``reward``, ``image_sizes``, ``meta``, ``problem``, ...; see ``vlrl.rewards.offline``). ``config``: a reward
    section (RewardConfig), a training Config (its reward section) or a YAML file; ``overrides`` apply to the
    reward section (``{"terms": [...]}``). ``rewards``: reward functions by the names the terms use. Returns
    one dict per completion: ``{"line": n, "total": x, <component>: value or None}`` (``id`` when given);
    with ``output``, also writes them there as JSONL (whole or not at all).

    >>> score_completions([{"completion": "<answer>4</answer>", "answer": "4", "task": "count"}],
    ...                   overrides={"terms": [{"name": "accuracy"}], "workers": 0})
    [{'line': 1, 'total': 1.0, 'accuracy': 1.0}]
    """
    from vlrl.rewards.offline import score_file

    reward = _reward_config(config, overrides)
    buffer = io.StringIO()
    score_file(completions, buffer, reward, skip_invalid=skip_invalid, progress_bar=False, rewards=rewards)
    if output is not None:
        from vlrl.atomic import write_text_atomic

        write_text_atomic(Path(output), buffer.getvalue())
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def build_dataset(config: str | Path | Any | None = None, overrides: Overrides = None, *,
                  sources: Sequence[Mapping] | None = None, output_dir: str | Path | None = None) -> dict:
    """Run the dataset pipeline (collect, caption, distill, rewrite, verify, curate) as ``vlrl data build``;
    returns the dataset card (what ``OUT/card.json`` holds) after writing ``OUT/rl`` (train, test),
    ``OUT/chains``, ``OUT/README.md`` and ``OUT/drops.jsonl``.

    ``config``: a BuildConfig or a YAML file, then ``overrides``; ``sources`` and ``output_dir`` replace the
    config's. A source is ``{"kind", "name", "params"}`` as in the YAML (``vlrl data sources`` lists the kinds);
    a dataset in memory is the ``hf`` kind with ``params={"dataset": ds, "columns": {...}}``, ``ds`` a
    ``datasets.Dataset`` or a list of dicts.
    """
    from data_pipelines.build import build
    from data_pipelines.config import BuildConfig
    from vlrl.config_loader import load_config as load

    if isinstance(config, BuildConfig):
        cfg, name = with_overrides(config, overrides), ""
    else:
        cfg = load(BuildConfig, config, override_list(overrides))
        name = str(config or "")
    if sources is not None:
        cfg.sources = list(sources)
    if output_dir is not None:
        cfg.output_dir = str(output_dir)
    return build(cfg, config_name=name)


@dataclass
class Evaluation:
    """What ``vlrl eval`` printed and wrote: ``table`` (the comparison), ``summaries`` (one dict per model: its
    metrics overall and per data source, as ``OUT/summary.json`` holds) and ``out`` (the folder)."""

    out: Path
    summaries: list[dict]
    table: str

    def __str__(self) -> str:
        return self.table


def evaluate(models: str | Sequence[str], data: str | None = None, overrides: Overrides = None, *,
             config: str | None = None, out: str | Path | None = None, overwrite: bool = False,
             rewards=None) -> Evaluation:
    """Score checkpoints on a held-out split as ``vlrl eval`` does: greedy accuracy, and with ``eval.k > 1``
    pass@k and mean@k, per data source and overall, with the same rollout and reward code as training.

    ``models``: run directories, checkpoints (HF, LoRA, sharded) or model directories; ``data``: a schema-v1
    dataset (default: each run's own); ``overrides``: ``eval.k``, ``rollout.max_new_tokens``, ... as in the
    command; ``rewards``: reward functions the terms name (a run trained with Python rewards needs them again).
    """
    from vlrl.eval_run import run_eval

    models = [models] if isinstance(models, (str, Path)) else [str(m) for m in models]
    out_dir, summaries, table = run_eval([str(m) for m in models], data=data, overrides=override_list(overrides),
                                         config=config, out=None if out is None else str(out), overwrite=overwrite,
                                         rewards=rewards)
    return Evaluation(Path(out_dir), summaries, table)
