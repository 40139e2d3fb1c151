"""`vlrl --help` and each subcommand's help explain their options; config errors exit with a message."""

from __future__ import annotations

import pytest

from vlrl.cli import main
from vlrl.config import Config
from vlrl.config_loader import config_to_dict


def leaf_keys(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("per_task", "params"):
            yield from leaf_keys(v, f"{prefix}{k}.")
        else:
            yield prefix + k


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["models", "tiny", "--help"],
                                  ["models", "random", "--help"], ["data", "synth", "--help"]])
def test_help_exits_cleanly(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: vlrl" in capsys.readouterr().out


def test_train_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for key in leaf_keys(config_to_dict(Config())):
        assert key in out, key


def test_unknown_key_is_an_error_naming_valid_keys(capsys):
    assert main(["train", "optim.learning_rate=1e-3"]) == 2
    err = capsys.readouterr().err
    assert "optim.learning_rate" in err and "lr" in err
