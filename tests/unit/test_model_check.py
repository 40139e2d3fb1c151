"""model.path is checked first, from config.json alone: a missing path says so, an unsupported model names the
supported ones, and `vlrl train` reports either in one line before any slow work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vlrl.cli import main
from vlrl.models.check import ModelPathError, check_model_path, looks_like_hub_id


def checkpoint(path, **config):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_a_supported_checkpoint_gives_its_type_and_context(tiny_model_dir):
    info = check_model_path(tiny_model_dir)
    assert (info.model_type, info.context) == ("qwen2_5_vl", 32768)


@pytest.mark.parametrize("text,hub", [("Qwen/Qwen2.5-VL-3B-Instruct", True), ("org/name", True),
                                      ("/models/qwen", False), ("./ckpt", False), ("~/ckpt", False),
                                      ("runs/tiny/final", False), ("my_model", False), ("org/name/", False),
                                      ("../name", False), ("org\\name", False)])
def test_which_missing_paths_are_hub_ids(text, hub):
    assert looks_like_hub_id(text) is hub


def test_a_missing_local_path_says_so_without_asking_the_hub(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.hf_hub_download", lambda *a, **k: pytest.fail("asked the hub"))
    for text in (str(tmp_path / "nowhere"), "runs/missing/final", "my_model"):
        with pytest.raises(ModelPathError, match=rf"model.path={text}: no checkpoint directory there \(.*does not "
                           "exist\\); give an HF-format checkpoint directory, or a hub id of the form org/name"):
            check_model_path(text)


def test_a_hub_id_is_checked_by_its_config_alone(tmp_path, monkeypatch):
    def offline(repo_id, filename):
        raise OSError(f"We couldn't connect to the hub to fetch {filename}\nmore lines")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", offline)
    with pytest.raises(ModelPathError, match=r"model.path=someorg/missing-model: no such local directory \(.*\), and "
                       r"as a hub id its config.json could not be fetched \(OSError: We couldn't connect to the hub "
                       r"to fetch config.json\)"):
        check_model_path("someorg/missing-model")
    llama = checkpoint(tmp_path / "cache", model_type="llama", architectures=["LlamaForCausalLM"])
    monkeypatch.setattr("huggingface_hub.hf_hub_download", lambda repo_id, filename: str(llama / filename))
    with pytest.raises(ModelPathError, match="model_type 'llama'"):
        check_model_path("meta-llama/Llama-3.2-1B")


@pytest.mark.parametrize("config,kind", [
    ({"model_type": "llama", "architectures": ["LlamaForCausalLM"]},
     "'llama' (LlamaForCausalLM; a text-only model (no vision_config))"),
    ({"model_type": "clip", "architectures": ["CLIPModel"], "vision_config": {}},
     "'clip' (CLIPModel; a vision-language model)"),
    ({}, "None (no architectures listed; a text-only model (no vision_config))"),
])
def test_an_unsupported_model_names_the_supported_ones(tmp_path, config, kind):
    path = checkpoint(tmp_path / "model", **config)
    with pytest.raises(ModelPathError) as info:
        check_model_path(path)
    assert str(info.value) == (
        f"model.path={path} is model_type {kind}, which vlrl cannot train (transformers' "
        "AutoModelForImageTextToText has no class for it); supported: the families qwen2_vl (Qwen2-VL), "
        "qwen2_5_vl (Qwen2.5-VL), qwen3_vl (Qwen3-VL), qwen3_vl_moe (Qwen3-VL-MoE), and in the generic tier (transformers' own forward and "
        "generate; slower, fewer options) any other model_type AutoModelForImageTextToText loads, e.g. llava, "
        "gemma3, idefics3, smolvlm, paligemma")


def test_another_image_text_to_text_model_is_the_generic_tier(tmp_path):
    path = checkpoint(tmp_path / "model", model_type="llava", architectures=["LlavaForConditionalGeneration"],
                      vision_config={}, text_config={"max_position_embeddings": 2048})
    info = check_model_path(path)
    assert (info.model_type, info.context, info.generic) == ("llava", 2048, True)


def test_a_file_or_a_directory_without_config_is_not_a_checkpoint(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelPathError, match="is a file; expected an HF-format checkpoint directory"):
        check_model_path(tmp_path / "weights.safetensors")
    with pytest.raises(ModelPathError, match="the directory has no config.json"):
        check_model_path(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelPathError, match="cannot read .*config.json"):
        check_model_path(tmp_path)


def test_vlrl_train_with_a_missing_model_path_fails_at_once_in_one_line(tmp_path):
    """A subprocess, as a user runs it: exit 2, the message, no traceback, and no synthetic data built first."""
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "vlrl.cli", "train", "model.path=/nonexistent/model",
                           f"trainer.output_dir={run}"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error: model.path=/nonexistent/model: no checkpoint directory there" in proc.stderr
    assert not (run / "data").exists()  # the synthetic set (minutes on the default) was not built


def test_vlrl_train_and_serve_refuse_a_text_only_checkpoint(tmp_path, capsys):
    llama = checkpoint(tmp_path / "llama", model_type="llama", architectures=["LlamaForCausalLM"])
    assert main(["train", f"model.path={llama}", f"trainer.output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: model.path={llama} is model_type 'llama'") and "qwen2_5_vl (Qwen2.5-VL)" in err
    assert not (tmp_path / "run" / "data").exists()
    assert main(["serve", str(llama)]) == 2
    assert f"error: MODEL={llama} is model_type 'llama'" in capsys.readouterr().err
