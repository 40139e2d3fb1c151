"""`vlrl serve` request parsing in process: image sources, sampling parameters and their bounds."""

from __future__ import annotations

import PIL.Image
import pytest

from data_pipelines.teachers.openai_http import png_data_url
from vlrl.serve import RequestError, parse_chat_request


def _image_message(url: str) -> dict:
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                        {"type": "text", "text": "what is it ?"}]}


def test_data_url_image_round_trips_and_parts_become_template_parts():
    image = PIL.Image.new("RGB", (7, 4), (1, 2, 3))
    parsed = parse_chat_request({"messages": [_image_message(png_data_url(image))]}, max_new_tokens=64)
    assert parsed.messages == [{"role": "user", "content": [{"type": "image"},
                                                            {"type": "text", "text": "what is it ?"}]}]
    assert len(parsed.images) == 1 and parsed.images[0].tobytes() == image.tobytes()


def test_local_files_only_when_allowed(tmp_path):
    path = tmp_path / "a.png"
    PIL.Image.new("RGB", (3, 3), (9, 9, 9)).save(path)
    for url in (str(path), path.as_uri()):
        with pytest.raises(RequestError, match="--allow-local-files"):
            parse_chat_request({"messages": [_image_message(url)]}, 64)
        parsed = parse_chat_request({"messages": [_image_message(url)]}, 64, allow_local_files=True)
        assert parsed.images[0].size == (3, 3)
    with pytest.raises(RequestError, match="cannot read image file") as exc:
        parse_chat_request({"messages": [_image_message(str(tmp_path / "none.png"))]}, 64, allow_local_files=True)
    assert exc.value.param == "messages[0].content[0].image_url.url"


def test_sampling_parameters_defaults_cap_and_bounds():
    messages = [{"role": "user", "content": "hi"}]
    params = parse_chat_request({"messages": messages}, max_new_tokens=64).params
    assert (params.max_tokens, params.temperature, params.top_p, params.n, params.stop, params.seed) == \
        (64, 1.0, 1.0, 1, (), None)  # OpenAI's defaults; max_tokens defaults to the server's cap
    params = parse_chat_request({"messages": messages, "max_tokens": 500, "stop": "x", "seed": -1}, 64).params
    assert params.max_tokens == 64 and params.stop == ("x",) and params.seed == 2**63 - 1
    for bad in ({"top_p": 0}, {"top_p": 1.5}, {"max_tokens": 0}, {"max_tokens": 2.5}, {"n": True},
                {"seed": "1"}, {"stream": True}):
        with pytest.raises(RequestError) as exc:
            parse_chat_request({"messages": messages, **bad}, 64)
        assert exc.value.param == next(iter(bad)) and exc.value.status == 400
