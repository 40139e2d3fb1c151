"""The start-up check of a dataset (one pass, image headers only, one message for every problem), prompt lengths
counted without the image processor, and rows that fail to decode mid-run skipped and replaced deterministically."""

from __future__ import annotations

import io
import logging

import datasets
import numpy as np
import PIL.Image
import pytest

from vlrl.data.prompts import PromptEncoder, default_max_prompt_tokens
from vlrl.data.rows import MAX_REPLACEMENTS, RowReader
from vlrl.data.sampler import StepSampler
from vlrl.data.schema import SCHEMA_FEATURES, Row, RowError, SchemaError, load_rows
from vlrl.data.validation import (
    DataError,
    check_prompt_lengths,
    drop_long_prompts,
    prompt_limit,
    scan_split,
)


def png(size=(56, 40), seed=0) -> bytes:
    """Noise, so the pixel data is large enough to cut after the header."""
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def truncated_png() -> bytes:
    """A PNG whose header reads (56x40) but whose pixels fail to decode."""
    data = png()
    return data[: len(data) // 2]


def raw_row(row_id: str, image: bytes | None = None, **fields) -> dict:
    row = {"id": row_id, "images": [{"bytes": image or png(), "path": None}], "problem": "what colour is it ?",
           "answer": "red", "task": "colour", "data_source": "", "reward": "", "reasoning": "", "meta": ""}
    return {**row, **fields}


def dataset(rows: list[dict]) -> datasets.Dataset:
    return datasets.Dataset.from_list(rows, features=SCHEMA_FEATURES)


# ---------------------------------------------------------------------------------------------- scan_split


def test_a_clean_split_passes_and_yields_image_sizes():
    ds = dataset([raw_row("a"), raw_row("b", png((30, 70))), raw_row("c", images=[])])
    scan = scan_split(ds, "train")
    assert scan.num_rows == 3 and not scan.problems
    assert scan.image_sizes == [((56, 40),), ((30, 70),), ()]


def test_an_empty_split_is_an_error_naming_it():
    with pytest.raises(SchemaError, match=r"data.path=/d, split 'test' has no rows"):
        scan_split(dataset([raw_row("a")]).select([]), "data.path=/d, split 'test'")


def test_an_empty_saved_split_loads_as_empty_and_does_not_break_the_others(tmp_path):
    # datasets saves an empty split with no arrow file and then fails to load the whole dict (IndexError)
    full = dataset([raw_row("a"), raw_row("b")])
    datasets.DatasetDict(train=full, test=full.select([])).save_to_disk(str(tmp_path / "dd"))
    assert load_rows(str(tmp_path / "dd"), "train")["id"] == ["a", "b"]
    empty = load_rows(str(tmp_path / "dd"), "test")
    assert len(empty) == 0 and empty.features == SCHEMA_FEATURES
    with pytest.raises(SchemaError, match="split 'test' has no rows"):
        scan_split(empty, "split 'test'")


def test_every_problem_is_named_by_row_and_field_in_one_message():
    rows = [
        raw_row("ok-0"),
        raw_row("dup", answer="1"),
        raw_row("box-out", task="grounding", answer="[10, 5, 60, 30]"),  # x2 = 60 > width 56
        raw_row("box-in", task="grounding", answer="[0, 0, 56.5, 40]"),  # within the 1 px slack
        raw_row("no-box", task="detection", answer="a cat"),
        raw_row("garbage", image=b"not an image at all"),
        raw_row("dup", answer="2"),
        raw_row("no-problem", problem=" "),
        raw_row("truncated", image=truncated_png()),  # its header reads: only decoding fails, later
    ]
    with pytest.raises(DataError) as info:
        scan_split(dataset(rows), "data.path=/d, split 'train'")
    message = str(info.value)
    assert message.startswith("data.path=/d, split 'train': 5 problems in 9 rows")
    lines = message.splitlines()[1:]
    assert lines[0] == "  row 'dup' (index 1): field 'id' is not unique: 2 rows have it (indices 1, 6)"
    assert lines[1].startswith("  row 'box-out' (index 2): field 'answer' box [10.0, 5.0, 60.0, 30.0] is outside "
                               "its 56x40 image")
    assert lines[2].startswith("  row 'no-box' (index 4): field 'answer' holds no boxes (task 'detection'")
    assert lines[3].startswith("  row 'garbage' (index 5): field 'images[0]' cannot be read: UnidentifiedImageError")
    assert lines[4] == "  row 'no-problem' (index 7): field 'problem' is empty"
    assert len(lines) == 5
    assert {p.row_id for p in info.value.problems} == {"dup", "box-out", "no-box", "garbage", "no-problem"}


def test_many_problems_show_the_first_ten_and_the_total():
    rows = [raw_row(f"r{i}", task="") for i in range(25)]
    with pytest.raises(DataError) as info:
        scan_split(dataset(rows), "train")
    message = str(info.value)
    assert "25 problems in 25 rows" in message
    assert "row 'r9' (index 9): field 'task' is empty" in message and "'r10'" not in message
    assert message.endswith("... and 15 more")


def test_the_scan_decodes_no_image(monkeypatch):
    def no_decode(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", no_decode)
    scan = scan_split(dataset([raw_row("a"), raw_row("b", png((20, 30)))]), "train")
    assert scan.image_sizes == [((56, 40),), ((20, 30),)]


# ---------------------------------------------------------------------------------------------- prompt lengths


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("system_prompt,suffix", [("", ""), ("system", "answer in <answer> tags")])
def test_prompt_lengths_equal_the_encoded_prompts(processor, system_prompt, suffix):
    encoder = PromptEncoder(processor, 56 * 56, 112 * 112, system_prompt, suffix)
    images = [(), (PIL.Image.new("RGB", (56, 56)),),
              (PIL.Image.new("RGB", (300, 40)), PIL.Image.new("RGB", (30, 200))),
              (PIL.Image.new("RGB", (500, 500)), PIL.Image.new("RGB", (10, 10)))]
    problems = ["how many shapes ?", "what colour is the shape ?", "<image> left or <image> right ?",
                "is the shape red ?"]
    rows = [Row(f"r{i}", ims, p, "1", "count", "s", None, None, {}) for i, (p, ims) in enumerate(zip(problems, images, strict=True))]
    counted = encoder.prompt_lengths(problems, [[im.size for im in ims] for ims in images])
    assert counted == [int(encoder([row], 1).attention_mask.sum()) for row in rows]
    assert counted[3] > counted[1] > counted[0]  # images add their tokens: the comparison is not of constants


def test_long_prompts_are_dropped_listed_and_an_unresizable_image_is_an_error(processor, caplog):
    encoder = PromptEncoder(processor, 56 * 56, 112 * 112)
    long_problem = " ".join(["red"] * 300)
    rows = [raw_row("short"), raw_row("long", problem=long_problem), raw_row("short-2"),
            raw_row("long-2", problem=long_problem + " blue")]
    ds = dataset(rows)
    scan = scan_split(ds, "train")
    lengths = encoder.prompt_lengths(ds["problem"], scan.image_sizes)
    limit = lengths[0] + 1
    with caplog.at_level(logging.WARNING):
        kept, dropped = drop_long_prompts({"train": (ds, scan, "split 'train'")}, encoder, limit, "LISTING")
    assert kept["train"]["id"] == ["short", "short-2"]
    assert [(d["id"], d["index"], d["tokens"], d["limit"]) for d in dropped] == [
        ("long", 1, lengths[1], limit), ("long-2", 3, lengths[3], limit)]
    assert f"split 'train': dropped 2 of 4 rows, their prompts being over data.max_prompt_tokens={limit}" in caplog.text
    assert f"'long' ({lengths[1]} tokens)" in caplog.text and "LISTING" in caplog.text
    with pytest.raises(SchemaError, match=r"all 4 rows have prompts over data.max_prompt_tokens=3"):
        drop_long_prompts({"train": (ds, scan, "split 'train'")}, encoder, 3, "LISTING")

    thin = dataset([raw_row("fine"), raw_row("thin", png((20, 500)))])  # resizes to width 0 under 112x112
    with pytest.raises(DataError, match=r"row 'thin' \(index 1\): field 'images\[0\]' of 20x500 pixels resizes to "
                       "an empty image"):
        check_prompt_lengths(thin, scan_split(thin, "t"), encoder, 8192, "split 'train'")


def test_the_prompt_limit_default_and_its_bounds():
    assert default_max_prompt_tokens(128000, 1024) == 8192  # capped
    assert default_max_prompt_tokens(4096, 1024) == 3072  # what the context leaves for the completion
    assert default_max_prompt_tokens(None, 1024) == 8192
    assert prompt_limit(None, 4096, 1024) == 3072
    assert prompt_limit(500, 4096, 1024) == 500
    with pytest.raises(SchemaError, match=r"data.max_prompt_tokens=4000 with rollout.max_new_tokens=1024 does not "
                       "fit the model's context of 4096"):
        prompt_limit(4000, 4096, 1024)
    with pytest.raises(SchemaError, match="max_prompt_tokens=0"):
        prompt_limit(0, 4096, 16)


# ---------------------------------------------------------------------------------------------- rows mid-run


def _mixed(n: int, bad: set[int]) -> datasets.Dataset:
    return dataset([raw_row(f"r{i}", truncated_png() if i in bad else png(seed=i)) for i in range(n)])


def test_a_row_that_fails_to_decode_is_skipped_and_replaced_the_same_way_everywhere(caplog):
    ds = _mixed(12, bad={3, 7})
    sampler = StepSampler(len(ds), prompts_per_step=6, seed=5)
    steps = range(4)  # two epochs: each bad row is drawn twice
    with caplog.at_level(logging.WARNING):
        whole = [RowReader(ds).step_rows(sampler, s, range(6)) for s in steps]
    skipped = [skip for _, skips in whole for skip in skips]
    drawn_bad = sum(i in (3, 7) for s in steps for i in sampler.indices(s))
    assert drawn_bad == 4 and len(skipped) >= drawn_bad  # a replacement can be bad too: then it is skipped as well
    assert {s.row_id for s in skipped} == {"r3", "r7"}
    assert all("field 'images[0]' cannot be decoded: OSError" in s.reason for s in skipped)
    assert "skipped, replaced by index" in caplog.text and "row 'r3' (index 3)" in caplog.text
    for rows, _ in whole:
        assert len(rows) == 6 and not {"r3", "r7"} & {r.id for r in rows}  # every step keeps its prompts

    # A resumed run (a fresh reader) and two ranks (each its own half, own reader) read the same rows.
    for s, (rows, _) in zip(steps, whole, strict=True):
        assert [r.id for r in RowReader(ds).step_rows(sampler, s, range(6))[0]] == [r.id for r in rows]
        halves = [RowReader(ds).step_rows(sampler, s, range(k * 3, k * 3 + 3))[0] for k in range(2)]
        assert [r.id for half in halves for r in half] == [r.id for r in rows]


def test_eval_rows_that_fail_to_decode_are_left_out_and_counted():
    rows, skipped = RowReader(_mixed(5, bad={1})).rows(range(5))
    assert [r.id for r in rows] == ["r0", "r2", "r3", "r4"]
    assert [(s.index, s.row_id) for s in skipped] == [(1, "r1")]


def test_a_dataset_of_corrupt_rows_stops_with_a_message():
    ds = _mixed(4, bad={0, 1, 2, 3})
    with pytest.raises(RowError, match=rf"the {MAX_REPLACEMENTS} rows drawn to replace prompt 0 of step 1 failed"):
        RowReader(ds).step_rows(StepSampler(4, 2, seed=0), 0, range(2))
