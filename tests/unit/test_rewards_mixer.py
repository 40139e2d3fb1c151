"""The reward mixer: totals, per-task terms, row overrides, failures, per-source metrics."""

import math

import pytest
import torch

from vlrl.config import RewardConfig, RewardTerm
from vlrl.rewards import RewardInput, RewardMixer, Scores, register_reward
from vlrl.rewards.mixer import call_reward, component_keys


@register_reward("test_mixer_boom")
def boom(inp):
    raise RuntimeError("a buggy user reward")


@register_reward("test_mixer_mcq_only")
def mcq_only(inp, value=1.0):
    return value if inp.task == "mcq" else None  # does not apply to other tasks


@register_reward("test_mixer_nan")
def not_a_number(inp):
    return float("nan")


def row(completion, answer="red", task="colour", source="shapes", **kw):
    return RewardInput(completion=completion, answer=answer, task=task, data_source=source, **kw)


def term(name, weight=1.0, **params):
    return {"name": name, "weight": weight, "params": params}


RED, BLUE, UNTAGGED = row("<answer>red</answer>"), row("<answer>blue</answer>"), row("red")


def test_default_config_totals():
    # Default terms: accuracy (weight 1) + format with partial credit (weight 0.5).
    scores = RewardMixer(RewardConfig()).score([RED, BLUE, UNTAGGED])
    # RED: 1*1 + 0.5*1 = 1.5; BLUE: 1*0 + 0.5*1 = 0.5; UNTAGGED: accuracy reads the whole completion
    # (1) and format passes none of its 4 checks (0): 1*1 + 0.5*0 = 1.0.
    assert scores.total.tolist() == pytest.approx([1.5, 0.5, 1.0])
    assert scores.total.dtype == torch.float32 and scores.total.shape == (3,)
    assert list(scores.components) == ["accuracy", "format"]
    assert scores.components["accuracy"].tolist() == [1.0, 0.0, 1.0]
    assert scores.components["format"].tolist() == [1.0, 1.0, 0.0]
    assert scores.data_sources == ["shapes"] * 3
    assert scores.parse_failures == 0


def test_normalize_weights():
    scores = RewardMixer(RewardConfig(normalize_weights=True)).score([RED, BLUE, UNTAGGED])
    # The totals above divided by the weight sum 1.5.
    assert scores.total.tolist() == pytest.approx([1.0, 1 / 3, 2 / 3])


def test_inapplicable_term_is_nan_and_skipped():
    config = RewardConfig(terms=[term("exact_text", 2.0), term("test_mixer_mcq_only", 1.0, value=0.5)])
    mcq = row("<answer>B</answer>", answer="B", task="mcq")
    for normalize, expected in [(False, [2.0, 2.5]), (True, [1.0, 2.5 / 3])]:
        config.normalize_weights = normalize
        scores = RewardMixer(config).score([RED, mcq])
        # RED: only exact_text applies: 2*1 = 2 (normalised by weight 2 -> 1).
        # mcq: 2*1 + 1*0.5 = 2.5 (normalised by weights 2 + 1 -> 2.5/3).
        assert scores.total.tolist() == pytest.approx(expected)
        only = scores.components["test_mixer_mcq_only"]
        assert math.isnan(only[0].item()) and only[1].item() == 0.5


def test_no_applicable_term_totals_zero():
    config = RewardConfig(terms=[term("test_mixer_mcq_only")], normalize_weights=True)
    scores = RewardMixer(config).score([RED])
    assert scores.total.tolist() == [0.0]
    assert math.isnan(scores.components["test_mixer_mcq_only"][0].item())


def test_per_task_terms_replace_defaults():
    config = RewardConfig(per_task={"count": [term("number", 2.0, rel_tol=0.1)]})
    mixer = RewardMixer(config)
    assert [t.name for t in mixer.terms_for("count", None)] == ["number"]
    assert [t.name for t in mixer.terms_for("colour", None)] == ["accuracy", "format"]
    count = row("<answer>3.2</answer>", answer="3", task="count")
    scores = mixer.score([count, RED])
    # count: number within 10% of 3 -> 2*1 = 2, and no format term; RED: defaults, 1.5 as above.
    assert scores.total.tolist() == pytest.approx([2.0, 1.5])
    assert math.isnan(scores.components["format"][0].item())
    assert math.isnan(scores.components["number"][1].item())


def test_accuracy_routes_per_task_inside_the_mixer():
    mixer = RewardMixer(RewardConfig(terms=[term("accuracy")]))
    rows = [
        row("<answer>3.0</answer>", answer="3", task="count"),  # number: 1
        row("<answer>(C)</answer>", answer="C", task="mcq"),  # choice: 1
        row("<answer>[0,0,10,10]</answer>", answer="[5,5,15,15]", task="grounding"),  # iou: 1/7
        row("<answer>3.0</answer>", answer="3", task="ocr"),  # exact_text: "3 0" != "3"
    ]
    assert mixer.score(rows).total.tolist() == pytest.approx([1.0, 1.0, 1 / 7, 0.0])


def test_row_override_terms_weights_params():
    mixer = RewardMixer(RewardConfig(terms=[term("iou"), term("format", 0.5)]))
    box = row("<answer>[0,0,10,10]</answer>", answer="[5,5,15,15]", task="grounding")
    specs = [
        None,  # iou 1/7 + 0.5*format 1
        {"weights": {"format": 0.2}},  # 1/7 + 0.2*1
        {"params": {"iou": {"threshold": 0.1}}},  # iou 1/7 >= 0.1 -> 1, + 0.5
        {"terms": [term("exact_text", 3.0)]},  # "[0 0 10 10]" vs "[5 5 15 15]": 0
        {"terms": [term("iou", 2.0)], "params": {"iou": {"threshold": 0.5}}},  # 2 * 0
    ]
    scores = mixer.score([box] * 5, specs)
    assert scores.total.tolist() == pytest.approx([1 / 7 + 0.5, 1 / 7 + 0.2, 1.5, 0.0, 0.0])
    # Overrides apply to their row only: the configured terms are untouched.
    assert [(t.name, t.weight, t.params) for t in mixer.terms_for("grounding", None)] == [
        ("iou", 1.0, {}), ("format", 0.5, {})]


def test_duplicate_names_get_numbered_keys():
    config = RewardConfig(terms=[term("format", 1.0), term("format", 1.0, partial_credit=True)])
    mixer = RewardMixer(config)
    assert component_keys(mixer.terms_for("colour", None)) == ["format", "format#2"]
    scores = mixer.score([row("so <answer>red</answer>")])
    # Strict format fails (prose before the answer): 0; partial credit passes 3 of 4 checks: 0.75.
    assert scores.components["format"].tolist() == [0.0]
    assert scores.components["format#2"].tolist() == [0.75]
    # A component key re-weights one term; the name re-weights both.
    one = mixer.score([row("so <answer>red</answer>")], [{"weights": {"format#2": 2.0}}])
    both = mixer.score([row("so <answer>red</answer>")], [{"weights": {"format": 2.0}}])
    assert one.total.tolist() == [1.5] and both.total.tolist() == [1.5]
    assert mixer.score([row("<answer>red</answer>")], [{"weights": {"format#2": 2.0}}]).total.tolist() == [3.0]
    assert mixer.score([row("<answer>red</answer>")], [{"weights": {"format": 2.0}}]).total.tolist() == [4.0]


def test_exceptions_score_zero_and_are_counted():
    config = RewardConfig(terms=[term("exact_text"), term("test_mixer_boom", 5.0), term("test_mixer_nan")])
    scores = RewardMixer(config).score([RED, BLUE])
    # boom and nan fail on both rows and score 0: totals are exact_text alone.
    assert scores.total.tolist() == [1.0, 0.0]
    assert scores.components["test_mixer_boom"].tolist() == [0.0, 0.0]
    assert scores.parse_failures == 4
    assert scores.failures == {"test_mixer_boom": 2, "test_mixer_nan": 2}
    assert scores.metrics()["reward/parse_failures"] == 4.0


def test_missing_image_sizes_count_as_failures():
    config = RewardConfig(terms=[term("iou", box_format="qwen2_5_vl")])
    ok = row("<answer>[0,0,5,5]</answer>", answer="[0,0,10,10]", task="grounding",
             image_sizes=((20, 20),), resized_sizes=((10, 10),))
    lacking = row("<answer>[0,0,5,5]</answer>", answer="[0,0,10,10]", task="grounding")
    scores = RewardMixer(config).score([ok, lacking])
    assert scores.total.tolist() == [1.0, 0.0]  # [0,0,5,5] scaled x2 is the truth exactly
    assert scores.parse_failures == 1


def test_call_reward():
    inp = RED
    assert call_reward(lambda i: 0.25, inp, {}) == (0.25, False)
    assert call_reward(lambda i: None, inp, {}) == (None, False)
    assert call_reward(lambda i: True, inp, {}) == (1.0, False)
    assert call_reward(lambda i: "high", inp, {}) == (0.0, True)
    assert call_reward(lambda i: float("inf"), inp, {}) == (0.0, True)
    assert call_reward(lambda i, k: k, inp, {"k": 0.5}) == (0.5, False)
    assert call_reward(lambda i: 1 / 0, inp, {}) == (0.0, True)


def test_metrics_per_source():
    config = RewardConfig(per_task={"count": [term("number")]})
    rows = [
        RED,  # shapes: accuracy 1, format 1 -> 1.5
        BLUE,  # shapes: accuracy 0, format 1 -> 0.5
        row("<answer>3</answer>", answer="3", task="count", source="counting"),  # number 1 -> 1.0
        row("<answer>4</answer>", answer="3", task="count", source=""),  # number 0 -> 0.0
    ]
    metrics = RewardMixer(config).score(rows).metrics()
    assert metrics == pytest.approx({
        "reward/parse_failures": 0.0,
        "reward/timeouts": 0.0,
        "reward/mean": 3.0 / 4,  # (1.5 + 0.5 + 1 + 0) / 4
        "reward/accuracy": 0.5,  # NaN rows (the counts) left out of the mean
        "reward/format": 1.0,
        "reward/number": 0.5,
        "reward/counting/mean": 1.0,
        "reward/counting/number": 1.0,
        "reward/shapes/mean": 1.0,
        "reward/shapes/accuracy": 0.5,
        "reward/shapes/format": 1.0,
        "reward/unknown/mean": 0.0,  # an empty source is named "unknown"
        "reward/unknown/number": 0.0,
    })
    assert "reward/shapes/number" not in metrics  # never applied there: left out, not NaN


def test_metrics_prefix_and_empty_batch():
    scores = RewardMixer(RewardConfig()).score([])
    assert scores.total.shape == (0,)
    assert scores.metrics("eval/reward") == {"eval/reward/parse_failures": 0.0, "eval/reward/timeouts": 0.0}
    assert isinstance(Scores(torch.zeros(1), {}, ["s"], 0).metrics()["reward/s/mean"], float)


def test_reward_from_file_in_config(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text("def shorter_than(inp, limit=5):\n    return float(len(inp.completion) < limit)\n")
    spec = f"{path}:shorter_than"
    scores = RewardMixer(RewardConfig(terms=[term(spec, 2.0, limit=25)])).score([RED, row("x" * 30)])
    assert scores.total.tolist() == [2.0, 0.0]  # "<answer>red</answer>" is 20 characters
    assert list(scores.components) == [spec]


BAD_CONFIGS = [
    (RewardConfig(terms=[term("accuracy"), term("no_such_reward")]), r"reward\.terms\[1\].*unknown reward"),
    (RewardConfig(terms=[{"name": "format", "wieght": 1.0}]), r"reward\.terms\[0\].*unknown keys \['wieght'\]"),
    (RewardConfig(terms=[term("format", partial=True)]), r"reward\.terms\[0\] \('format'\).*unknown params"),
    (RewardConfig(terms=[term("accuracy", rel_toll=0.1)]), r"reward\.terms\[0\].*rel_toll"),
    (RewardConfig(terms=[{"name": "format", "weight": "high"}]), r"reward\.terms\[0\].*weight"),
    (RewardConfig(terms=[{"weight": 1.0}]), r"reward\.terms\[0\].*'name'"),
    (RewardConfig(terms={"name": "format"}), r"reward\.terms must be a list"),
    (RewardConfig(per_task={"count": [term("nmber")]}), r"reward\.per_task\.count\[0\].*unknown reward 'nmber'"),
]


@pytest.mark.parametrize("config,message", BAD_CONFIGS)
def test_config_validation(config, message):
    with pytest.raises(ValueError, match=message):
        RewardMixer(config)


BAD_ROW_SPECS = [
    ({"weight": {"format": 1.0}}, r"row 0 .*unknown keys \['weight'\]"),
    ({"weights": {"iou": 1.0}}, r"row 0 .*'iou' names no term"),
    ({"weights": {"format": "x"}}, r"row 0 .*weight must be a finite number"),
    ({"params": {"format": {"strict": True}}}, r"row 0 .*unknown params"),
    ({"terms": [term("nope")]}, r"row 0 .*unknown reward 'nope'"),
    ("format", r"row 0 .*must be a mapping"),
]


@pytest.mark.parametrize("spec,message", BAD_ROW_SPECS)
def test_row_spec_validation(spec, message):
    with pytest.raises(ValueError, match=message):
        RewardMixer(RewardConfig()).score([RED], [spec])


def test_row_specs_length_must_match():
    with pytest.raises(ValueError, match="2 inputs but 1 row specs"):
        RewardMixer(RewardConfig()).score([RED, BLUE], [None])


def test_accepts_reward_term_objects():
    mixer = RewardMixer(RewardConfig(terms=[RewardTerm(name="format", weight=2.0, params={})]))
    assert mixer.score([RED]).total.tolist() == [2.0]


def test_images_stay_in_this_process(tmp_path):
    """A call sent to a worker carries no images (pixels would be pickled per call); an in-process one keeps them."""
    import PIL.Image

    path = tmp_path / "count_images.py"
    path.write_text("def count_images(inp):\n    return float(len(inp.images))\n")
    spec = f"{path}:count_images"
    inp = row("red", images=(PIL.Image.new("RGB", (4, 4)), PIL.Image.new("RGB", (2, 2))))
    in_process = RewardMixer(RewardConfig(terms=[term(spec)], workers=0))
    assert in_process.score([inp]).total.tolist() == [2.0]
    mixer = RewardMixer(RewardConfig(terms=[term(spec)], workers=1))
    try:
        assert mixer._call(RewardTerm(spec), inp).inp.images == ()
        assert mixer.score([inp]).total.tolist() == [0.0]
    finally:
        mixer.close()


def test_reward_inputs_carry_their_rows_images():
    from types import SimpleNamespace

    import PIL.Image

    from vlrl.scoring import reward_inputs

    pics = [PIL.Image.new("RGB", (4, 4)), PIL.Image.new("RGB", (6, 2))]
    rows = [SimpleNamespace(id="r0", answer="red", task="colour", data_source="s", meta={}, problem="q", reward=None,
                            images=(pics[0],)),
            SimpleNamespace(id="r1", answer="2", task="count", data_source="s", meta={}, problem="q", reward=None,
                            images=(pics[1], pics[0]))]
    batch = SimpleNamespace(rows=rows, image_sizes=[((4, 4),), ((6, 2), (4, 4))], resized_sizes=[(), ()])
    rollouts = SimpleNamespace(group_size=2, texts=["a", "b", "c", "d"], completion_mask=torch.ones(4, 3))
    inputs, _ = reward_inputs(batch, rollouts, 0.5, 8)
    assert [len(i.images) for i in inputs] == [1, 1, 2, 2]
    assert inputs[1].images[0] is pics[0] and inputs[2].images == (pics[1], pics[0])
