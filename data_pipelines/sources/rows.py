"""Building a source's rows: one constructor for the in-flight row dict, and id uniqueness.

Every source builds rows through :func:`new_row` so they share one shape (schema-v1 fields; ``reward`` and
``meta`` as dicts, "" / {} when absent) and one placeholder check, and adds them through :class:`RowIds`,
which drops a repeated id (``duplicate_id``) instead of letting it fail the dataset at write time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from data_pipelines.records import SourceResult

ORIENTATION = 274  # the EXIF orientation tag
IMAGE_PLACEHOLDER = "<image>"  # as vlrl.data.schema; repeated here so sources import no torch-side code


def new_row(
    row_id: str,
    images: list,
    problem: str,
    answer: str,
    task: str,
    data_source: str,
    reward: dict | str = "",
    reasoning: str = "",
    meta: dict | None = None,
) -> dict:
    """A schema-v1 row in flight (see ``data_pipelines.records``)."""
    return {
        "id": row_id,
        "images": [by_path(image) for image in images],
        "problem": problem,
        "answer": answer,
        "task": task,
        "data_source": data_source,
        "reward": reward or "",
        "reasoning": reasoning or "",
        "meta": meta or {},
    }


def by_path(image):
    """An image decoded from an RGB file, as ``{"path", "bytes": None}``: the source has checked that it decodes,
    and holding its pixels for every row of a large source (all of COCO: ~100 GB) is not needed —
    ``datasets`` reads the file again when it writes the dataset, embedding the original bytes. Other images
    (generated, converted, from bytes) are kept as they are."""
    import PIL.Image

    if not isinstance(image, PIL.Image.Image):
        return image
    if image.getexif().get(ORIENTATION, 1) != 1:
        # Annotations are in stored pixels, but `datasets` rotates an image by its EXIF orientation when it
        # decodes one: keep the stored pixels, without the tag (a copy has no file behind it, so it is encoded
        # from its pixels).
        upright = image.copy()
        upright.info.pop("exif", None)
        return upright
    if getattr(image, "filename", "") and image.mode == "RGB":
        return {"path": image.filename, "bytes": None}  # the pixels go with the last reference to the image
    return image


@dataclass
class RowIds:
    """The ids a source has emitted; :meth:`add` appends a row unless it breaks a rule a writer would reject."""

    seen: set[str] = field(default_factory=set)

    def add(self, result: SourceResult, row: dict) -> bool:
        """Append ``row`` to ``result``; drop it (``duplicate_id``, ``placeholder_mismatch``) otherwise."""
        row_id = row["id"]
        if row_id in self.seen:
            result.drop(row_id, "duplicate_id", f"id {row_id!r} already used by an earlier row")
            return False
        n_marks = row["problem"].count(IMAGE_PLACEHOLDER)
        if n_marks and n_marks != len(row["images"]):
            result.drop(
                row_id,
                "placeholder_mismatch",
                f"problem has {n_marks} '{IMAGE_PLACEHOLDER}' marks but the row has {len(row['images'])} images",
            )
            return False
        self.seen.add(row_id)
        result.rows.append(row)
        return True
