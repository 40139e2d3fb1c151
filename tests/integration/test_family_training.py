"""Each supported family end to end through vlrl's trainer and CLI, on the tiny checkpoints of
`tests/family_models.py` (built from transformers' classes): a run interrupted and resumed equals the run
that was not; LoRA (language and vision blocks, the family's connector kept as a trained copy) trains, its
reference is the base model and `vlrl export` merges it into a checkpoint transformers loads; `vlrl serve`
answers with vlrl's own greedy rollout."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest
import torch
from serve_process import running_server

from vlrl.chat import processor_pixel_bounds
from vlrl.cli import main
from vlrl.config import Config, ModelConfig, RolloutConfig
from vlrl.config_loader import load_config
from vlrl.data import PromptEncoder, validate_row
from vlrl.models.policy import load_policy
from vlrl.rollout import generate
from vlrl.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from family_models import build  # noqa: E402

_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """family -> its tiny checkpoint, built once per module."""
    def get(family: str) -> tuple[str, Path]:
        if family not in _BUILT:
            _BUILT[family] = build(family, tmp_path_factory.mktemp(family))
        return family, _BUILT[family]
    return get


# Qwen3-VL-MoE shares Qwen3-VL's whole path (tests/integration/test_families.py checks it like the others); here
# it runs its recipe, so the suite stays short.
DENSE = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


def _config(model_dir, data_dir, out_dir, *overrides: str) -> Config:
    # The checkpoints' word-level tokenizer lacks most of the shapes data's words: trained on as they are.
    return load_config(Config, None, [
        f"model.path={model_dir}", f"data.path={data_dir}", f"trainer.output_dir={out_dir}", "model.dtype=float32",
        "data.prompts_per_step=4", "rollout.group_size=3", "rollout.max_new_tokens=5", "trainer.eval_every=0",
        "trainer.progress_bar=false", "trainer.device=cpu", "data.max_eval_rows=8", "optim.warmup_steps=0",
        "data.source_weights={}", "data.unknown_tokens=ignore", "optim.lr=0.05", "model.min_pixels=1024",
        "model.max_pixels=9216", *overrides,
    ])


def _metrics(run: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in ln.items() if not k.startswith("perf/")} for ln in lines]


@pytest.mark.parametrize("family", DENSE)
def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(built, family, shapes_dir, tmp_path):
    family, model_dir = built(family)
    common = ("trainer.total_steps=3", "trainer.save_every=2", "algorithm.kl_coef=0.05", "model.freeze_vision=true")
    full = Trainer(_config(model_dir, shapes_dir, tmp_path / "full", *common))
    assert full.policy.model_type == family
    before = {n: p.detach().clone() for n, p in full.policy.core.named_parameters()}
    full.fit()
    moved = {n for n, p in full.policy.core.named_parameters() if not torch.equal(p, before[n])}
    assert any(".language_model." in n for n in moved) and any(".merger." in n for n in moved)
    assert not any(".visual.blocks." in n for n in moved)  # frozen tower
    if family.startswith("qwen3_vl"):
        assert any(".deepstack_merger_list." in n for n in moved)  # part of the connector: trains

    Trainer(_config(model_dir, shapes_dir, tmp_path / "part", *common)).fit(stop_after=3)
    assert main(["train", "--resume", str(tmp_path / "part"), "trainer.progress_bar=false"]) == 0
    assert _metrics(tmp_path / "full") == _metrics(tmp_path / "part")
    assert [m["step"] for m in _metrics(tmp_path / "full") if "loss/loss" in m] == [1, 2, 3]


@pytest.mark.parametrize("family", DENSE)
def test_lora_trains_and_exports_a_merged_checkpoint(built, family, shapes_dir, tmp_path):
    family, model_dir = built(family)
    run = tmp_path / "run"
    trainer = Trainer(_config(model_dir, shapes_dir, run, "trainer.total_steps=1", "model.lora_rank=4",
                              "model.lora_vision=true", "algorithm.kl_coef=0.05"))
    trainable = [n for n, p in trainer.policy.core.named_parameters() if p.requires_grad]
    assert any(".language_model.layers." in n and "lora_" in n for n in trainable)
    assert any(".visual.blocks." in n and "lora_" in n for n in trainable)
    connector = ("merger", "deepstack_merger_list") if family.startswith("qwen3_vl") else ("merger",)
    for name in connector:  # peft's trained copy of each connector module
        assert any(f".{name}" in n and "modules_to_save" in n for n in trainable), name
    trainer.fit()
    out = tmp_path / "merged"
    assert main(["export", str(run / "final"), str(out)]) == 0
    merged = load_policy(ModelConfig(dtype="float32"), out)
    assert merged.model_type == family and not any("lora" in n for n, _ in merged.core.named_parameters())
    # The merged weights are the trained policy's: same log-probs of a greedy rollout's tokens.
    rows = [validate_row(r, i) for i, r in enumerate(trainer.eval_rows.select(range(2)))] \
        if trainer.eval_rows is not None else None
    if rows:
        batch = PromptEncoder(merged.processor, 1024, 9216)(rows, group_size=1)
        a = generate(merged, batch, RolloutConfig(max_new_tokens=4), greedy=True)
        b = generate(trainer.policy, batch, RolloutConfig(max_new_tokens=4), greedy=True)
        assert a.completion_ids.tolist() == b.completion_ids.tolist()
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", DENSE)
def test_serve_answers_with_the_greedy_rollout(built, family, tmp_path):
    family, model_dir = built(family)
    policy = load_policy(ModelConfig(dtype="float32"), model_dir)
    from PIL import Image

    image = Image.new("RGB", (64, 48), (200, 30, 30))
    row = validate_row(dict(id="r", images=[image], problem="what colour is the shape ?", answer="red", task="t"), 0)
    processor = policy.processor
    batch = PromptEncoder(processor, *processor_pixel_bounds(processor))([row], group_size=1)  # as serve does
    expected = generate(policy, batch, RolloutConfig(max_new_tokens=6), greedy=True).texts[0]
    from data_pipelines.teachers.openai_http import png_data_url

    body = {"model": "tiny", "max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": png_data_url(image)}},
        {"type": "text", "text": "what colour is the shape ?"}]}]}
    with running_server(model_dir, tmp_path / "stderr.log") as (base, _):
        req = urllib.request.Request(base + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            reply = json.loads(resp.read())
    assert reply["choices"][0]["message"]["content"] == expected and expected, family


RECIPES = {"qwen2_vl": "qwen2_vl_2b_grpo.yaml", "qwen2_5_vl": "qwen2_5_vl_3b_grpo.yaml",
           "qwen3_vl": "qwen3_vl_4b_grpo.yaml", "qwen3_vl_moe": "qwen3_vl_30b_a3b_grpo.yaml"}


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl", "qwen3_vl_moe"])  # Qwen2.5-VL's: test_train.py
def test_each_familys_recipe_runs_on_its_tiny_model_with_the_familys_box_frame(built, family, shapes_dir, tmp_path):
    """configs/<family>_*_grpo.yaml: the family's box frame in the accuracy term (Qwen2.5-VL pixels of the resized
    input, Qwen2-VL and Qwen3-VL 0-1000), and its options (bf16, gradient checkpointing, frozen tower, prompt
    suffix) for two steps on the family's tiny checkpoint."""
    from vlrl.models.policy import family_class

    family, model_dir = built(family)
    recipe = Path(__file__).resolve().parents[2] / "configs" / RECIPES[family]
    cfg = load_config(Config, recipe, [
        f"model.path={model_dir}", f"data.path={shapes_dir}", f"trainer.output_dir={tmp_path / 'run'}",
        "trainer.total_steps=2", "trainer.eval_every=0", "trainer.save_every=0", "trainer.progress_bar=false",
        "trainer.device=cpu", "rollout.max_new_tokens=6", "data.prompts_per_step=2", "rollout.group_size=3",
        "data.unknown_tokens=ignore", "model.min_pixels=1024", "model.max_pixels=9216"])
    accuracy = [t for t in cfg.reward.terms if t["name"] == "accuracy"]
    assert accuracy and accuracy[0]["params"]["box_format"] == family_class(family).box_format
    assert cfg.model.dtype == "bfloat16" and cfg.model.gradient_checkpointing and cfg.model.freeze_vision
    trainer = Trainer(cfg)
    trainer.fit()
    steps = [m for m in _metrics(tmp_path / "run") if "loss/loss" in m]
    assert [m["step"] for m in steps] == [1, 2]
    assert next(trainer.policy.core.parameters()).dtype == torch.bfloat16
