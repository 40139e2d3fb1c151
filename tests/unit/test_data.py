"""Prompt construction and the step sampler."""

from __future__ import annotations

from PIL import Image

from vlrl.data import StepSampler, build_messages
from vlrl.data.prompts import resize_image
from vlrl.data.schema import Row


def row(problem, n_images):
    images = tuple(Image.new("RGB", (30, 20)) for _ in range(n_images))
    return Row("r1", images, problem, "a", "open", "src", None, None, {})


def test_images_first_without_placeholders():
    msgs = build_messages(row("what is shown ?", 2), system_prompt="be brief", prompt_suffix="answer in tags")
    assert msgs[0] == {"role": "system", "content": "be brief"}
    assert msgs[1]["content"] == [{"type": "image"}, {"type": "image"},
                                  {"type": "text", "text": "what is shown ? answer in tags"}]


def test_placeholders_put_images_in_place():
    msgs = build_messages(row("compare <image> with <image> please", 2))
    kinds = [(p["type"], p.get("text", "").strip()) for p in msgs[0]["content"]]
    assert kinds == [("text", "compare"), ("image", ""), ("text", "with"), ("image", ""), ("text", "please")]


def test_resize_follows_qwen_vl_utils():
    # 30x20 = 600 px < min 56*56: scaled up to a 28-multiple grid with area >= 3136 -> 84 x 56 (w x h).
    out = resize_image(Image.new("RGB", (30, 20)), 56 * 56, 112 * 112)
    assert out.size == (84, 56)
    # 1000x1000 > max 112*112: scaled down to 112 x 112.
    assert resize_image(Image.new("RGB", (1000, 1000)), 56 * 56, 112 * 112).size == (112, 112)


def test_step_sampler_is_a_function_of_seed_and_step():
    a, b = StepSampler(10, 4, seed=3), StepSampler(10, 4, seed=3)
    assert [a.indices(s) for s in range(5)] == [b.indices(s) for s in reversed(range(5))][::-1]
    # Each epoch is a permutation: steps 0-1 and the first half of step 2 cover every row once.
    first_epoch = a.indices(0) + a.indices(1) + a.indices(2)[:2]
    assert sorted(first_epoch) == list(range(10))
    assert StepSampler(10, 4, seed=4).indices(0) != a.indices(0)


def test_source_weights_set_each_sources_share():
    # 900 rows of "a" and 100 of "b"; weights a:1, b:3 -> b's share is 3/4 of the draws, though b has 10% of the
    # rows (draws within a step are without replacement, which shifts shares by far less than the tolerance here).
    sources = ["a"] * 900 + ["b"] * 100
    sampler = StepSampler(1000, 4, seed=0, sources=sources, source_weights={"b": 3})
    draws = [i for s in range(2000) for i in sampler.indices(s)]
    share_b = sum(1 for i in draws if i >= 900) / len(draws)
    assert abs(share_b - 0.75) < 0.02
    assert sampler.indices(7) == StepSampler(1000, 4, 0, sources, {"b": 3}).indices(7)  # a function of (seed, step)
    assert all(len(set(sampler.indices(s))) == 4 for s in range(50))  # no repeats within a step


def test_source_weights_errors_name_the_problem():
    import pytest

    with pytest.raises(ValueError, match="absent from the data"):
        StepSampler(3, 1, 0, ["a", "a", "b"], {"a": 1, "c": 2})  # "c" beside a real source: a typo
    # Weights naming none of the data's sources (the demo's defaults on another dataset) are dropped, loudly.
    plain = StepSampler(3, 1, 0, ["a", "a", "b"], {"shapes_colour": 3})
    assert plain.probs is None
    with pytest.raises(ValueError, match="non-negative"):
        StepSampler(3, 1, 0, ["a", "a", "b"], {"a": -1})
