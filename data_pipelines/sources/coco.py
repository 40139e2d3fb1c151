"""Source ``coco``: a COCO-format detection file and its images, turned into perception questions.

Per image and per category present, up to three question kinds (``kinds``):

- ``grounding`` (task ``grounding``): "Locate the <category> ..." with one ``[x1, y1, x2, y2]`` box as the
  answer — asked only when the category appears exactly once in the image, since with two cats "the cat"
  has no single right box;
- ``detection`` (task ``detection``): "Detect every <category> ..." answered by a JSON list of
  ``{"bbox_2d": [...], "label": <category>}`` objects, one per instance;
- ``count`` (task ``count``): "How many <categories> ...?" answered by the instance count.

COCO boxes are ``[x, y, w, h]``; answers are ``[x1, y1, x2, y2]`` in original pixels. A category that has a
crowd annotation (``iscrowd: 1``: one region for many instances) or an unusable box in an image is left
out of that image's questions, since its count and box list are then unknown; each such annotation is a
drop (``crowd_annotation``, ``box_outside_image``, ``degenerate_box``, ``bad_box``, ``unknown_category``).
An image that yields no question is a drop too (``no_annotations``, ``no_usable_annotations``,
``no_questions``), so every image of the file is a row or a drop.
``max_per_image`` keeps a seeded random subset of an image's questions, the same on every run.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from data_pipelines.records import SourceResult
from data_pipelines.sources.annotations import SourceError, existing_path, progress, read_json_object
from data_pipelines.sources.answer_boxes import (
    DEFAULT_TOLERANCE,
    BoxProblem,
    box_answer,
    checked_box,
    detection_answer,
    to_xyxy,
)
from data_pipelines.sources.images import ImageProblem, open_image_file
from data_pipelines.sources.params import param
from data_pipelines.sources.rows import RowIds, new_row

KINDS = ("grounding", "detection", "count")
TASK_OF_KIND = {"grounding": "grounding", "detection": "detection", "count": "count"}
DEFAULT_TEMPLATES = {
    "grounding": "Locate the {category} in the image and output its bounding box as [x1, y1, x2, y2].",
    "detection": 'Detect every {category} in the image. Output a JSON list of {{"bbox_2d": [x1, y1, x2, y2], '
    '"label": "{category}"}} objects, one for each {category}.',
    "count": "How many {categories} are there in the image? Answer with a number.",
}
# Plurals of COCO's category words that adding "s"/"es" gets wrong.
_IRREGULAR = {
    "person": "people",
    "mouse": "mice",
    "knife": "knives",
    "sheep": "sheep",
    "skis": "skis",
    "scissors": "scissors",
    "broccoli": "broccoli",
}


@dataclass(frozen=True)
class CocoOptions:
    annotations: str = param('COCO-format JSON: {"images": [...], "annotations": [...], "categories": [...]}')
    image_root: str = param("folder the images' file_name is relative to")
    kinds: tuple[str, ...] = param(f"which question kinds to ask, of {list(KINDS)}", KINDS)
    max_per_image: int | None = param("keep at most this many questions per image (seeded choice)", None)
    seed: int = param("seed of the max_per_image choice", 0)
    box_tolerance: float = param("pixels a box may overrun the image before it is dropped", DEFAULT_TOLERANCE)
    data_source: str | None = param("constant data_source; default: '<name>_<kind>', so each kind is its own "
                                    "metric", None)
    templates: Mapping[str, str] | None = param("question wording per kind ({category}, {categories} are "
                                                "replaced)", None)


@dataclass
class _ImageAnnotations:
    """One image's usable boxes per category id, and the categories left out of its questions."""

    boxes: dict[int, list[tuple[int, tuple[float, float, float, float]]]]
    excluded: set[int]


def load_coco(options: CocoOptions, name: str = "coco") -> SourceResult:
    """Grounding, detection and counting rows from a COCO-format file; see the module docstring."""
    unknown = sorted(set(options.kinds) - set(KINDS))
    if unknown or not options.kinds:
        raise SourceError(f"source {name!r}: unknown question kinds {unknown}; choose from {list(KINDS)}")
    templates = {**DEFAULT_TEMPLATES, **(options.templates or {})}
    path = existing_path(options.annotations, f"source {name!r}: annotations", "file")
    root = existing_path(options.image_root, f"source {name!r}: image_root", "dir")
    data = read_json_object(path, f"source {name!r}: annotations")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise SourceError(f"{path}: not a COCO detection file (no '{key}' list)")
    categories = {c["id"]: str(c["name"]) for c in data["categories"] if isinstance(c, dict) and "id" in c}
    result, ids = SourceResult(name), RowIds()
    images = {img["id"]: img for img in data["images"] if isinstance(img, dict) and "id" in img}
    by_image = _group_annotations(data["annotations"], images, categories, result, name)
    for image_id in progress(images, name, "image"):  # file order: deterministic, and what the user expects
        info = images[image_id]
        image = _open(info, root, result, f"{name}:{image_id}")
        if image is None:
            continue
        anns = _check_boxes(by_image.get(image_id, []), image.size, options.box_tolerance, result, name)
        rows = _questions(info, image, anns, categories, options, templates, name)
        if not rows:  # counted: an image that asks nothing must show in the card, not vanish
            result.drop(f"{name}:{image_id}", *_why_no_question(image_id, by_image, anns, options.kinds))
            continue
        if options.max_per_image is not None and len(rows) > options.max_per_image:
            keep = sorted(
                random.Random(f"{options.seed}:{image_id}").sample(range(len(rows)), options.max_per_image)
            )
            for i in sorted(set(range(len(rows))) - set(keep)):  # counted: the card shows what the cap cut
                result.drop(rows[i]["id"], "over_max_per_image",
                            f"image {image_id}: {len(rows)} questions, max_per_image={options.max_per_image}")
            rows = [rows[i] for i in keep]
        for row in rows:
            ids.add(result, row)
    return result


def _group_annotations(anns: list, images: dict, categories: dict, result: SourceResult, name: str) -> dict:
    """Annotations by image id; unusable ones dropped, crowd ones kept (they exclude their category)."""
    by_image: dict = {}
    for index, ann in enumerate(anns):
        ann_id = ann.get("id", index) if isinstance(ann, dict) else index
        drop_id = f"{name}:ann{ann_id}"
        if not isinstance(ann, dict) or "image_id" not in ann or "category_id" not in ann:
            result.drop(drop_id, "invalid_record", f"annotation {index} lacks image_id or category_id")
        elif ann["image_id"] not in images:
            result.drop(
                drop_id, "unknown_image", f"annotation {ann_id}: image_id {ann['image_id']!r} not in images"
            )
        elif ann["category_id"] not in categories:
            # The image's questions about other categories are still right, so only this box goes.
            result.drop(
                drop_id,
                "unknown_category",
                f"annotation {ann_id} (image {ann['image_id']}): category_id {ann['category_id']!r} "
                "not in categories",
            )
        else:
            by_image.setdefault(ann["image_id"], []).append(ann)
    return by_image


def _why_no_question(image_id, by_image: dict, anns: _ImageAnnotations, kinds) -> tuple[str, str]:
    """(reason, detail) for an image that yields no question."""
    if not by_image.get(image_id):
        return "no_annotations", f"image {image_id}: no annotation in the file"
    if not anns.boxes:
        return "no_usable_annotations", f"image {image_id}: every annotation was dropped (see its drops)"
    return "no_questions", (f"image {image_id}: no category is usable for {list(kinds)} (crowd regions, bad "
                            "boxes, or several instances where grounding needs exactly one)")


def _open(info: dict, root: Path, result: SourceResult, drop_id: str):
    """The image's decoded RGB pixels, or None after dropping it (missing, undecodable, wrong size)."""
    file_name = info.get("file_name")
    if not file_name:
        result.drop(drop_id, "missing_image", f"image {info['id']} has no file_name")
        return None
    try:
        image = open_image_file(root / str(file_name))
    except ImageProblem as problem:
        result.drop(drop_id, problem.reason, problem.detail)
        return None
    declared = (info.get("width"), info.get("height"))
    if None not in declared and tuple(declared) != image.size:
        # Boxes were drawn on a declared-size image; on other pixels they would point at the wrong place.
        result.drop(
            drop_id,
            "image_size_mismatch",
            f"{root / str(file_name)}: file is {image.size[0]}x{image.size[1]}, "
            f"annotations say {declared[0]}x{declared[1]}",
        )
        return None
    return image


def _check_boxes(anns: list, size: tuple[int, int], tolerance: float, result: SourceResult, name: str):
    out = _ImageAnnotations(boxes={}, excluded=set())
    for ann in anns:
        drop_id = f"{name}:ann{ann.get('id')}"
        where = f"annotation {ann.get('id')} (image {ann['image_id']}, category {ann['category_id']})"
        if ann.get("iscrowd"):
            out.excluded.add(ann["category_id"])
            result.drop(
                drop_id,
                "crowd_annotation",
                f"{where}: crowd region; its category is left out of the image's questions",
            )
            continue
        try:
            xyxy = checked_box(to_xyxy(ann.get("bbox"), "xywh"), size, tolerance)
        except BoxProblem as problem:
            out.excluded.add(ann["category_id"])
            result.drop(
                drop_id,
                problem.reason,
                f"{where}, field 'bbox': {problem.detail}; its category is left out of the image's questions",
            )
            continue
        out.boxes.setdefault(ann["category_id"], []).append((ann.get("id"), xyxy))
    return out


def _questions(info, image, anns: _ImageAnnotations, categories, options: CocoOptions, templates, name):
    rows = []
    for cat_id in [c for c in categories if c in anns.boxes]:  # the file's category order
        if cat_id in anns.excluded:
            continue
        category, instances = categories[cat_id], anns.boxes[cat_id]
        for kind in options.kinds:
            if kind == "grounding" and len(instances) != 1:
                continue
            if kind == "grounding":
                answer = box_answer(instances[0][1])
            elif kind == "detection":
                answer = detection_answer([(xyxy, category) for _, xyxy in instances])
            else:
                answer = str(len(instances))
            problem = templates[kind].format(category=category, categories=plural(category))
            meta = {
                "image_id": info["id"],
                "file_name": info["file_name"],
                "image_size": list(image.size),
                "category": category,
                "category_id": cat_id,
                "annotation_ids": [a for a, _ in instances],
            }
            rows.append(
                new_row(
                    f"{name}:{info['id']}:{kind}:{cat_id}",
                    [image],
                    problem,
                    answer,
                    TASK_OF_KIND[kind],
                    options.data_source or f"{name}_{kind}",
                    meta=meta,
                )
            )
    return rows


def plural(category: str) -> str:
    """English plural of a category name's last word ("traffic light" -> "traffic lights").

    >>> [plural(c) for c in ("person", "bus", "teddy bear", "wine glass", "toothbrush", "pony")]
    ['people', 'buses', 'teddy bears', 'wine glasses', 'toothbrushes', 'ponies']
    """
    head, _, last = category.rpartition(" ")
    if last in _IRREGULAR:
        word = _IRREGULAR[last]
    elif last.endswith(("s", "sh", "ch", "x", "z")):
        word = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word
