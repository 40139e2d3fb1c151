"""vlrl.samples: which completions are kept, how they are written, and what a resume keeps of them."""

import json
from types import SimpleNamespace

import torch
from PIL import Image

from vlrl.rewards.mixer import Scores
from vlrl.samples import first_per_source, pick_samples, read_samples, truncate_samples, write_samples


def fake_step(sources, G=2, size=(600, 300)):
    """A PromptBatch-like batch of one prompt per entry of `sources`, G completions each; completion i scores i."""
    rows = [SimpleNamespace(id=f"r{p}", data_source=s, task="count", problem=f"question {p}", answer=str(p),
                            images=(Image.new("RGB", size, (200, 10, 10)),)) for p, s in enumerate(sources)]
    n = len(sources) * G
    scores = Scores(total=torch.arange(n, dtype=torch.float32),
                    components={"accuracy": torch.tensor([1.0, float("nan")] * (n // 2))}, data_sources=[])
    rollouts = SimpleNamespace(group_size=G, texts=[f"completion {i}" for i in range(n)])
    return SimpleNamespace(rows=rows), rollouts, scores


def test_pick_keeps_the_first_prompts_per_source_and_their_first_completion():
    batch, rollouts, scores = fake_step(["colour", "count", "colour", "colour", "count"])
    picked = pick_samples(7, batch, rollouts, scores, per_source=2)
    assert [(s.data_source, s.row_id) for s in picked] == [("colour", "r0"), ("count", "r1"), ("colour", "r2")] \
        + [("count", "r4")]
    first = picked[1]  # prompt 1: completions 2 and 3, totals 2.0 and 3.0
    assert first.completion == "completion 2" and first.scores == {"total": 2.0, "accuracy": 1.0}
    assert first.group_reward == 2.5 and first.step == 7 and first.answer == "1"
    assert max(first.images[0].size) == 384  # a thumbnail, aspect kept: 600x300 -> 384x192
    assert first.images[0].size == (384, 192)


def test_ranks_merge_in_prompt_order_up_to_the_limit():
    batch, rollouts, scores = fake_step(["a", "a", "b"])
    rank0 = pick_samples(1, batch, rollouts, scores, per_source=2)
    batch, rollouts, scores = fake_step(["a", "b", "b"])
    rank1 = pick_samples(1, batch, rollouts, scores, per_source=2)
    merged = first_per_source([rank0, rank1], per_source=2)
    assert [(s.data_source, s.row_id) for s in merged] == [("a", "r0"), ("a", "r1"), ("b", "r2"), ("b", "r1")]


def test_written_samples_read_back_and_resume_drops_later_steps(tmp_path):
    batch, rollouts, scores = fake_step(["colour", "count"])
    for step in (10, 20, 30):
        write_samples(tmp_path, pick_samples(step, batch, rollouts, scores, per_source=1))
    lines = read_samples(tmp_path)
    assert [(ln["step"], ln["data_source"]) for ln in lines] == [(s, src) for s in (10, 20, 30) for src in
                                                                  ("colour", "count")]
    image = Image.open(tmp_path / lines[0]["images"][0])
    assert image.size == (384, 192) and image.getpixel((5, 5)) == (200, 10, 10)
    with (tmp_path / "samples" / "samples.jsonl").open("a") as f:
        f.write('{"step": 40, "data_so')  # a kill mid-write
    assert len(read_samples(tmp_path)) == 6

    truncate_samples(tmp_path, 20)  # resume from step 20: steps 30 and the broken line go, images too
    assert [ln["step"] for ln in read_samples(tmp_path)] == [10, 10, 20, 20]
    assert sorted(p.name for p in (tmp_path / "samples" / "images").iterdir()) == ["step_000010", "step_000020"]
    assert all(json.loads(ln) for ln in (tmp_path / "samples" / "samples.jsonl").read_text().splitlines())
