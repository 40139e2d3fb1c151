"""`vlrl --help` and each subcommand's help explain their options; config errors exit with a message."""

from __future__ import annotations

import dataclasses

import pytest

from vlrl.cli import main
from vlrl.config import Config


def leaf_keys(cls, prefix=""):
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            yield from leaf_keys(f.default_factory, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["models", "tiny", "--help"],
                                  ["models", "random", "--help"], ["data", "synth", "--help"],
                                  ["rewards", "score", "--help"], ["rewards", "list", "--help"],
                                  ["serve", "--help"]])
def test_help_exits_cleanly(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: vlrl" in capsys.readouterr().out


def test_train_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    keys = list(leaf_keys(Config))
    assert len(keys) > 40  # the walk reached the leaves
    for key in keys:
        assert key in out, key


def test_unknown_key_is_an_error_naming_valid_keys(capsys):
    assert main(["train", "optim.learning_rate=1e-3"]) == 2
    err = capsys.readouterr().err
    assert "optim.learning_rate" in err and "lr" in err


def test_rewards_list_names_every_registered_reward(capsys):
    from vlrl.rewards import registered_rewards

    assert main(["rewards", "list"]) == 0
    out = capsys.readouterr().out
    for name in registered_rewards():
        assert f"\n{name}(" in "\n" + out, name
    assert "detection(box_format='abs'" in out  # params with their defaults
    lines = {line.split("(", 1)[0]: line for line in out.splitlines() if "(" in line and not line.startswith(" ")}
    assert "base_url=''" in lines["judge"] and "path=''" in lines["reward_model"]
    assert "[batched" in lines["judge"] and "[batched" in lines["reward_model"] and "[batched" not in lines["format"]


def test_overrides_after_options_and_unknown_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["rewards", "list", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_serve_rejects_a_missing_checkpoint(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert "no checkpoint directory" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["models", "tiny"], ["models", "random", "--like", "qwen2.5-vl-7b"],
                                  ["data", "synth", "--train-rows", "1", "--eval-rows", "1"],
                                  ["export", "CKPT"]])
def test_directory_writers_refuse_a_non_empty_output(argv, tmp_path, capsys):
    # Written whole through a temporary directory, OUT would replace what is there: refused instead, at once
    # (the random 7B model is never built).
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    if argv[0] == "export":
        ckpt = tmp_path / "ckpt"
        ckpt.mkdir()
        (ckpt / "adapter_config.json").write_text("{}")
        argv = ["export", str(ckpt)]
    assert main([*argv, str(out)]) == 2
    assert f"{out} exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
