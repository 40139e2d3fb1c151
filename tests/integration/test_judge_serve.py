"""The `judge` reward through `vlrl serve` on loopback (started in this process on the tiny model): a batch flows
through the server with its images, identical requests are asked once, a repeated batch is served from the
cache (the server's request count does not grow), and refused requests and unreadable replies are counted."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from data_pipelines.synthetic.shapes import shape_rows
from vlrl.chat import ChatEngine
from vlrl.chat_client import OpenAIChatClient
from vlrl.config import RewardConfig
from vlrl.data import validate_row
from vlrl.rewards import RewardInput, RewardMixer
from vlrl.rewards.judge import judge_request, parse_grade, settings
from vlrl.serve import ChatService, make_server

MAX_TOKENS = 6


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    """`vlrl serve`'s server on the tiny model, on a free loopback port: yields (base URL …/v1, service)."""
    engine = ChatEngine.load(tiny_model_dir, device="cpu", dtype="float32", max_new_tokens=MAX_TOKENS)
    service = ChatService(engine, "tiny")
    httpd = make_server(service, quiet=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", service
    httpd.shutdown()
    httpd.server_close()


def served(base: str) -> tuple[int, int]:
    """(requests_served, requests_failed) from the server's /health."""
    with urllib.request.urlopen(base.removesuffix("/v1") + "/health", timeout=30) as resp:
        body = json.loads(resp.read())
    return body["requests_served"], body["requests_failed"]


def batch() -> list[RewardInput]:
    """Two rows with their images, two completions each; the second row's are the same answer (one request)."""
    rows = [validate_row(r, i) for i, r in enumerate(shape_rows("colour", 2, seed=5, split="test"))]
    out = []
    for r, completions in zip(rows, [["<answer>red</answer>", "<answer>blue</answer>"],
                                     ["<answer>green</answer>", "<think>x</think><answer>green</answer>"]],
                              strict=True):
        for c in completions:
            out.append(RewardInput(completion=c, answer=r.answer, task=r.task, data_source="shapes",
                                   problem=r.problem, images=r.images))
    return out


def test_judge_scores_a_batch_through_vlrl_serve_and_caches_repeats(server, tmp_path):
    base, _ = server
    params = {"base_url": base, "model": "tiny", "api_key_env": None, "max_tokens": MAX_TOKENS, "retries": 0,
              "cache": str(tmp_path / "judge.sqlite")}
    inputs = batch()
    before = served(base)
    scores = RewardMixer(RewardConfig(terms=[{"name": "judge", "params": params}], workers=0,
                                      timeout_s=60.0)).score(inputs)
    after = served(base)
    assert after[0] - before[0] == 3 and after[1] == before[1]  # four completions, three distinct requests

    # Expected, independently: ask the server each request ourselves (greedy: the same reply) and grade it.
    s = settings(params)
    requests = [judge_request(inp, s) for inp in inputs[:3]]
    replies = OpenAIChatClient(base, "tiny", api_key_env=None, retries=0).chat(requests)
    assert all(r.ok for r in replies), [r.error for r in replies]
    grades = [parse_grade(r.text) for r in replies]
    grades.append(grades[2])  # the fourth completion's request is the third's
    assert scores.components["judge"].tolist() == pytest.approx([0.0 if g is None else g for g in grades])
    assert scores.parse_failures == sum(g is None for g in grades)  # the tiny model's replies are no grades
    assert scores.timeouts == 0

    # The done-when check: the same batch again (a new mixer, as a new run would build) is served from the cache.
    count = served(base)
    again = RewardMixer(RewardConfig(terms=[{"name": "judge", "params": params}], workers=0)).score(inputs)
    assert served(base) == count
    assert again.total.tolist() == scores.total.tolist() and again.parse_failures == scores.parse_failures


def test_a_request_the_server_refuses_is_counted_not_raised(server, tmp_path):
    base, service = server
    # An answer too long for any tokenisation of the tiny model's context: the server refuses it (a 4xx, not retried).
    huge = RewardInput(completion="red " * (service.engine.max_prompt_tokens * 10), answer="red", task="colour",
                       problem="what colour ?")
    params = {"base_url": base, "api_key_env": None, "max_tokens": MAX_TOKENS, "retries": 2,
              "max_answer_chars": 10**7, "cache": str(tmp_path / "judge.sqlite")}
    before = served(base)
    scores = RewardMixer(RewardConfig(terms=[{"name": "judge", "params": params}], workers=0)).score([huge])
    assert scores.total.tolist() == [0.0] and scores.parse_failures == 1
    assert served(base) == (before[0], before[1] + 1)  # asked once: a refusal is not retried


def test_training_steps_scored_by_the_judge(server, tiny_config, tmp_path, monkeypatch):
    """Two training steps whose reward is the judge behind `vlrl serve`: the rows' images reach the server, the
    judge runs in the trainer's process (workers are for the rule terms), completions.jsonl holds no images."""
    from vlrl.trainer import COMPLETIONS_FILE, Trainer

    base, service = server
    seen_images = []
    complete = service.engine.complete
    monkeypatch.setattr(service.engine, "complete",
                        lambda messages, images, params: seen_images.append(len(images)) or complete(
                            messages, images, params))
    before = served(base)
    cfg = tiny_config("trainer.save_completions=1", "rollout.max_new_tokens=5", "reward.workers=1",
                      f"reward.terms=[{{name: judge, weight: 1.0, params: {{base_url: '{base}', api_key_env: null, "
                      f"retries: 0, max_tokens: {MAX_TOKENS}, cache: '{tmp_path / 'judge.sqlite'}'}}}}, "
                      "{name: format, weight: 0.5}]")
    Trainer(cfg).fit()
    lines = [json.loads(s) for s in (tmp_path / "run" / COMPLETIONS_FILE).read_text().splitlines()]
    assert len(lines) == 32 and all("images" not in line for line in lines)
    assert all(line["scores"]["judge"] is not None for line in lines)  # scored (0 where the reply held no grade)
    asked = served(base)[0] - before[0]
    assert 0 < asked <= 32 and len(seen_images) == asked  # one request per distinct answer to a row, at most
    assert set(seen_images) == {1}  # every shapes row has one image, and it was sent
