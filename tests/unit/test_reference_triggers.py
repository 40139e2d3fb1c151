"""When a ProRL reference reset is due (`vlrl.reference.KLReference.due`) and which settings are refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vlrl.config import AlgorithmConfig, Config
from vlrl.config_loader import ConfigError, load_config
from vlrl.reference import KLReference


def _reference(**algorithm) -> KLReference:
    accelerator = SimpleNamespace(num_processes=1, distributed_type="NO", is_main_process=True, device="cpu")
    return KLReference(AlgorithmConfig(kl_coef=0.1, **algorithm), policy=None, forward=None, accelerator=accelerator)


def test_every_n_steps_counts_the_steps_metrics_number():
    ref = _reference(reference_reset_every=3)
    assert [step for step in range(1, 10) if ref.due(step, kl=0.0)] == [3, 6, 9]


def test_kl_threshold_is_strictly_above():
    ref = _reference(reference_reset_kl=0.02)
    assert ref.due(5, kl=0.03) == "loss/kl 0.03 > 0.02"
    assert not ref.due(5, kl=0.02) and not ref.due(5, kl=0.01)
    assert not ref.due(5, kl=None)  # a step that kept no rows ran no update


def test_both_triggers_and_neither():
    ref = _reference(reference_reset_every=4, reference_reset_kl=0.5)
    assert ref.due(4, kl=0.0) == "every 4 steps" and ref.due(3, kl=0.6) and not ref.due(3, kl=0.4)
    off = _reference()
    assert not off.enabled and off.after_step(4, 1.0, optimizer=None) == {}


@pytest.mark.parametrize("override", ["algorithm.reference_reset_every=10", "algorithm.reference_reset_kl=0.1"])
def test_a_reset_needs_a_kl_penalty(override):
    with pytest.raises(ConfigError, match="kl_coef"):
        load_config(Config, None, [override])
    cfg = load_config(Config, None, [override, "algorithm.kl_coef=0.001"])
    assert cfg.algorithm.reference_reset_every in (0, 10)


@pytest.mark.parametrize("override", ["algorithm.reference_reset_every=-1", "algorithm.reference_reset_kl=-0.1"])
def test_negative_settings_are_refused(override):
    with pytest.raises(ConfigError, match=">= 0"):
        load_config(Config, None, [override, "algorithm.kl_coef=0.001"])
