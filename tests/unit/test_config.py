"""Config loading: precedence, value parsing, type checks, errors, round trips, help text."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from vlrl.config import Config
from vlrl.config_loader import (
    ConfigError,
    config_to_dict,
    diff_from_defaults,
    format_help,
    load_config,
    save_config,
)

REPO = Path(__file__).resolve().parents[2]


# A small schema independent of vlrl's, to show the loader is generic over dataclass trees.
@dataclass
class Item:
    name: str = field(default="a", metadata={"help": "Item name."})
    weight: float = field(default=1.0, metadata={"help": "Item weight."})


@dataclass
class Inner:
    ratio: float | None = field(default=None, metadata={"help": "Optional ratio."})
    names: list[str] = field(default_factory=lambda: ["x"], metadata={"help": "Some names."})
    weights: dict[str, float] = field(default_factory=dict, metadata={"help": "Weights by name."})
    mode: Literal["fast", "slow"] = field(default="fast", metadata={"help": "Speed."})
    items: list[Item] = field(default_factory=list, metadata={"help": "Typed list of sections."})


@dataclass
class Outer:
    steps: int = field(default=3, metadata={"help": "Top-level leaf."})
    inner: Inner = field(default_factory=Inner)


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def leaf_keys(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            keys += leaf_keys(tp, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def test_defaults_without_yaml_or_overrides():
    assert load_config() == Config()
    assert load_config(Outer) == Outer()


def test_yaml_then_overrides_in_order(tmp_path):
    path = write(tmp_path, "rollout:\n  group_size: 4\n  top_k: 5\noptim:\n  lr: 2.0e-3\n")
    cfg = load_config(Config, path, ["rollout.group_size=16", "rollout.top_k=7", "rollout.top_k=9"])
    assert cfg.rollout.group_size == 16  # override beats YAML
    assert cfg.rollout.top_k == 9  # later override beats earlier
    assert cfg.optim.lr == 2e-3  # YAML beats default
    assert cfg.rollout.temperature == Config().rollout.temperature  # untouched key keeps its default


def test_yaml_section_merges_instead_of_replacing(tmp_path):
    path = write(tmp_path, "model:\n  dtype: bfloat16\n")
    cfg = load_config(Config, path, ["model={freeze_vision: true}"])
    assert (cfg.model.dtype, cfg.model.freeze_vision, cfg.model.path) == ("bfloat16", True, "tiny")


@pytest.mark.parametrize(
    "text, expected", [("1e-3", 1e-3), ("5E-4", 5e-4), ("+2e3", 2000.0), (".5e-2", 0.005), ("3", 3.0)]
)
def test_scientific_notation_and_ints_become_floats(text, expected):
    lr = load_config(overrides=[f"optim.lr={text}"]).optim.lr
    assert isinstance(lr, float) and lr == expected


def test_scientific_notation_in_yaml_file_and_untyped_dicts(tmp_path):
    path = write(
        tmp_path, "optim:\n  eps: 1e-6\nreward:\n  per_task:\n    ocr: [{name: ocr, params: {tol: 1e-2}}]\n"
    )
    cfg = load_config(Config, path)
    assert cfg.optim.eps == 1e-6
    assert cfg.reward.per_task["ocr"][0]["params"]["tol"] == 0.01  # no field type to coerce by here


def test_bools():
    cfg = load_config(overrides=["trainer.progress_bar=false", "model.freeze_vision=true"])
    assert cfg.trainer.progress_bar is False and cfg.model.freeze_vision is True
    assert load_config(overrides=["model.freeze_vision=yes"]).model.freeze_vision is True  # YAML 1.1 bool
    for bad in ["model.freeze_vision=1", "model.freeze_vision='true'"]:
        with pytest.raises(ConfigError, match="model.freeze_vision.*bool"):
            load_config(overrides=[bad])


def test_bool_must_be_real_bool_in_yaml(tmp_path):
    with pytest.raises(ConfigError, match="freeze_vision"):
        load_config(Config, write(tmp_path, 'model:\n  freeze_vision: "true"\n'))


def test_list_and_dict_values():
    cfg = load_config(
        overrides=[
            "optim.betas=[0.8, 0.95]",
            "reward.terms=[{name: format, weight: 1}]",
            "reward.per_task={count: [{name: number}], ocr: []}",
        ]
    )
    assert cfg.optim.betas == [0.8, 0.95]
    assert cfg.reward.terms == [{"name": "format", "weight": 1}]
    assert cfg.reward.per_task == {"count": [{"name": "number"}], "ocr": []}


def test_strings_kept_as_written():
    cfg = load_config(
        overrides=[
            "data.system_prompt=Answer: yes",
            "trainer.output_dir=007",
            "model.path='/a b'",
            "data.eval_split=",
        ]
    )
    assert cfg.data.system_prompt == "Answer: yes"  # would be a mapping if parsed as YAML
    assert cfg.trainer.output_dir == "007"
    assert cfg.model.path == "/a b"
    assert cfg.data.eval_split == ""


def test_dict_field_by_deep_path():
    cfg = load_config(
        overrides=[
            "reward.per_task={math: [{name: accuracy}]}",
            "reward.per_task.count=[{name: number}]",
            "reward.per_task.deep.er=1e-3",
        ]
    )
    assert cfg.reward.per_task == {
        "math": [{"name": "accuracy"}],
        "count": [{"name": "number"}],
        "deep": {"er": 1e-3},
    }
    assert Config().reward.per_task == {}  # the default was not mutated through the shared dict
    with pytest.raises(ConfigError, match="math"):
        load_config(
            overrides=["reward.per_task.math=[]", "reward.per_task.math.x=1"]
        )  # a list, not a mapping


def test_typed_dict_value_checked_by_deep_path():
    assert load_config(Outer, overrides=["inner.weights.a=2"]).inner.weights == {"a": 2.0}
    with pytest.raises(ConfigError, match="inner.weights.a.*float"):
        load_config(Outer, overrides=["inner.weights.a=heavy"])


def test_unknown_override_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["model.pth=x"])
    assert "model.pth" in str(err.value) and "attn_implementation" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["modle.path=x"])
    assert "modle" in str(err.value) and "rollout" in str(err.value)


def test_unknown_yaml_key_names_file_path_and_valid_keys(tmp_path):
    path = write(tmp_path, "optim:\n  learning_rate: 1e-3\n")
    with pytest.raises(ConfigError) as err:
        load_config(Config, path)
    message = str(err.value)
    assert "optim.learning_rate" in message and str(path) in message and "weight_decay" in message


def test_unknown_key_inside_typed_list_element(tmp_path):
    with pytest.raises(ConfigError, match=r"inner\.items\[1\]\.colour.*name"):
        load_config(Outer, write(tmp_path, "inner:\n  items: [{name: b}, {colour: red}]\n"))


@pytest.mark.parametrize(
    "override, needles",
    [
        ("rollout.group_size=abc", ["rollout.group_size", "int", "abc"]),
        ("rollout.group_size=3.0", ["rollout.group_size", "int", "3.0"]),
        ("rollout.group_size=true", ["rollout.group_size", "int"]),
        ("optim.lr=fast", ["optim.lr", "float", "fast"]),
        ("optim.betas=0.9", ["optim.betas", "list"]),
        ("reward.per_task=[1]", ["reward.per_task", "dict"]),
        ("model=3", ["model", "mapping"]),
        ("model.path.sub=1", ["model.path", "not a section"]),
        ("rollout.top_k=null", ["rollout.top_k", "int", "None"]),
        ("rollout.top_k", ["rollout.top_k", "key.sub=value"]),
    ],
)
def test_type_errors_name_key_and_expected_type(override, needles):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    for needle in needles:
        assert needle in str(err.value)


def test_generic_schema_optional_literal_typed_lists(tmp_path):
    path = write(tmp_path, "steps: 5\ninner:\n  ratio: 0.5\n  items: [{name: b}, {weight: 2}]\n")
    cfg = load_config(Outer, path, ["inner.ratio=null", "inner.mode=slow"])
    assert cfg.steps == 5 and cfg.inner.ratio is None and cfg.inner.mode == "slow"
    assert cfg.inner.items == [Item(name="b"), Item(weight=2.0)]  # mappings become dataclasses with defaults
    with pytest.raises(ConfigError, match="fast"):
        load_config(Outer, overrides=["inner.mode=medium"])
    with pytest.raises(ConfigError, match=r"inner\.names\[1\].*str"):
        load_config(Outer, overrides=["inner.names=[a, 2]"])


def test_yaml_file_errors(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(Config, missing)
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Config, write(tmp_path, "- model\n- data\n"))
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Config, write(tmp_path, "model: [unclosed\n"))
    assert load_config(Config, write(tmp_path, "")) == Config()  # an empty file means "all defaults"


@pytest.mark.parametrize(
    "cls, overrides",
    [
        (
            Config,
            [
                "optim.lr=1e-5",
                "optim.betas=[0.9, 0.999]",
                "reward.per_task.count=[{name: number, weight: 2.0, params: {tol: 0.5}}]",
                "data.system_prompt=123",
                "data.prompt_suffix=Answer: yes",
                "model.freeze_vision=true",
            ],
        ),
        (Outer, ["steps=9", "inner.ratio=2.5e-1", "inner.items=[{name: z}]", "inner.weights={'1e-3': 1}"]),
    ],
)
def test_save_load_round_trip(tmp_path, cls, overrides):
    cfg = load_config(cls, overrides=overrides)
    assert cfg != cls()  # the round trip below must carry real changes
    path = tmp_path / "sub" / "config.yaml"
    save_config(cfg, path)
    assert load_config(cls, path) == cfg
    assert yaml.safe_load(path.read_text()) == config_to_dict(cfg)  # plain YAML any reader can load


def test_saved_yaml_is_block_style(tmp_path):
    save_config(Config(), tmp_path / "c.yaml")
    text = (tmp_path / "c.yaml").read_text()
    assert text.startswith("model:\n  path: tiny\n")


def test_config_to_dict_is_plain_and_detached():
    cfg = load_config(Outer, overrides=["inner.items=[{name: q}]"])
    plain = config_to_dict(cfg)
    assert plain == {
        "steps": 3,
        "inner": {
            "ratio": None,
            "names": ["x"],
            "weights": {},
            "mode": "fast",
            "items": [{"name": "q", "weight": 1.0}],
        },
    }
    plain["inner"]["names"].append("y")
    assert cfg.inner.names == ["x"]
    assert config_to_dict(Config()) == dataclasses.asdict(Config())


def test_diff_from_defaults():
    assert diff_from_defaults(Config()) == {}
    default_g = Config().rollout.group_size
    cfg = load_config(overrides=["optim.lr=1e-3", "reward.per_task.count=[]", f"rollout.group_size={default_g}"])
    # group_size set to its default value is no difference
    assert diff_from_defaults(cfg) == {"optim.lr": 1e-3, "reward.per_task": {"count": []}}
    assert diff_from_defaults(load_config(Outer, overrides=["inner.mode=slow"])) == {"inner.mode": "slow"}


def test_format_help_lists_every_leaf_key_of_config():
    text = format_help(Config)
    keys = leaf_keys(Config)
    assert len(keys) > 40  # the walk really found the tree
    for key in keys:
        assert f"  {key}  (" in text, key
    assert "(float, default: 0.0005)" in text  # optim.lr's type and default
    assert "Peak learning rate of AdamW." in text
    assert "\noptim:\n" in text  # grouped by section
    assert max(len(line) for line in text.splitlines()) <= 110


def test_format_help_generic_schema():
    text = format_help(Outer)
    for key in leaf_keys(Outer):
        assert f"  {key}  (" in text, key
    assert "\nOuter:\n  steps  (int, default: 3)  Top-level leaf." in text
    assert "inner.ratio  (float | None, default: null)" in text


CONFIG_FILES = sorted((REPO / "configs").glob("*.yaml"))


def test_repo_ships_config_files():
    assert CONFIG_FILES, "configs/*.yaml is empty; the recipes (tiny_cpu.yaml, ...) are expected there"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_repo_config_files_load(path):
    cfg = load_config(Config, path)
    assert isinstance(cfg, Config)


def test_tiny_cpu_yaml_equals_the_builtin_defaults():
    # `vlrl train` with no argument runs the defaults; configs/tiny_cpu.yaml claims to spell them out.
    assert load_config(Config, REPO / "configs" / "tiny_cpu.yaml") == Config()


def test_deprecated_advantage_names_load_as_their_current_names():
    import warnings

    with pytest.warns(FutureWarning, match="algorithm.advantage=grpo is deprecated"):
        cfg = load_config(Config, None, ["algorithm.advantage=grpo"])
    assert (cfg.algorithm.advantage, cfg.algorithm.scale_rewards) == ("group", "group")
    with pytest.warns(FutureWarning, match="drgrpo"):
        cfg = load_config(Config, None, ["algorithm.advantage=drgrpo"])
    assert (cfg.algorithm.advantage, cfg.algorithm.scale_rewards) == ("group", "none")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current names load without a warning
        cfg = load_config(Config, None, ["algorithm.advantage=rloo", "algorithm.scale_rewards=batch"])
    assert (cfg.algorithm.advantage, cfg.algorithm.scale_rewards) == ("rloo", "batch")
    with pytest.raises(ConfigError, match="contradicts"):
        load_config(Config, None, ["algorithm.advantage=drgrpo", "algorithm.scale_rewards=batch"])


def test_min_new_tokens_over_max_new_tokens_is_refused_at_load():
    cfg = load_config(Config, None, ["rollout.max_new_tokens=8", "rollout.min_new_tokens=8"])
    assert cfg.rollout.min_new_tokens == 8
    with pytest.raises(ConfigError, match=r"rollout.min_new_tokens=9 is more than rollout.max_new_tokens=8"):
        load_config(Config, None, ["rollout.max_new_tokens=8", "rollout.min_new_tokens=9"])
