"""The pipeline's stages on small hand-made datasets, with a scripted in-process teacher."""

from __future__ import annotations

import json

import datasets
import PIL.Image
import pytest

from data_pipelines.cache import ReplyCache, request_key
from data_pipelines.config import CurateConfig, RewriteConfig, TeacherStageConfig, VerifyConfig
from data_pipelines.records import rows_dataset, to_schema_row
from data_pipelines.stages.caption import caption
from data_pipelines.stages.curate import curate
from data_pipelines.stages.distill import distill
from data_pipelines.stages.rewrite import rewrite, similarity
from data_pipelines.stages.verify import verify
from data_pipelines.teachers.base import ChatReply, ChatRequest
from vlrl.data.schema import SCHEMA_FEATURES


class ScriptedTeacher:
    """Answers by a function of the request; records every request it is sent."""

    def __init__(self, answer, identity="scripted"):
        self.answer, self.identity, self.sent = answer, identity, []

    def chat(self, requests, on_reply=None):
        replies = []
        for i, r in enumerate(requests):
            self.sent.append(r)
            replies.append(self.answer(r))
            if on_reply is not None:
                on_reply(i, replies[-1])
        return replies


def image(colour=(255, 0, 0), size=(32, 24)):
    return PIL.Image.new("RGB", size, colour)


def dataset(rows):
    full = [to_schema_row({"data_source": "src", "reward": "", "reasoning": "", "meta": "", **r}) for r in rows]
    return rows_dataset(full)


def text_of(request: ChatRequest) -> str:
    content = request.messages[-1]["content"]
    return content if isinstance(content, str) else next(p["text"] for p in content if p["type"] == "text")


def test_request_key_depends_on_pixels_template_teacher_and_settings():
    req = ChatRequest([{"role": "user", "content": [{"type": "image", "image": image()}, {"type": "text", "text": "q"}]}])
    same = ChatRequest([{"role": "user", "content": [{"type": "image", "image": image()}, {"type": "text", "text": "q"}]}],
                       metadata={"ignored": 1})
    other_pixels = ChatRequest([{"role": "user", "content": [{"type": "image", "image": image((0, 255, 0))},
                                                              {"type": "text", "text": "q"}]}])
    key = request_key("caption", "t", "tmpl", req)
    assert key == request_key("caption", "t", "tmpl", same)
    assert key != request_key("caption", "t", "tmpl", other_pixels)
    assert key != request_key("caption", "t2", "tmpl", req)
    assert key != request_key("caption", "t", "tmpl2", req)
    assert key != request_key("distill", "t", "tmpl", req)
    assert key != request_key("caption", "t", "tmpl", ChatRequest(req.messages, max_tokens=7))
    # A teacher answering from metadata (the programmatic one) gets keys that hash it.
    assert request_key("caption", "t", "tmpl", req, True) != request_key("caption", "t", "tmpl", same, True)


def test_reply_cache_survives_reopening(tmp_path):
    cache = ReplyCache(tmp_path / "c.sqlite")
    cache.put_many("caption", [("k1", "one"), ("k2", "two")])
    cache.close()
    cache = ReplyCache(tmp_path / "c.sqlite")
    assert cache.get_many(["k1", "k2", "k3"]) == {"k1": "one", "k2": "two"}
    assert cache.count("caption") == 2 and cache.count("distill") == 0


def test_caption_asks_only_rows_that_need_it_and_a_rerun_asks_nothing(tmp_path):
    ds = dataset([
        {"id": "a", "images": [image()], "problem": "q1", "answer": "1", "task": "count"},
        {"id": "b", "images": [image((0, 0, 255))], "problem": "q2", "answer": "2", "task": "count",
         "meta": {"caption": "given"}},
        {"id": "c", "images": [], "problem": "2+2?", "answer": "4", "task": "math"},
        {"id": "d", "images": [image((9, 9, 9))], "problem": "q4", "answer": "4", "task": "count"},
    ])
    fails = {"d"}
    teacher = ScriptedTeacher(lambda r: ChatReply(None, error="boom") if r.metadata["scene"].get("x") in fails
                              else ChatReply(f"caption of {r.metadata['question']}"))
    ds = datasets.Dataset.from_list([dict(r, meta=json.dumps({"x": r["id"]}) if r["id"] == "d" else r["meta"])
                                     for r in ds.to_list()], features=SCHEMA_FEATURES)
    cache = ReplyCache(tmp_path / "c.sqlite")
    out = caption(ds, teacher, cache, TeacherStageConfig())
    # a: asked; b: already captioned; c: no image; d: asked and failed -> dropped, not cached.
    assert [r.metadata["question"] for r in teacher.sent] == ["q1", "q4"]
    assert out.ds["id"] == ["a", "b", "c"]
    assert [json.loads(m or "{}").get("caption") for m in out.ds["meta"]] == ["caption of q1", "given", None]
    assert [(d.id, d.step, d.reason) for d in out.drops] == [("d", "caption", "teacher_error")]
    assert out.stats == {"asked": 2, "cached": 0, "not_needed": 2, "failed": 1, "shared": 0}
    # Rerun: a's caption comes from the cache; the failed d is asked again.
    teacher.sent.clear()
    again = caption(ds, teacher, cache, TeacherStageConfig())
    assert [r.metadata["question"] for r in teacher.sent] == ["q4"]
    assert again.stats["cached"] == 1 and again.ds["meta"] == out.ds["meta"]


def test_distill_fills_the_template_with_caption_and_question(tmp_path):
    ds = dataset([
        {"id": "a", "images": [image()], "problem": "<image>How many?", "answer": "3", "task": "count",
         "meta": {"caption": "three dots"}},
        {"id": "b", "images": [], "problem": "2+2?", "answer": "4", "task": "math"},
    ])
    teacher = ScriptedTeacher(lambda r: ChatReply("" if r.metadata["question"] == "2+2?" else "<think>x</think><answer>3</answer>"))
    out = distill(ds, teacher, ReplyCache(tmp_path / "c.sqlite"), TeacherStageConfig())
    first = text_of(teacher.sent[0])
    assert "three dots" in first and "How many?" in first and "<image>" not in first
    assert "there is no image" in text_of(teacher.sent[1])
    assert out.ds["reasoning"] == ["<think>x</think><answer>3</answer>"]
    assert [(d.id, d.reason) for d in out.drops] == [("b", "empty_reply")]


def test_similarity_is_difflib_ratio():
    # "abcd" vs "abxd": 3 matching characters of 8 in total -> 2*3/8.
    assert similarity("abcd", "abxd") == pytest.approx(0.75)
    assert similarity("same", "same") == 1.0


def test_rewrite_keeps_clean_chains_and_drops_bad_rewrites(tmp_path):
    chains = {
        "clean": "<think>I see two cats.</think><answer>2</answer>",
        "good": "<think>The caption says two cats.</think><answer>2</answer>",
        "wild": "<think>According to the description there are 2 cats.</think><answer>2</answer>",
        "lazy": "<think>The caption mentions 2 cats.</think><answer>2</answer>",
        "lost": "<think>The caption shows 2.</think><answer>2</answer>",
    }
    replies = {
        "good": "<think>The image shows two cats.</think><answer>2</answer>",
        "wild": "Completely different text without tags <answer>2</answer> and lots more words here",
        "lazy": "<think>The caption mentions 2 cats.</think><answer>2</answer>",
        "lost": "<think>The image shows 2.</think>",
    }
    ds = dataset([{"id": k, "images": [], "problem": k, "answer": "2", "task": "count", "reasoning": v}
                  for k, v in chains.items()])
    teacher = ScriptedTeacher(lambda r: ChatReply(replies[r.metadata["question"]]))
    out = rewrite(ds, teacher, ReplyCache(tmp_path / "c.sqlite"), RewriteConfig(min_similarity=0.6))
    assert sorted(r.metadata["question"] for r in teacher.sent) == ["good", "lazy", "lost", "wild"]
    assert out.ds["id"] == ["clean", "good"]
    assert out.ds["reasoning"] == [chains["clean"], replies["good"]]
    assert {d.id: d.reason for d in out.drops} == {
        "wild": "rewrite_changed_too_much", "lazy": "rewrite_still_mentions_caption", "lost": "rewrite_lost_answer"}


def test_verify_keeps_matching_answers_with_the_training_verifiers():
    box = json.dumps([10, 10, 30, 30])
    ds = dataset([
        {"id": "num", "images": [], "problem": "p", "answer": "12", "task": "count",
         "reasoning": "<think>3*4</think><answer>12</answer>"},
        {"id": "num_wrong", "images": [], "problem": "p", "answer": "12", "task": "count",
         "reasoning": "<think>3+4</think><answer>7</answer>"},
        {"id": "math", "images": [], "problem": "p", "answer": "\\frac{1}{2}", "task": "math",
         "reasoning": "<think>half</think><answer>0.5</answer>"},
        {"id": "box", "images": [image(size=(64, 64))], "problem": "p", "answer": box, "task": "grounding",
         "reasoning": "<answer>[12, 10, 30, 30]</answer>"},  # IoU 360/400 = 0.9
        {"id": "box_far", "images": [image(size=(64, 64))], "problem": "p", "answer": box, "task": "grounding",
         "reasoning": "<answer>[40, 40, 60, 60]</answer>"},  # IoU 0
        {"id": "untagged", "images": [], "problem": "p", "answer": "12", "task": "count", "reasoning": "it is 12"},
    ])
    out = verify(ds, VerifyConfig(min_score=0.5))
    assert out.ds["id"] == ["num", "math", "box"]
    assert {d.id: d.reason for d in out.drops} == {
        "num_wrong": "answer_mismatch", "box_far": "answer_mismatch", "untagged": "no_answer_tag"}


def test_curate_filters_dedupes_and_splits():
    red, blue = image(), image((0, 0, 255))
    rows = [
        {"id": "r1", "images": [red], "problem": "What colour?", "answer": "red", "task": "open"},
        {"id": "r1dup", "images": [image()], "problem": "what  colour", "answer": "red", "task": "open"},
        {"id": "r1q2", "images": [red], "problem": "Which shape?", "answer": "square", "task": "open"},
        {"id": "long", "images": [blue], "problem": "Describe", "answer": "x" * 30, "task": "open"},
        {"id": "tiny_box", "images": [blue], "problem": "Where?", "answer": "[1, 1, 2, 9]", "task": "grounding"},
        {"id": "out_box", "images": [blue], "problem": "Where 2?", "answer": "[1, 1, 40, 9]", "task": "grounding"},
        {"id": "ok_box", "images": [blue], "problem": "Where 3?", "answer": "[1, 1, 20, 9]", "task": "grounding"},
    ]
    collected = dataset(rows)
    verified = dataset([dict(rows[0], reasoning="<answer>red</answer>"), dict(rows[3], reasoning="<answer>x</answer>"),
                        rows[2]])  # r1q2 passed through the stages without a chain (distill off)
    cfg = CurateConfig(max_answer_chars=20, min_box_side=2.0, eval_fraction=0.0)
    result, sets = curate(collected, verified, cfg)
    assert result.ds["id"] == ["r1", "r1q2", "ok_box"]
    assert {d.id: d.reason for d in result.drops} == {
        "r1dup": "duplicate", "long": "answer_too_long", "tiny_box": "box_too_small", "out_box": "box_outside_image"}
    assert sets["rl"]["train"]["id"] == ["r1", "r1q2", "ok_box"] and len(sets["rl"]["test"]) == 0
    assert sets["chains"]["id"] == ["r1"]  # "long" was verified but failed curation; r1q2 has no chain
    _, disjoint = curate(collected, verified, CurateConfig(max_answer_chars=20, eval_fraction=0.0, disjoint=True))
    assert disjoint["rl"]["train"]["id"] == ["r1q2", "ok_box"]
    _, only_verified = curate(collected, verified, CurateConfig(max_answer_chars=20, eval_fraction=0.0, rl_from="verified"))
    assert only_verified["rl"]["train"]["id"] == ["r1"]
    # Deduping by image alone also drops the second question on the red image.
    by_image, _ = curate(collected, verified, CurateConfig(max_answer_chars=20, dedupe="image", eval_fraction=0.0))
    assert by_image.ds["id"] == ["r1", "ok_box"]


def test_curate_holds_out_rows_by_hashed_id():
    rows = [{"id": f"r{i}", "images": [], "problem": f"q{i}", "answer": "1", "task": "count"} for i in range(200)]
    _, sets = curate(dataset(rows), dataset([]), CurateConfig(eval_fraction=0.25), seed=3)
    test = set(sets["rl"]["test"]["id"])
    assert 25 <= len(test) <= 75  # binomial(200, 0.25): mean 50, sd 6
    assert test.isdisjoint(sets["rl"]["train"]["id"]) and len(test) + len(sets["rl"]["train"]) == 200
    _, again = curate(dataset(rows), dataset([]), CurateConfig(eval_fraction=0.25), seed=3)
    assert set(again["rl"]["test"]["id"]) == test


def test_curate_token_budget_counts_the_prompt_as_training_encodes_it(tiny_model_dir):
    from transformers import AutoProcessor

    from vlrl.data import PromptEncoder, validate_row

    rows = [{"id": "small", "images": [image(size=(56, 56))], "problem": "what colour is the shape ?", "answer": "red",
             "task": "open"},
            {"id": "big", "images": [image(size=(112, 112))], "problem": "what colour is the shape ?", "answer": "red",
             "task": "open"}]
    ds = dataset(rows)
    encoder = PromptEncoder(AutoProcessor.from_pretrained(tiny_model_dir), 56 * 56, 112 * 112)
    lengths = [int(encoder([validate_row(r, 0)], 1).attention_mask.sum()) for r in ds]
    assert lengths[1] == lengths[0] + 12  # 112x112 is 4x4 merged tokens, 56x56 is 2x2
    cfg = CurateConfig(processor=str(tiny_model_dir), max_prompt_tokens=lengths[0], min_pixels=56 * 56,
                       max_pixels=112 * 112, eval_fraction=0.0)
    result, _ = curate(ds, dataset([]), cfg)
    assert result.ds["id"] == ["small"]
    assert [(d.id, d.reason) for d in result.drops] == [("big", "over_token_budget")]


def test_pass_rate_filter_measures_with_the_rollout(tiny_model_dir):
    """At temperature 0 every sample is the greedy completion: a row whose answer is that completion passes k/k
    (too easy), a row with another answer 0/k (too hard). The greedy text is computed independently here."""
    from data_pipelines.config import PassRateConfig
    from data_pipelines.stages.pass_rate import pass_rate_filter
    from vlrl.config import ModelConfig, RolloutConfig
    from vlrl.data import PromptEncoder, validate_row
    from vlrl.models.policy import load_policy
    from vlrl.rollout import generate

    base = {"images": [image(size=(56, 56))], "problem": "what colour is the shape ?", "task": "open"}
    policy = load_policy(ModelConfig(path=str(tiny_model_dir)), tiny_model_dir)
    row = validate_row(to_schema_row({"id": "probe", "answer": "x", **base}), 0)
    batch = PromptEncoder(policy.processor, 56 * 56, 112 * 112)([row], 1)
    greedy = generate(policy, batch, RolloutConfig(max_new_tokens=3), greedy=True).texts[0]
    assert greedy  # the random tiny model still says something
    ds = dataset([{"id": "easy", "answer": greedy, **base}, {"id": "hard", "answer": greedy + " never", **base}])
    cfg = PassRateConfig(enabled=True, model=str(tiny_model_dir), k=3, temperature=0.0, max_new_tokens=3,
                         dtype="float32", min_pixels=56 * 56, max_pixels=112 * 112)
    kept, result = pass_rate_filter(ds, cfg)
    assert result.rates == [1.0, 0.0]
    assert len(kept) == 0 and {d.id: d.reason for d in result.drops} == {"easy": "too_easy", "hard": "too_hard"}
    kept, result = pass_rate_filter(ds, PassRateConfig(**{**cfg.__dict__, "min_rate": -1.0, "max_rate": 2.0}))
    assert kept["id"] == ["easy", "hard"] and not result.drops


def test_empty_caption_is_dropped_and_distill_never_reasons_blind(tmp_path):
    ds = dataset([
        {"id": "a", "images": [image()], "problem": "q1", "answer": "1", "task": "count"},
        {"id": "b", "images": [image((0, 9, 0))], "problem": "q2", "answer": "2", "task": "count"},
    ])
    out = caption(ds, ScriptedTeacher(lambda r: ChatReply("  " if r.metadata["question"] == "q2" else "a cat")),
                  ReplyCache(tmp_path / "c.sqlite"), TeacherStageConfig())
    assert out.ds["id"] == ["a"] and [(d.id, d.reason) for d in out.drops] == [("b", "empty_reply")]
    # With the caption stage off, an image row has no caption: distill drops it instead of asking blind.
    teacher = ScriptedTeacher(lambda r: ChatReply("<answer>1</answer>"))
    res = distill(ds, teacher, ReplyCache(tmp_path / "d.sqlite"), TeacherStageConfig())
    assert teacher.sent == [] and {d.reason for d in res.drops} == {"no_caption"} and len(res.ds) == 0


def test_build_config_mistakes_fail_before_any_teacher_call(tmp_path):
    from data_pipelines.build import validate
    from data_pipelines.config import BuildConfig
    from vlrl.cli import main
    from vlrl.config_loader import ConfigError, load_config

    twice = '[{kind: shapes, params: {rows_per_task: 1}}, {kind: shapes, params: {rows_per_task: 2}}]'
    with pytest.raises(ConfigError, match="more than one section"):
        validate(load_config(BuildConfig, None, [f"sources={twice}"]))
    with pytest.raises(ConfigError, match="needs curate.processor"):
        validate(load_config(BuildConfig, None, ["curate.max_prompt_tokens=100"]))
    with pytest.raises(ConfigError, match="teacher.model"):
        validate(load_config(BuildConfig, None, ["teacher.kind=openai"]))
    with pytest.raises(ConfigError, match="distill.prompt_file"):
        validate(load_config(BuildConfig, None, [f"distill.prompt_file={tmp_path / 'none.txt'}",
                                                 "teacher.kind=programmatic"]))
    # Without a teacher the stage does not run, so its prompt file is not needed.
    validate(load_config(BuildConfig, None, [f"distill.prompt_file={tmp_path / 'none.txt'}"]))
    with pytest.raises(ConfigError, match="teacher.kind must be 'none', 'openai'"):
        validate(load_config(BuildConfig, None, ["teacher.kind=gpt"]))
    # Through the CLI: exit code 2 and nothing written.
    assert main(["data", "build", f"output_dir={tmp_path / 'o'}", "curate.dedupe=pixels"]) == 2
    assert not (tmp_path / "o").exists()


def test_without_a_teacher_the_build_is_rl_only_and_drops_nothing(tmp_path):
    from data_pipelines.build import build
    from data_pipelines.config import BuildConfig
    from vlrl.config_loader import load_config

    out = tmp_path / "rl_only"
    card = build(load_config(BuildConfig, None, [f"output_dir={out}", "sources=[{kind: shapes, params: {rows_per_task: 4}}]",
                                                 "curate.eval_fraction=0.25"]))
    # No teacher: caption/distill/rewrite have nothing to ask and verify no chain to check, so none of them runs
    # and no row is counted as dropped by them (they used to drop every row as teacher_error / no_answer_tag).
    assert [s["stage"] for s in card["stages"]] == ["collect", "curate"]
    assert card["teachers"] == {} and card["dropped"] == 0
    assert card["outputs"]["rl_train"]["rows"] + card["outputs"]["rl_test"]["rows"] == 8
    assert card["outputs"]["chains"]["rows"] == 0
    assert "RL-only build" in (out / "README.md").read_text()
    # A stage given its own teacher still runs in an otherwise teacher-less build.
    card = build(load_config(BuildConfig, None, [f"output_dir={tmp_path / 'captioned'}",
                                                 "sources=[{kind: shapes, params: {rows_per_task: 2}}]",
                                                 "caption.teacher={kind: programmatic}"]))
    assert [s["stage"] for s in card["stages"]] == ["collect", "caption", "curate"]
    assert card["teachers"] == {"caption": "programmatic"} and card["dropped"] == 0
