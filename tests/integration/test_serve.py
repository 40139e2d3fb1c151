"""`vlrl serve` as a subprocess on loopback, queried through OpenAITeacher and raw HTTP: OpenAI response format,
greedy text equal to vlrl's rollout run in this process on the same prompt, error responses, request counting."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from serve_process import running_server

from data_pipelines.synthetic.shapes import shape_rows
from data_pipelines.teachers import ChatRequest, LocalTeacher, OpenAITeacher
from data_pipelines.teachers.openai_http import png_data_url
from vlrl.config import ModelConfig, RolloutConfig
from vlrl.data import PromptEncoder, validate_row
from vlrl.models.policy import load_policy
from vlrl.rollout import generate

MAX_TOKENS = 8


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    """`python -m vlrl.cli serve TINY --port 0` until the module's tests end; yields its base URL (…/v1)."""
    with running_server(tiny_model_dir, tmp_path_factory.mktemp("serve") / "stderr.log") as urls:
        yield urls


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return load_policy(ModelConfig(dtype="float32"), tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def row():
    return validate_row(shape_rows("colour", 1, seed=3, split="test")[0], 0)


def _request(row, **kw) -> ChatRequest:
    content = [{"type": "image", "image": row.images[0]}, {"type": "text", "text": row.problem}]
    return ChatRequest(messages=[{"role": "user", "content": content}], max_tokens=MAX_TOKENS, **kw)


def _post(url: str, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _direct_greedy(policy, row, backend: str) -> tuple[str, int, bool]:
    """(text, prompt tokens, finished) from vlrl's rollout on the row, as training would encode it."""
    batch = PromptEncoder(policy.processor, 56 * 56, 112 * 112)([row], group_size=1)
    out = generate(policy, batch, RolloutConfig(backend=backend, max_new_tokens=MAX_TOKENS), greedy=True)
    return out.texts[0], int(batch.attention_mask.sum()), bool(out.finished[0])


def test_greedy_reply_equals_direct_rollout(server, policy, row):
    base, _ = server
    teacher = OpenAITeacher(base, "tiny", api_key_env=None, retries=0)
    first, second = teacher.chat([_request(row), _request(row)])
    assert first.ok and second.ok, (first.error, second.error)
    assert first.text == second.text  # greedy is deterministic
    cached_text, prompt_tokens, finished = _direct_greedy(policy, row, "cached")
    reference_text, _, _ = _direct_greedy(policy, row, "reference")  # transformers generate, another engine
    assert first.text == cached_text == reference_text
    assert first.text  # the tiny model says something: the comparison is not of two empty strings
    assert first.usage["prompt_tokens"] == prompt_tokens
    assert first.finish_reason == ("stop" if finished else "length")


def test_response_format_and_sampling_params(server, row):
    base, _ = server
    url = f"{base}/chat/completions"
    content = [{"type": "image_url", "image_url": {"url": png_data_url(row.images[0])}},
               {"type": "text", "text": row.problem}]
    body = {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 5,
            "temperature": 1.0, "n": 3, "seed": 7}
    status, out = _post(url, body)
    assert status == 200, out
    assert out["id"].startswith("chatcmpl-") and out["object"] == "chat.completion"
    assert isinstance(out["created"], int) and out["model"] == "tiny"
    assert [c["index"] for c in out["choices"]] == [0, 1, 2]
    for choice in out["choices"]:
        assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
        assert choice["finish_reason"] in ("stop", "length")
    usage = out["usage"]
    assert 0 < usage["completion_tokens"] <= 3 * 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # The same seed samples the same completions; max_completion_tokens is max_tokens' newer name.
    again = dict(body, max_completion_tokens=5)
    del again["max_tokens"]
    assert [c["message"] for c in _post(url, again)[1]["choices"]] == [c["message"] for c in out["choices"]]


def test_stop_string_cuts_the_text(server, row):
    base, _ = server
    url = f"{base}/chat/completions"
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": png_data_url(row.images[0])}},
        {"type": "text", "text": row.problem}]}]
    full = _post(url, {"messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0})[1]
    words = full["choices"][0]["message"]["content"].split()
    assert len(words) >= 2
    stop = words[1]
    expected = " ".join(words[:words.index(stop)])  # the text before the stop word's first occurrence
    status, cut = _post(url, {"messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0, "stop": [stop]})
    assert status == 200
    assert cut["choices"][0]["message"]["content"] == expected
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["usage"]["completion_tokens"] == words.index(stop) + 1  # word-level tokenizer: a token per word


@pytest.mark.parametrize("body, param, code", [
    ({"model": "tiny"}, "messages", "missing_field"),
    ({"messages": []}, "messages", "invalid_value"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "invalid_value"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png;base64,@@not-base64@@"}}]}]}, "messages[0].content[0].image_url.url", "invalid_value"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:image/png;base64,aGVsbG8="}}]}]}, "messages[0].content[0].image_url.url", "invalid_value"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "https://example.com/cat.png"}}]}]}, "messages[0].content[0].image_url.url", "unsupported_image_url"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "/etc/hostname"}}]}]}, "messages[0].content[0].image_url.url", "unsupported_image_url"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}, "temperature", "invalid_value"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 0}, "n", "invalid_value"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": 3}, "stop", "invalid_value"),
])
def test_bad_input_is_a_400_naming_the_field(server, body, param, code):
    base, _ = server
    status, out = _post(f"{base}/chat/completions", body)
    assert status == 400, out
    assert out["error"]["param"] == param and out["error"]["code"] == code
    assert out["error"]["type"] == "invalid_request_error" and out["error"]["message"]


def test_http_image_and_invalid_json_errors_say_why(server):
    base, _ = server
    status, out = _post(f"{base}/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}]})
    assert status == 400 and "offline" in out["error"]["message"] and "data URL" in out["error"]["message"]
    assert _post(f"{base}/chat/completions", b"{not json")[1]["error"]["code"] == "invalid_json"


def test_routes_models_health_and_request_count(server, row):
    base, root = server
    status, out = _get(f"{root}/nope")
    assert status == 404 and out["error"]["code"] == "not_found"
    assert _get(f"{base}/chat/completions")[0] == 405
    status, models = _get(f"{base}/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["tiny"]

    before = _get(f"{root}/health")[1]
    assert before["status"] == "ok"
    teacher = OpenAITeacher(base, "tiny", api_key_env=None, retries=0, max_concurrency=2)
    replies = teacher.chat([_request(row, temperature=1.0) for _ in range(3)])
    assert all(r.ok for r in replies)
    _post(f"{base}/chat/completions", {"model": "tiny"})  # refused: counted apart
    after = _get(f"{root}/health")[1]
    assert after["requests_served"] - before["requests_served"] == 3
    assert after["requests_failed"] - before["requests_failed"] == 1


def test_local_teacher_answers_like_the_server(server, policy, tiny_model_dir, row):
    base, _ = server
    served = OpenAITeacher(base, "tiny", api_key_env=None, retries=0).chat([_request(row)])[0]
    teacher = LocalTeacher(tiny_model_dir, device="cpu", dtype="float32")
    local = teacher.chat([_request(row)])[0]
    assert local.ok and local.text == served.text
    assert local.usage == {k: served.usage[k] for k in ("prompt_tokens", "completion_tokens")}
    assert teacher.identity == f"local:{tiny_model_dir.resolve()}"


def test_prompts_over_the_limit_are_refused_and_the_next_request_is_answered(server, row):
    """The tiny model's context leaves the default limit of 8192 prompt tokens. A 30 MB text is refused by its
    size, before any tokenising; a 9,000-word one (under the size bound) by its token count; then a normal
    request is still answered."""
    base, root = server
    url = f"{base}/chat/completions"
    huge = {"messages": [{"role": "user", "content": "red " * (30 * 2**20 // 4)}], "max_tokens": 2}
    status, out = _post(url, huge)
    assert status == 400, out
    assert out["error"]["code"] == "context_length_exceeded" and out["error"]["param"] == "messages"
    assert out["error"]["message"] == ("the prompt's text is 31457280 characters, far over this server's limit of "
                                       "8192 prompt tokens (--max-prompt-tokens)")
    long = {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": png_data_url(row.images[0])}},
        {"type": "text", "text": "red " * 9000}]}], "max_tokens": 2}
    status, out = _post(url, long)
    assert status == 400, out
    message = out["error"]["message"]
    tokens = int(message.split()[3])
    assert tokens > 9000 and message == (f"the prompt is {tokens} tokens, over this server's limit of 8192 prompt "
                                         "tokens (--max-prompt-tokens)")
    status, out = _post(url, {"messages": [{"role": "user", "content": row.problem}], "max_tokens": 2})
    assert status == 200 and out["choices"][0]["message"]["role"] == "assistant"
