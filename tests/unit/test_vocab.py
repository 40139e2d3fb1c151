"""The tiny tokenizer's vocabulary from data, its word splitting, and the unknown-token check before training."""

from __future__ import annotations

import datasets
import pytest

from data_pipelines.synthetic.shapes import WORDS
from vlrl.data.vocab import UnknownTokensError, check_unknown_tokens, dataset_texts, find_unknown_tokens
from vlrl.models.tiny import (
    CHAT_WORDS,
    SPECIAL_TOKENS,
    TAG_TOKENS,
    build_tiny_tokenizer,
    tiny_vocabulary,
    words_of,
)
from vlrl.rewards import RewardInput, get_reward


def rows(*pairs: tuple[str, str]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"id": [f"r{i}" for i in range(len(pairs))],
                                       "problem": [p for p, _ in pairs], "answer": [a for _, a in pairs]})


def test_demo_vocabulary_is_the_one_it_always_was():
    # The default demo's model must not change: same tokens in the same order as the whitespace-split
    # vocabulary it was built with before words came from the data (ids are positions in this list).
    assert tiny_vocabulary(WORDS) == SPECIAL_TOKENS + TAG_TOKENS + sorted(set(WORDS) | set(CHAT_WORDS))
    assert len(tiny_vocabulary(WORDS)) == 12 + len(set(WORDS) | set(CHAT_WORDS))


def test_words_split_off_punctuation_but_keep_answers_whole():
    assert words_of(["Where is the shape?", "top-left", "3.5", "don't (B) 42%", "<answer>yes</answer>"]) == [
        "Where", "is", "the", "shape", "?", "top-left", "3.5", "don't", "(", "B", ")", "42", "%", "yes"]
    # "shape?" and "shape" are one word now: a user's ordinary punctuation costs no vocabulary entry.
    vocab = tiny_vocabulary(["is it a shape?", "a shape"])
    assert vocab.count("shape") == 1 and "shape?" not in vocab and "?" in vocab


def test_vocabulary_from_data_covers_problems_answers_and_prompt_texts():
    ds = rows(("<image> Which quadrant is the shape in?", "top-left"), ("Is it big?", "yes"))
    texts = list(dataset_texts([ds, None], "You answer briefly.", "Answer in tags."))
    vocab = tiny_vocabulary(texts)
    for word in ("Which", "quadrant", "top-left", "yes", "big", "You", "briefly", "tags", "."):
        assert word in vocab, word
    # The image mark is not a word: it becomes image tokens in the prompt.
    assert "image" not in vocab and "<" not in vocab


@pytest.mark.parametrize("answer,task", [
    ("top-left", "position"), ("3.5", "number"), ("yes", "yes_no"), ("B", "mcq"), ("42%", "number"),
    ("don't know", "open"), ("New York", "open"), ("bigger", "size"),
])
def test_decoded_answers_score_like_the_truth(answer, task):
    """What the policy can write, decoded, must earn the accuracy reward for the ground truth it was built from."""
    tok = build_tiny_tokenizer([answer])
    ids = tok(f"<answer>{answer}</answer>", add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    text = tok.decode(ids)
    assert get_reward("accuracy")(RewardInput(text, answer, task)) == 1.0, text


def test_unknown_words_are_named_with_their_rows():
    tok = build_tiny_tokenizer(WORDS)
    ds = rows(("what colour is the shape ?", "red"), ("which side is the shape on ?", "left"),
              ("how many shapes are there ?", "2"), ("<image> what colour is the circle ?", "blue"))
    found = find_unknown_tokens(tok, ds, "train")
    assert found.bad == [1, 3] and found.ids == ["r1", "r3"]
    # each unknown word once per row that holds it; the image mark is not read as a word
    assert found.words == {"which": 1, "side": 1, "on": 1, "left": 1, "circle": 1}


def test_unknown_tokens_policies():
    tok = build_tiny_tokenizer(WORDS)
    train = rows(("what colour is the shape ?", "red"), ("is the shape top-left ?", "yes"))
    evals = rows(("how many shapes are there ?", "3"))
    with pytest.raises(UnknownTokensError) as err:
        check_unknown_tokens(tok, {"train": train, "eval": evals}, "error")
    message = str(err.value)
    assert "1 of 2 train rows ('r1')" in message and "'top-left' (1)" in message and "'yes' (1)" in message
    assert "--vocab-from" in message and "data.unknown_tokens=drop" in message
    kept = check_unknown_tokens(tok, {"train": train, "eval": evals}, "drop")
    assert kept["train"]["id"] == ["r0"] and kept["eval"]["id"] == ["r0"]
    assert check_unknown_tokens(tok, {"train": train, "eval": None}, "ignore")["train"] is train
    # The prompt suffix is in every row: unknown words there fail even under 'drop'.
    with pytest.raises(UnknownTokensError, match="prompt_suffix"):
        check_unknown_tokens(tok, {"train": rows(("what colour is the shape ?", "red"))}, "drop",
                             prompt_suffix="think first")
    with pytest.raises(UnknownTokensError, match="left no train rows"):
        check_unknown_tokens(tok, {"train": rows(("is it top-left ?", "yes"))}, "drop")


def test_a_tokenizer_without_an_unknown_token_passes():
    class ByteLevel:  # Qwen's own tokenizer has no unknown token: every string has an encoding
        unk_token_id = None
        unk_token = None

    train = rows(("anything at all ?", "ça va"))
    assert check_unknown_tokens(ByteLevel(), {"train": train}, "error")["train"] is train
    assert find_unknown_tokens(ByteLevel(), train, "train").bad == []


def test_the_tiny_builder_does_not_depend_on_the_pipeline():
    import subprocess
    import sys

    # The library takes the words as an argument; importing it must not pull in data_pipelines.
    code = ("import sys, vlrl.models.tiny, vlrl.models.families, vlrl.models.shapes, vlrl.data.vocab; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'data_pipelines'))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"
