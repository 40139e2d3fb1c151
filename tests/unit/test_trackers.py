"""vlrl.trackers: a tracker that is unknown or not installed is refused with what to install; the config
every tracker gets."""

import importlib.util

import pytest

from vlrl.cli import main
from vlrl.config import Config
from vlrl.trackers import TrackerError, check_report_to, flat_config


def test_missing_and_unknown_trackers_name_the_extra_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("wandb", "aim") else real(name, *a))
    with pytest.raises(TrackerError) as e:
        check_report_to(["tensorboard", "wandb", "aim", "neptune"])
    message = str(e.value)
    assert "wandb is not installed: pip install 'vlrl[wandb]'" in message
    assert "aim is not installed: pip install aim" in message
    assert "unknown tracker 'neptune'; choose from tensorboard, wandb, mlflow, trackio" in message
    check_report_to(["tensorboard"])  # a core dependency: always there


def test_vlrl_train_stops_at_once_on_a_missing_tracker(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert main(["train", f"trainer.output_dir={tmp_path / 'run'}", "trainer.report_to=[tensorboard,mlflow]"]) == 2
    assert "pip install 'vlrl[mlflow]'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing built or written


def test_flat_config_names_every_field_with_plain_values():
    flat = flat_config(Config())
    assert flat["rollout.group_size"] == 16 and flat["trainer.report_to"] == '["tensorboard"]'
    assert flat["data.max_prompt_tokens"] == "null" and flat["model.freeze_vision"] is False
    assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())
