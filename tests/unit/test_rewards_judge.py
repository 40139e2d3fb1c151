"""The `judge` reward against a stub OpenAI-compatible server on loopback that answers fixed grades and counts
requests: reply parsing, the request it sends (template, images), one request per distinct request, the reply
cache, retries and failure accounting through the mixer, the soft time limit, and param checks."""

from __future__ import annotations

import base64
import doctest
import io
import json
import socket
import sys
import time
from pathlib import Path

import PIL.Image
import pytest

import vlrl.rewards.judge as judge_module
from vlrl.config import RewardConfig, RewardTerm
from vlrl.rewards import RewardInput, RewardMixer, get_reward
from vlrl.rewards.batched import is_batched
from vlrl.rewards.judge import judge, parse_grade

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chat_stub import ChatStub  # noqa: E402

FAST = {"backoff_s": 0.01, "timeout_s": 30.0}


class GradingStub(ChatStub):
    """A loopback chat-completions server. ``grades`` maps a candidate answer (the text after "Student's
    answer:" in the default template, else the whole prompt) to (HTTP status, reply text) or to a list of
    them, one per attempt; unknown answers get "Score: 5". Records every request body, and the attempts per
    answer in ``answer_attempts``."""

    def __init__(self, grades: dict, hold: bool = False):
        self.grades, self.answer_attempts = grades, {}
        super().__init__(self._grade, hold=hold)

    def _grade(self, attempt: int, body: dict) -> tuple[int, str]:
        answer = candidate(body)
        with self.lock:
            n = self.answer_attempts[answer] = self.answer_attempts.get(answer, 0) + 1
        plan = self.grades.get(answer, (200, "Score: 5"))
        return plan[min(n, len(plan)) - 1] if isinstance(plan, list) else plan

    @property
    def requests(self) -> int:
        return len(self.bodies)


def prompt_text(body: dict) -> str:
    content = body["messages"][0]["content"]
    return content if isinstance(content, str) else next(p["text"] for p in content if p["type"] == "text")


def candidate(body: dict) -> str:
    text = prompt_text(body)
    marker = "Student's answer:\n"
    if marker not in text:
        return text
    return text.split(marker, 1)[1].split("\n\nDecide whether", 1)[0]


@pytest.fixture
def stub():
    servers = []

    def make(grades, **kw):
        servers.append(GradingStub(grades, **kw))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def image(colour=(200, 30, 30), size=(24, 16)):
    return PIL.Image.new("RGB", size, colour)


def row(completion, answer="a coffee cup", problem="What is on the desk?", images=()):
    return RewardInput(completion=completion, answer=answer, task="open", data_source="vqa", problem=problem,
                       images=tuple(images))


def mixer_for(params, workers=0, timeout_s=5.0):
    return RewardMixer(RewardConfig(terms=[{"name": "judge", "params": params}], workers=workers,
                                    timeout_s=timeout_s))


def test_doctests_of_the_module_pass():
    result = doctest.testmod(judge_module)
    assert result.attempted >= 2 and result.failed == 0


@pytest.mark.parametrize("reply, score", [
    ("Score: 8", 0.8),
    ("The candidate names the same object.\nScore: 7\n", 0.7),
    ("Score: 2 at first sight, but on reflection Score: 9", 0.9),  # the last label wins
    ("**Grade:** 3/4", 0.75),  # the judge's own scale
    ("rating = 4.5", 0.45),
    ("the score is 6 out of 10", 0.6),
    ("10", 1.0),
    ("0.", 0.0),
    ("Yes, it is the same.", 1.0),
    ("Incorrect.", 0.0),
    ("FALSE", 0.0),
    ("Score: 11", None),  # over max_grade
    ("Score: -1", None),
    ("I would give it a 7", None),  # an unlabelled number inside text is not a grade
    ("", None),
    ("maybe", None),
])
def test_parse_grade(reply, score):
    assert parse_grade(reply) == (pytest.approx(score) if score is not None else None)


def test_parse_grade_with_another_scale():
    assert parse_grade("Score: 3", max_grade=5) == pytest.approx(0.6)
    assert parse_grade("Score: 7", max_grade=5) is None


def test_a_registered_batched_reward_runs_in_the_trainers_process():
    fn = get_reward("judge")
    assert fn is judge and is_batched(fn)
    mixer = mixer_for({"base_url": "http://127.0.0.1:9/v1", "cache": False}, workers=2)
    try:
        call = mixer._call(mixer.default_terms[0], row("x", images=[image()]))
        assert call.fn is judge  # in process, with its images; no worker is started
        assert call.inp.images
    finally:
        mixer.close()
    assert mixer._pool is None


def test_scores_a_batch_once_per_distinct_request_and_counts_unreadable_replies(stub, tmp_path):
    server = stub({"a red mug": (200, "Score: 8"), "blue": (200, "Score: 2"), "???": (200, "I cannot tell.")})
    pic = image()
    inputs = [row("<answer>a red mug</answer>", images=[pic]), row("<answer>blue</answer>", images=[pic]),
              row("???", images=[pic]), row("<think>hm</think><answer>a red mug</answer>", images=[pic])]
    mixer = mixer_for({"base_url": server.url, "model": "grader", "cache": str(tmp_path / "j.sqlite"), **FAST})
    scores = mixer.score(inputs)
    # rows 0 and 3 ask the same request (same answer region, row and image): three requests for four rows
    assert server.requests == 3
    assert scores.components["judge"].tolist() == pytest.approx([0.8, 0.2, 0.0, 0.8])  # 8/10, 2/10, failed, 8/10
    assert scores.parse_failures == 1 and scores.failures == {"judge": 1} and scores.timeouts == 0
    body = server.bodies[0]
    assert body["model"] == "grader" and body["max_tokens"] == 32 and body["temperature"] == 0.0
    parts = body["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["image_url", "text"]  # the image first, then the prompt
    url = parts[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = PIL.Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == pic.size and sent.convert("RGB").tobytes() == pic.tobytes()
    assert "What is on the desk?" in parts[1]["text"] and "a coffee cup" in parts[1]["text"]


def test_a_repeated_request_is_served_from_the_cache(stub, tmp_path):
    server = stub({"a red mug": (200, "Score: 8"), "blue": (200, "Score: 2")})
    cache = str(tmp_path / "j.sqlite")
    inputs = [row("a red mug", images=[image()]), row("blue", images=[image()])]
    first = mixer_for({"base_url": server.url, "cache": cache, **FAST}).score(inputs)
    assert server.requests == 2
    again = mixer_for({"base_url": server.url, "cache": cache, **FAST}).score(inputs)  # a new mixer, as a new run
    assert server.requests == 2
    assert again.total.tolist() == first.total.tolist() == pytest.approx([0.8, 0.2])
    # Other pixels are another request; so is every request without a cache.
    mixer_for({"base_url": server.url, "cache": cache, **FAST}).score([row("blue", images=[image((0, 0, 255))])])
    assert server.requests == 3
    mixer_for({"base_url": server.url, "cache": False, **FAST}).score(inputs)
    assert server.requests == 5


def test_failed_requests_are_retried_then_counted_and_never_cached(stub, tmp_path):
    server = stub({"flaky": [(503, "busy"), (200, "Score: 10")], "down": (500, "broken"),
                   "bad": (400, "no such model")})
    params = {"base_url": server.url, "cache": str(tmp_path / "j.sqlite"), "retries": 1, **FAST}
    inputs = [row("flaky"), row("down"), row("bad")]
    scores = mixer_for(params).score(inputs)
    assert scores.components["judge"].tolist() == [1.0, 0.0, 0.0]
    assert scores.parse_failures == 2 and scores.timeouts == 0
    assert server.answer_attempts == {"flaky": 2, "down": 2, "bad": 1}  # retries: 5xx once more, a 400 never
    mixer_for(params).score(inputs)
    assert server.answer_attempts == {"flaky": 2, "down": 4, "bad": 2}  # only the success was cached


def test_no_answer_scores_zero_without_a_request(stub):
    server = stub({"blue": (200, "Score: 9")})
    out = judge([row("no tags at all"), row("<answer>blue</answer>"), row("   "), row("<answer> </answer>")],
                base_url=server.url, cache=False, fallback_to_completion=False, **FAST)
    assert out == pytest.approx([0.0, 0.9, 0.0, 0.0]) and server.requests == 1


def test_an_unreachable_endpoint_scores_zero_and_counts(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    scores = mixer_for({"base_url": f"http://127.0.0.1:{port}/v1", "retries": 0, "cache": False}).score(
        [row("a"), row("b")])
    assert scores.total.tolist() == [0.0, 0.0] and scores.parse_failures == 2


def test_the_prompt_file_is_filled_in_once(stub, tmp_path):
    server = stub({})
    template = tmp_path / "grade.txt"
    template.write_text("Q={question} | R={reference} | A={answer} | {literal}")
    tricky = row("<answer>{reference} {question}</answer>", answer="4", problem="2+2?")
    judge([tricky], base_url=server.url, prompt_file=str(template), cache=False, images=False, **FAST)
    # a placeholder inside the completion is the completion's text, not substituted again
    assert server.bodies[0]["messages"][0]["content"] == "Q=2+2? | R=4 | A={reference} {question} | {literal}"
    judge([row("x" * 50, images=[image(size=(3000, 1500))])], base_url=server.url, prompt_file=str(template),
          cache=False, max_answer_chars=10, max_image_side=100, **FAST)
    parts = server.bodies[1]["messages"][0]["content"]
    assert parts[1]["text"].endswith("A=" + "x" * 10 + " | {literal}")
    sent = PIL.Image.open(io.BytesIO(base64.b64decode(parts[0]["image_url"]["url"].split(",", 1)[1])))
    assert sent.size == (100, 50)


def test_the_time_limit_cuts_a_call_waiting_on_the_server(stub):
    server = stub({}, hold=True)  # answers only when the test ends
    mixer = mixer_for({"base_url": server.url, "cache": False, **FAST}, timeout_s=0.2)
    start = time.monotonic()
    scores = mixer.score([row("a"), row("b")])
    assert scores.timeouts == 2 and scores.total.tolist() == [0.0, 0.0]
    assert time.monotonic() - start < FAST["timeout_s"]  # did not wait for the requests in flight


@pytest.mark.parametrize("params, message", [
    ({}, "needs params.base_url"),
    ({"base_url": "localhost:8000"}, "needs params.base_url"),
    ({"base_url": "http://x/v1", "grade": 3}, "unknown params"),
    ({"base_url": "http://x/v1", "max_concurrency": 0}, "max_concurrency"),
    ({"base_url": "http://x/v1", "retries": 1.5}, "retries"),
    ({"base_url": "http://x/v1", "images": "yes"}, "images"),
    ({"base_url": "http://x/v1", "cache": 3}, "cache"),
    ({"base_url": "http://x/v1", "prompt_file": "/nonexistent/judge.txt"}, "cannot read"),
])
def test_bad_params_fail_when_the_mixer_is_built(params, message):
    with pytest.raises(ValueError, match=message):
        mixer_for(params)


def test_a_template_without_the_answer_is_refused(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Is {reference} right?")
    with pytest.raises(ValueError, match="no {answer} placeholder"):
        mixer_for({"base_url": "http://x/v1", "prompt_file": str(path)})


def test_a_row_override_may_change_the_judges_params(stub, tmp_path):
    server = stub({"a": (200, "Score: 4")})
    mixer = mixer_for({"base_url": server.url, "cache": False, **FAST})
    assert mixer.terms_for("open", {"params": {"judge": {"max_grade": 5}}})[0].params["max_grade"] == 5
    scores = mixer.score([row("a"), row("a")], [None, {"params": {"judge": {"max_grade": 5}}}])
    assert scores.total.tolist() == pytest.approx([0.4, 0.8])  # 4/10 and 4/5
    with pytest.raises(ValueError, match="max_grade"):
        mixer.terms_for("open", {"params": {"judge": {"max_grade": "five"}}})
    assert isinstance(mixer.default_terms[0], RewardTerm)


def test_the_default_cache_is_under_the_user_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert judge_module.default_cache_path() == tmp_path / "xdg" / "vlrl" / "judge.sqlite"
    assert judge_module.settings({"base_url": "http://x/v1"}).cache == tmp_path / "xdg" / "vlrl" / "judge.sqlite"
    assert judge_module.settings({"base_url": "http://x/v1", "cache": False}).cache is None


def test_from_yaml_through_vlrl_rewards_score_text_only(stub, tmp_path):
    """A recipe's reward section names the judge; `vlrl rewards score` lines have no images: the judge grades text."""
    from vlrl.cli import main

    server = stub({"blue": (200, "Score: 3")})
    (tmp_path / "mix.yaml").write_text(
        "terms:\n"
        f"  - {{name: judge, weight: 2.0, params: {{base_url: '{server.url}', cache: '{tmp_path / 'j.sqlite'}', "
        "backoff_s: 0.01}}\n"
        "  - {name: format, weight: 1.0}\n"
        "workers: 0\n")
    lines = [{"completion": "<answer>blue</answer>", "answer": "red", "task": "open", "problem": "Colour?"},
             {"completion": "no tags", "answer": "red", "task": "open", "problem": "Colour?"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    code = main(["rewards", "score", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), "-q",
                 "--config", str(tmp_path / "mix.yaml")])
    assert code == 0
    out = [json.loads(s) for s in (tmp_path / "out.jsonl").read_text().splitlines()]
    # by hand: judge 3/10 and 5/10 (the stub's default grade) weighted 2; format 1 (tagged) and 0 (untagged)
    assert [o["judge"] for o in out] == pytest.approx([0.3, 0.5])
    assert [o["total"] for o in out] == pytest.approx([2 * 0.3 + 1.0, 2 * 0.5 + 0.0])
    assert all(isinstance(b["messages"][0]["content"], str) for b in server.bodies)  # no image parts


def test_a_cache_that_cannot_be_opened_costs_requests_not_scores(stub, tmp_path):
    server = stub({"a": (200, "Score: 6")})
    params = {"base_url": server.url, "cache": str(tmp_path), **FAST}  # a directory: SQLite cannot open it
    for _ in range(2):
        scores = mixer_for(params).score([row("a")])
        assert scores.total.tolist() == pytest.approx([0.6]) and scores.parse_failures == 0
    assert server.requests == 2  # nothing was cached
