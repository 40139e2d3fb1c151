"""The start-up check of a dataset split: every row read once, no image decoded, every problem reported at once.

`vlrl.data.schema.validate_row` checks a row when the step loop uses it; that alone lets a bad row stop a run
hours in. :func:`scan_split` runs the same field checks over the whole split before any slow work, reads each
image's size from its header only (PIL opens without decoding), and adds what needs the whole split or the
sizes: duplicate ids and boxes outside their image. A split with problems raises one :class:`DataError`
listing the first few, each naming the row id and field, with the total count.

What a header cannot show (pixel data cut short or corrupt) surfaces when the row is decoded for a step: the
step loop then skips and replaces it (`vlrl.data.rows`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import datasets

from vlrl.data.schema import RowError, SchemaError, check_row_fields, image_size

log = logging.getLogger(__name__)

# Tasks whose answer is JSON boxes in original-image pixels (as data_pipelines' curate stage).
BOX_TASKS = ("grounding", "detection")
# Annotation tools round: a box edge a pixel past the border is the border, not an annotation of another image.
BOX_SLACK_PX = 1.0
SHOWN_PROBLEMS = 10
SCAN_BATCH = 1000


@dataclass(frozen=True)
class DataProblem:
    """One row's problem: ``row_id`` None when the row has no usable id (then ``index`` names it)."""

    index: int
    row_id: str | None
    field: str
    problem: str

    def __str__(self) -> str:
        where = f"row {self.row_id!r} (index {self.index})" if self.row_id else f"row at index {self.index}"
        return f"{where}: field '{self.field}' {self.problem}"


class DataError(SchemaError):
    """A split failed the start-up check: the message lists the first problems and counts them all."""

    def __init__(self, label: str, problems: list[DataProblem], num_rows: int):
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:SHOWN_PROBLEMS])
        more = f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        super().__init__(f"{label}: {len(problems)} problem{'s' if len(problems) != 1 else ''} in {num_rows} "
                         f"rows; fix or remove these rows (nothing was trained):\n{shown}{more}")


@dataclass
class SplitScan:
    """What the scan learnt of a split: each row's image sizes (for prompt lengths, without decoding again)."""

    num_rows: int
    image_sizes: list[tuple[tuple[int, int], ...]] = field(default_factory=list)  # [num_rows] (w, h) per image
    problems: list[DataProblem] = field(default_factory=list)


def undecoded_rows(ds: datasets.Dataset, batch_size: int = SCAN_BATCH) -> Iterator[dict]:
    """Every row of ``ds`` as a plain dict whose images are undecoded ``{bytes, path}`` dicts.

    Read through the arrow format, so no image is decoded whatever the dataset's features say (casting the
    column to ``Image(decode=False)`` would rewrite a nested ``List(Image)`` column: the whole dataset)."""
    for batch in ds.with_format("arrow").iter(batch_size=batch_size):
        yield from batch.to_pylist()


def scan_split(ds: datasets.Dataset, label: str) -> SplitScan:
    """Check every row of ``ds`` (``label`` names the split in errors); raise :class:`DataError` listing the
    problems, or :class:`SchemaError` when the split has no rows. Returns the image sizes of every row."""
    if len(ds) == 0:
        raise SchemaError(f"{label} has no rows")
    scan = SplitScan(num_rows=len(ds))
    where_ids: dict[str, list[int]] = defaultdict(list)
    for index, raw in enumerate(undecoded_rows(ds)):
        sizes, problem = _check_row(raw, index)
        scan.image_sizes.append(sizes)
        if problem is not None:
            scan.problems.append(problem)
        row_id = raw.get("id")
        if isinstance(row_id, str):
            where_ids[row_id].append(index)
    for row_id, indices in where_ids.items():
        if len(indices) > 1:
            shown = ", ".join(map(str, indices[:5])) + (", ..." if len(indices) > 5 else "")
            scan.problems.append(DataProblem(indices[0], row_id, "id",
                                             f"is not unique: {len(indices)} rows have it (indices {shown})"))
    if scan.problems:
        scan.problems.sort(key=lambda p: p.index)
        raise DataError(label, scan.problems, len(ds))
    return scan


def _check_row(raw: Mapping, index: int) -> tuple[tuple[tuple[int, int], ...], DataProblem | None]:
    """(image sizes, the row's first problem or None)."""
    try:
        fields, raw_images = check_row_fields(raw, index)
        sizes = tuple(
            image_size(item, lambda p, i=i: RowError(index, fields["id"], f"images[{i}]", p))
            for i, item in enumerate(raw_images)
        )
    except RowError as err:
        return (), DataProblem(err.index, err.row_id, err.field, err.problem)
    problem = box_problem(fields["answer"], fields["task"], sizes) if fields["task"] in BOX_TASKS else None
    return sizes, None if problem is None else DataProblem(index, fields["id"], "answer", problem)


def box_problem(answer: str, task: str, sizes: tuple[tuple[int, int], ...]) -> str | None:
    """Why a box answer cannot be scored against its image, or None. Boxes are ``[x1, y1, x2, y2]`` in pixels
    of the original image; with several images the image a box belongs to is not recorded, so each box must
    fit the largest of them."""
    from vlrl.rewards.boxes import parse_boxes

    if not sizes:
        return f"holds boxes but the row has no image (task {task!r} needs one)"
    boxes = parse_boxes(answer)
    if boxes is None:
        return f"holds no boxes (task {task!r}; [x1, y1, x2, y2] in pixels, or [] for none): {answer[:80]!r}"
    w, h = max(s[0] for s in sizes), max(s[1] for s in sizes)
    for box in boxes:
        x1, y1, x2, y2 = box.xyxy
        if x1 < -BOX_SLACK_PX or y1 < -BOX_SLACK_PX or x2 > w + BOX_SLACK_PX or y2 > h + BOX_SLACK_PX:
            return f"box {[x1, y1, x2, y2]} is outside its {w}x{h} image (boxes are in original-image pixels)"
    return None


@dataclass
class LengthCheck:
    """The rows of a split within the prompt-token limit, and those over it: (index, id, tokens)."""

    kept: list[int]
    over: list[tuple[int, str, int]]


def check_prompt_lengths(ds: datasets.Dataset, scan: SplitScan, encoder, limit: int, label: str) -> LengthCheck:
    """Split ``ds`` by prompt length (`PromptEncoder.prompt_lengths`: text tokens and image tokens from the
    scanned sizes, nothing decoded). An image that the resize rule shrinks to nothing (an extreme aspect ratio
    under ``model.max_pixels``) would crash the encoder mid-run: such rows raise :class:`DataError` here."""
    problems = []
    for index, sizes in enumerate(scan.image_sizes):
        for i, size in enumerate(sizes):
            if encoder.image_tokens(size) == 0:
                problems.append(DataProblem(index, None, f"images[{i}]", f"of {size[0]}x{size[1]} pixels resizes to "
                                            "an empty image within model.min_pixels/max_pixels (aspect ratio too "
                                            "extreme)"))
    if problems:
        ids = ds.select([p.index for p in problems])["id"]
        problems = [DataProblem(p.index, row_id, p.field, p.problem) for p, row_id in zip(problems, ids, strict=True)]
        raise DataError(label, problems, len(ds))
    lengths = encoder.prompt_lengths(ds["problem"], scan.image_sizes)
    over = [i for i, n in enumerate(lengths) if n > limit]
    ids = ds.select(over)["id"] if over else []
    return LengthCheck(kept=[i for i, n in enumerate(lengths) if n <= limit],
                       over=[(i, row_id, lengths[i]) for i, row_id in zip(over, ids, strict=True)])


def prompt_limit(configured: int | None, context: int | None, max_new_tokens: int) -> int:
    """data.max_prompt_tokens as configured, or its default (`default_max_prompt_tokens`); an explicit limit
    must leave the completion room in the model's context."""
    from vlrl.data.prompts import default_max_prompt_tokens

    limit = configured if configured is not None else default_max_prompt_tokens(context, max_new_tokens)
    if limit < 1 or (context and limit + max_new_tokens > context):
        raise SchemaError(f"data.max_prompt_tokens={limit} with rollout.max_new_tokens={max_new_tokens} does not fit "
                          f"the model's context of {context} tokens; use a smaller positive limit, or null for the "
                          "default")
    return limit


def drop_long_prompts(splits: Mapping[str, tuple[datasets.Dataset, SplitScan, str]], encoder, limit: int,
                      listing) -> tuple[dict[str, datasets.Dataset], list[dict]]:
    """Each split ({name: (dataset, its scan, label)}) without its rows over ``limit`` prompt tokens, and one
    record per dropped row (split label, index, id, tokens, limit). Drops are logged with the first ids and the
    total; a split left with no row raises :class:`SchemaError`."""
    kept, dropped = {}, []
    for name, (ds, scan, label) in splits.items():
        check = check_prompt_lengths(ds, scan, encoder, limit, label)
        kept[name] = ds.select(check.kept) if check.over else ds
        if not check.over:
            continue
        if not check.kept:
            raise SchemaError(f"{label}: all {len(ds)} rows have prompts over data.max_prompt_tokens={limit} "
                              f"(the shortest has {min(n for *_, n in check.over)} tokens); raise the limit")
        shown = ", ".join(f"{row_id!r} ({n} tokens)" for _, row_id, n in check.over[:SHOWN_PROBLEMS])
        log.warning("%s: dropped %d of %d rows, their prompts being over data.max_prompt_tokens=%d: %s%s (all in %s)",
                    label, len(check.over), len(ds), limit, shown, ", ..." if len(check.over) > SHOWN_PROBLEMS else "",
                    listing)
        dropped += [{"split": label, "index": i, "id": row_id, "reason": "prompt_tokens", "tokens": n, "limit": limit}
                    for i, row_id, n in check.over]
    return kept, dropped
