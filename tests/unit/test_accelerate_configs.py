"""configs/accelerate/*.yaml load through accelerate's own config reader, with the launch type each promises
and no option `accelerate launch` would silently ignore."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import DistributedType

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"

EXPECTED = {  # file: (distributed_type, num_machines, settings of its nested section)
    "ddp.yaml": (DistributedType.MULTI_GPU, 1, {}),
    "fsdp2.yaml": (DistributedType.FSDP, 1, {"fsdp_version": 2, "fsdp_reshard_after_forward": True}),
    "deepspeed_zero2.yaml": (DistributedType.DEEPSPEED, 1, {"zero_stage": 2}),
    "deepspeed_zero3.yaml": (DistributedType.DEEPSPEED, 1, {"zero_stage": 3}),
    "multi_node.yaml": (DistributedType.MULTI_GPU, 2, {}),
}


def test_every_config_is_checked():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_parses_with_its_distributed_type(name):
    config = load_config_from_file(str(CONFIGS / name))  # raises on unknown top-level keys
    kind, machines, nested = EXPECTED[name]
    assert config.distributed_type == kind
    assert config.num_machines == machines and config.num_processes % machines == 0
    assert config.mixed_precision == "no"  # parameters already are in model.dtype
    section = {DistributedType.FSDP: config.fsdp_config, DistributedType.DEEPSPEED: config.deepspeed_config}.get(kind, {})
    assert nested.items() <= section.items()
    # `accelerate launch` copies nested keys onto its arguments; one it has no argument for would be ignored.
    launch_args = {a.dest for a in launch_command_parser()._actions}
    unknown = [k for k in section if k not in launch_args]
    assert not unknown, f"{name}: keys accelerate launch does not know: {unknown}"
