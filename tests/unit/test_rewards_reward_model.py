"""The `reward_model` reward on tiny sequence-classification checkpoints built offline (a BERT cross-encoder with a
one-logit head and no chat template; a Qwen2 decoder with three labels and the tiny chat template): scores equal
the model's own forward on the same text, sigmoid / softmax taken by hand, batched equal to one at a time;
loaded once; failures counted by the mixer."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

import vlrl.rewards.reward_model as rm_module
from vlrl.config import RewardConfig
from vlrl.rewards import RewardInput, RewardMixer, get_reward
from vlrl.rewards.batched import is_batched
from vlrl.rewards.reward_model import reward_model

WORDS = "what colour is the shape ? it is red blue green a square circle think answer how many".split()
INPUTS = [
    RewardInput("<answer>red</answer>", "red", "colour", problem="what colour is the shape ?"),
    RewardInput("<think>it is a square</think><answer>blue</answer>", "red", "colour",
                problem="what colour is the shape ?"),
    RewardInput("green", "2", "count", problem="how many ?"),
    RewardInput("<answer>red</answer>", "red", "colour", problem="what colour is the shape ?"),  # = the first
    RewardInput("it is a red square circle it is a blue circle", "red", "colour", problem="what colour ?"),
]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """A BERT sequence classifier with one logit and a WordPiece tokenizer from a vocab file: no chat template."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out = tmp_path_factory.mktemp("bert_rm")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<", ">", "/", *WORDS]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(out / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    """A Qwen2 decoder classifier with three labels and vlrl's tiny word-level tokenizer (chat template, left
    padding by default: the reward must pad on the right for batched == alone)."""
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    from vlrl.models.tiny import build_tiny_tokenizer

    out = tmp_path_factory.mktemp("qwen_rm")
    tokenizer = build_tiny_tokenizer(WORDS)
    torch.manual_seed(1)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128, num_labels=3,
                         id2label={0: "bad", 1: "ok", 2: "good"}, label2id={"bad": 0, "ok": 1, "good": 2},
                         pad_token_id=tokenizer.pad_token_id)
    model = Qwen2ForSequenceClassification(config)
    with torch.no_grad():  # a visible head: random init at std 0.02 would leave every class near 1/3
        model.score.weight.normal_(0, 1.0)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def own_logits(path, texts_or_pairs) -> list[list[float]]:
    """Each text through the checkpoint's own forward, alone (no padding), as transformers loads it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for item in texts_or_pairs:
            enc = tokenizer(*item, return_tensors="pt") if isinstance(item, tuple) else tokenizer(
                item, return_tensors="pt", add_special_tokens=False)
            out.append(model(**enc).logits[0].tolist())
    return out


def test_doctests_of_the_module_pass():
    result = doctest.testmod(rm_module)
    assert result.attempted >= 2 and result.failed == 0


def test_one_logit_scores_are_its_sigmoid_batched_or_alone(bert_dir):
    # No chat template: the tokenizer's sentence pair [CLS] question [SEP] completion [SEP].
    logits = own_logits(bert_dir, [(i.problem, i.completion) for i in INPUTS])
    expected = [1 / (1 + math.exp(-row[0])) for row in logits]
    assert len({round(e, 6) for e in expected}) == 4  # four distinct texts, four distinct scores: not a constant
    batched = reward_model(INPUTS, path=str(bert_dir), batch_size=4, device="cpu")
    alone = [reward_model([inp], path=str(bert_dir), batch_size=1, device="cpu")[0] for inp in INPUTS]
    assert batched == pytest.approx(expected, abs=1e-5)
    assert alone == pytest.approx(expected, abs=1e-5)


def test_several_labels_score_the_softmax_of_one_class_through_the_chat_template(qwen_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen_dir)
    assert tokenizer.padding_side == "left" and tokenizer.chat_template
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": i.problem},
                                            {"role": "assistant", "content": i.completion}], tokenize=False)
             for i in INPUTS]
    assert texts[0].startswith("<|im_start|>user what colour is the shape ?<|im_end|>")
    logits = own_logits(qwen_dir, texts)
    for label, index in (("good", 2), (0, 0)):
        expected = [math.exp(row[index]) / sum(math.exp(x) for x in row) for row in logits]
        assert len({round(e, 6) for e in expected}) == 4
        batched = reward_model(INPUTS, path=str(qwen_dir), batch_size=5, device="cpu", label=label)
        alone = [reward_model([inp], path=str(qwen_dir), device="cpu", label=label)[0] for inp in INPUTS]
        assert batched == pytest.approx(expected, abs=1e-5)
        assert alone == pytest.approx(expected, abs=1e-5)


def test_truncation_to_max_length(bert_dir):
    long = RewardInput("red " * 200, "red", "colour", problem="what colour ?")
    cut = reward_model([long], path=str(bert_dir), max_length=12, device="cpu")[0]
    # by hand: [CLS] what colour ? [SEP] + six "red" + [SEP] = 12 tokens (longest_first trims the completion)
    expected = 1 / (1 + math.exp(-own_logits(bert_dir, [("what colour ?", "red " * 6)])[0][0]))
    assert cut == pytest.approx(expected, abs=1e-5)


def test_in_the_mix_loaded_once_in_this_process(bert_dir, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    assert get_reward("reward_model") is reward_model and is_batched(reward_model)
    rm_module._MODELS.clear()
    loads = []
    real = AutoModelForSequenceClassification.from_pretrained
    monkeypatch.setattr(AutoModelForSequenceClassification, "from_pretrained",
                        lambda *a, **k: loads.append(a) or real(*a, **k))
    mixer = RewardMixer(RewardConfig(terms=[{"name": "reward_model", "weight": 2.0,
                                             "params": {"path": str(bert_dir), "batch_size": 2, "device": "cpu"}}],
                                     workers=2))
    try:
        first = mixer.score(INPUTS)
        second = mixer.score(INPUTS[:2])
    finally:
        mixer.close()
    assert mixer._pool is None  # batched: scored in this process, no worker started
    assert len(loads) == 1
    alone = reward_model(INPUTS, path=str(bert_dir), device="cpu")
    assert first.components["reward_model"].tolist() == pytest.approx(alone, abs=1e-6)
    assert first.total.tolist() == pytest.approx([2 * a for a in alone], abs=1e-6)
    assert second.components["reward_model"].tolist() == pytest.approx(alone[:2], abs=1e-6)


def test_a_model_with_several_labels_and_no_label_fails_every_completion_counted(qwen_dir):
    mixer = RewardMixer(RewardConfig(terms=[{"name": "reward_model", "params": {"path": str(qwen_dir),
                                                                                "device": "cpu"}}], workers=0))
    scores = mixer.score(INPUTS[:3])
    assert scores.total.tolist() == [0.0, 0.0, 0.0] and scores.parse_failures == 3


@pytest.mark.parametrize("params, message", [
    ({}, "needs params.path"),
    ({"path": "/nonexistent/rm"}, "no checkpoint there"),
    ({"path": "BERT", "batch_size": 0}, "batch_size"),
    ({"path": "BERT", "dtype": "fp8"}, "dtype"),
    ({"path": "BERT", "label": 1.5}, "label"),
    ({"path": "BERT", "temperature": 2}, "unknown params"),
])
def test_bad_params_fail_when_the_mixer_is_built(bert_dir, params, message):
    params = {k: str(bert_dir) if v == "BERT" else v for k, v in params.items()}
    with pytest.raises(ValueError, match=message):
        RewardMixer(RewardConfig(terms=[{"name": "reward_model", "params": params}], workers=0))


def test_named_in_a_recipes_yaml(bert_dir, tmp_path):
    from vlrl.config import Config
    from vlrl.config_loader import load_config

    (tmp_path / "recipe.yaml").write_text(
        "reward:\n  terms:\n"
        f"    - {{name: reward_model, weight: 0.5, params: {{path: '{bert_dir}', batch_size: 8, device: cpu}}}}\n"
        "    - {name: accuracy, weight: 1.0}\n")
    cfg = load_config(Config, tmp_path / "recipe.yaml", ["reward.workers=0"])
    scores = RewardMixer(cfg.reward).score(INPUTS[:2])
    expected = reward_model(INPUTS[:2], path=str(bert_dir), device="cpu")
    assert scores.components["reward_model"].tolist() == pytest.approx(expected, abs=1e-6)
    # by hand: 0.5 * model score + accuracy (row 0 answers red = red, row 1 blue != red)
    assert scores.total.tolist() == pytest.approx([0.5 * expected[0] + 1.0, 0.5 * expected[1]], abs=1e-6)
