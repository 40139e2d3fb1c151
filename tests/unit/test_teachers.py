"""Teachers without a model: OpenAITeacher against stub HTTP servers (retries, give-up, concurrency, payload), and
ProgrammaticTeacher's captions and chains against scenes written by hand and scenes from the shapes generator."""

from __future__ import annotations

import base64
import io
import json
import re
import sys
import threading
from pathlib import Path

import PIL.Image
import pytest

from data_pipelines.synthetic.shapes import shape_rows
from data_pipelines.teachers import ChatRequest, OpenAITeacher, ProgrammaticTeacher
from data_pipelines.teachers.programmatic import caption, parse_scene, rewrite

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chat_stub import ChatStub  # noqa: E402

FAST = dict(backoff_s=0.01, max_backoff_s=0.05, timeout_s=60.0)  # a loaded machine is never a timeout


@pytest.fixture
def stub():
    made = []

    def make(plan, delay_s=0.0, **kwargs):
        made.append(ChatStub(plan, delay_s, **kwargs))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _text_request(text="hi") -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], max_tokens=4)


# ---- OpenAITeacher ------------------------------------------------------------------------------------------------
def test_retries_503_twice_then_succeeds(stub):
    server = stub(lambda attempt, body: (503, "busy") if attempt <= 2 else (200, "fine"))
    reply = OpenAITeacher(server.url, "m", api_key_env=None, retries=3, **FAST).chat([_text_request()])[0]
    assert reply.ok and reply.text == "fine" and reply.finish_reason == "stop"
    assert reply.usage == {"prompt_tokens": 3, "completion_tokens": 1}
    assert server.attempts == 3


def test_always_failing_server_gives_an_error_reply_after_every_retry(stub):
    server = stub(lambda attempt, body: (429, "slow down"))
    reply = OpenAITeacher(server.url, "m", api_key_env=None, retries=2, **FAST).chat([_text_request()])[0]
    assert not reply.ok and reply.text is None
    assert "3 attempts" in reply.error and "429" in reply.error and "slow down" in reply.error
    assert server.attempts == 3  # the first try and 2 retries


def test_client_error_is_not_retried(stub):
    server = stub(lambda attempt, body: (400, "messages[0] is wrong"))
    reply = OpenAITeacher(server.url, "m", api_key_env=None, retries=3, **FAST).chat([_text_request()])[0]
    assert reply.error == "HTTP 400: messages[0] is wrong"
    assert server.attempts == 1


def test_unreachable_server_is_an_error_reply_not_an_exception(stub):
    server = stub(lambda attempt, body: (200, "never"))
    url = server.url
    server.close()  # nothing listens on the port any more
    reply = OpenAITeacher(url, "m", api_key_env=None, retries=1, **FAST).chat([_text_request()])[0]
    assert not reply.ok and "2 attempts" in reply.error


def test_timeout_is_retried(stub):
    server = stub(lambda attempt, body: (200, "late"), hold=True)
    teacher = OpenAITeacher(server.url, "m", api_key_env=None, retries=1, backoff_s=0.01, timeout_s=0.1)
    reply = teacher.chat([_text_request()])[0]
    assert not reply.ok and "timed out" in reply.error.lower()
    assert server.attempts == 2


def test_concurrency_limit_is_respected_and_order_kept(stub):
    server = stub(lambda attempt, body: (200, body["messages"][0]["content"]), delay_s=0.05, gather=3)
    teacher = OpenAITeacher(server.url, "m", api_key_env=None, max_concurrency=3, **FAST)
    requests = [_text_request(f"q{i}") for i in range(9)]
    replies = teacher.chat(requests)
    assert [r.text for r in replies] == [f"q{i}" for i in range(9)] and server.attempts == 9
    assert server.max_active == 3  # never more than the limit, and the limit was used


def test_concurrency_limit_holds_across_callers(stub):
    """Two stages sharing one teacher from two threads still keep max_concurrency requests in flight."""
    server = stub(lambda attempt, body: (200, "ok"), delay_s=0.05, gather=2)
    teacher = OpenAITeacher(server.url, "m", api_key_env=None, max_concurrency=2, **FAST)
    callers = [threading.Thread(target=teacher.chat, args=([_text_request()] * 4,)) for _ in range(2)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert server.attempts == 8 and server.max_active == 2


def test_payload_sends_png_data_urls_and_the_key_from_env(stub, monkeypatch):
    server = stub(lambda attempt, body: (200, "seen"))
    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-test")
    image = PIL.Image.new("RGB", (5, 3), (10, 20, 30))
    image.putpixel((4, 2), (200, 100, 0))
    request = ChatRequest(messages=[
        {"role": "system", "content": "be exact"},
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "what?"}]},
    ], max_tokens=7, temperature=0.0, stop=("</answer>",))
    teacher = OpenAITeacher(server.url, "tiny-model", api_key_env="TEST_TEACHER_KEY", **FAST)
    assert teacher.chat([request])[0].text == "seen"
    body = server.bodies[0]
    assert body["model"] == "tiny-model" and body["max_tokens"] == 7 and body["temperature"] == 0.0
    assert body["stop"] == ["</answer>"] and body["messages"][0] == {"role": "system", "content": "be exact"}
    image_part, text_part = body["messages"][1]["content"]
    assert text_part == {"type": "text", "text": "what?"}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = PIL.Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.format == "PNG" and decoded.convert("RGB").tobytes() == image.tobytes()
    assert server.headers[0]["Authorization"] == "Bearer sk-test"
    assert teacher.identity == f"openai:{server.url}:tiny-model" and "sk-test" not in teacher.identity


def test_a_request_that_cannot_be_encoded_is_an_error_reply(stub):
    server = stub(lambda attempt, body: (200, "x"))
    bad = ChatRequest(messages=[{"role": "user", "content": [{"type": "image", "image": "not an image"}]}])
    replies = OpenAITeacher(server.url, "m", api_key_env=None, **FAST).chat([bad, _text_request()])
    assert not replies[0].ok and "PIL" in replies[0].error
    assert replies[1].ok and server.attempts == 1


# ---- ProgrammaticTeacher ------------------------------------------------------------------------------------------
COLOUR_SCENE = {"image_size": [56, 56], "background": [255, 255, 255], "shapes": [
    {"kind": "circle", "colour": "blue", "rgb": [0, 0, 230], "box": [30, 2, 50, 22]}]}
# Listed out of reading order: the caption must still go top to bottom, left to right.
COUNT_SCENE = {"image_size": [56, 56], "background": [255, 255, 255], "shapes": [
    {"kind": "triangle", "colour": "yellow", "rgb": [240, 210, 0], "box": [33, 31, 51, 49], "cell": [1, 1]},
    {"kind": "square", "colour": "red", "rgb": [230, 0, 0], "box": [3, 4, 21, 22], "cell": [0, 0]},
    {"kind": "circle", "colour": "green", "rgb": [0, 190, 0], "box": [4, 30, 20, 46], "cell": [1, 0]}]}
DIGITS_SCENE = {"canvas": [112, 56], "digits": [
    {"digit": 5, "box": [80, 10, 108, 38]}, {"digit": 7, "box": [2, 12, 30, 40]}, {"digit": 3, "box": [40, 20, 68, 48]}]}


def _ask(**metadata) -> str:
    reply = ProgrammaticTeacher().chat([ChatRequest(messages=[{"role": "user", "content": "q"}],
                                                    metadata=metadata)])[0]
    assert reply.ok, reply.error
    return reply.text


def _answer(chain: str) -> str:
    match = re.fullmatch(r"<think>\n.+\n</think>\n<answer>(.+)</answer>", chain, re.DOTALL)
    assert match, chain
    return match.group(1)


def test_caption_of_a_shapes_scene_is_exact():
    # Circle centre (40, 12): x in the right third of 56, y in the top third.
    assert _ask(kind="caption", scene=json.dumps(COLOUR_SCENE)) == (
        "Setting: a synthetic 56x56 image of flat, single-colour shapes on a plain white background.\n"
        "Objects: 1 shape.\n"
        "1. A blue circle in the top right, 20x20 pixels, box [30, 2, 50, 22].\n"
        "Text: none."
    )


def test_caption_lists_objects_in_reading_order():
    lines = _ask(kind="caption", scene=COUNT_SCENE).splitlines()
    assert lines[1] == "Objects: 3 shapes."
    # Centres: red (12, 13) top left; green (12, 38) bottom left; yellow (42, 40) bottom right.
    assert lines[2] == "1. A red square in the top left, 18x18 pixels, box [3, 4, 21, 22]."
    assert lines[3] == "2. A green circle in the bottom left, 16x16 pixels, box [4, 30, 20, 46]."
    assert lines[4] == "3. A yellow triangle in the bottom right, 18x18 pixels, box [33, 31, 51, 49]."


def test_caption_of_a_digits_scene_reads_the_digits_left_to_right():
    text = _ask(kind="caption", scene=DIGITS_SCENE)
    assert text.splitlines()[0] == "Setting: a 112x56 canvas of handwritten digits on a plain background."
    assert "1. The digit 7 in the middle left, 28x28 pixels, box [2, 12, 30, 40]." in text
    assert text.splitlines()[-1] == "Text: the digits, from left to right, are 7, 3, 5."


def test_distill_chains_end_in_the_right_answer():
    assert _answer(_ask(kind="distill", scene=COLOUR_SCENE, task="colour")) == "blue"
    count = _ask(kind="distill", scene=COUNT_SCENE, task="count")
    assert _answer(count) == "3" and "a red square in the top left" in count
    total = _ask(kind="distill", scene=DIGITS_SCENE, task="digit_sum")
    assert _answer(total) == "15" and "7 + 3 = 10" in total and "10 + 5 = 15" in total
    assert _answer(_ask(kind="distill", scene=DIGITS_SCENE, task="count")) == "3"


def test_digit_grounding_takes_the_target_from_metadata_or_the_question():
    by_meta = _ask(kind="distill", scene=DIGITS_SCENE, task="digit_grounding", target=3)
    assert _answer(by_meta) == "[40, 20, 68, 48]"
    by_question = _ask(kind="distill", scene=DIGITS_SCENE, task="digit_grounding",
                       question="Where is the digit 5 in the image?")
    assert _answer(by_question) == "[80, 10, 108, 38]"


@pytest.mark.parametrize("task", ["colour", "count"])
def test_distill_agrees_with_the_shapes_generator(task):
    for row in shape_rows(task, 8, seed=4, split="test"):
        assert _answer(_ask(kind="distill", scene=row["meta"], task=task)) == row["answer"]


def test_rewrite_speaks_of_the_image():
    chain = ("<think>\nAccording to the caption, the shape is blue. The description says it is a circle; "
             "this caption mentions nothing else, and the image description has no text.\n</think>\n"
             "<answer>blue</answer>")
    assert _ask(kind="rewrite", reasoning=chain) == (
        "<think>\nAccording to the image, the shape is blue. The image shows it is a circle; "
        "the image shows nothing else, and the image has no text.\n</think>\n<answer>blue</answer>")
    assert rewrite("no mention here") == "no mention here"


@pytest.mark.parametrize("metadata, fragment", [
    ({}, "kind"),
    ({"kind": "caption"}, "scene"),
    ({"kind": "caption", "scene": {"trees": []}}, "neither"),
    ({"kind": "distill", "scene": COLOUR_SCENE, "task": "ocr"}, "ocr"),
    ({"kind": "distill", "scene": COUNT_SCENE, "task": "colour"}, "exactly one shape"),
    ({"kind": "distill", "scene": DIGITS_SCENE, "task": "digit_grounding"}, "which digit"),
    ({"kind": "rewrite"}, "reasoning"),
])
def test_requests_it_cannot_answer_are_error_replies(metadata, fragment):
    reply = ProgrammaticTeacher().chat([ChatRequest(messages=[], metadata=metadata)])[0]
    assert not reply.ok and fragment in reply.error


def test_scene_parsing_rejects_malformed_boxes():
    with pytest.raises(ValueError, match="malformed shapes scene"):
        parse_scene({"image_size": [56, 56], "shapes": [{"kind": "square", "colour": "red", "box": [1, 2]}]})
    assert caption(parse_scene(COLOUR_SCENE)).startswith("Setting:")
