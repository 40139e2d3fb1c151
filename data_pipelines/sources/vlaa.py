"""Source ``vlaa``: VLAA-Thinking-style JSON — image, question, ground truth, a teacher's R1-style answer
and a caption per record (Chen et al. 2025, arXiv 2504.11468).

The published layout (UCSC-VLAA/VLAA-Thinking): ``VLAA-Thinking-SFT-126K.json`` and
``VLAA-Thinking-GRPO-25K.json`` beside an ``images/`` folder of one subfolder per origin (``allava_laion``,
``arxivqa``, ``chartqa``, ``clevr_math``, ``coco``, ``docvqa``, ``geoqa170k``, ``synthesis``, ``vg``, ``vizwiz``).
Record fields: ``id`` (``<origin>-<original id>``, e.g. ``clevr_math-CLEVR_train_027977.png``), ``image``
(relative to ``images/``, written ``clevr_math/…`` or, for ALLaVA, ``/allava_laion/images/…`` with a leading
``/``; or a list), ``question``, ``gt`` (a letter, a number — sometimes a JSON number —, text, or a worked
solution ending in an ``Answer:`` line), ``ds_answer`` (the reasoner's output, ``<think>…</think>`` then its
answer), ``caption``, ``meta`` (an object). ``image_root`` defaults to the JSON file's folder; an image path
is looked up under it and under its ``images/``, and a leading ``/`` that names no existing file is read as
relative. Rows get:

- ``reasoning``: the ``<think>`` part of ``ds_answer`` (text before ``</think>`` when the opening tag is
  missing, as R1 outputs often are); "" when there is none;
- ``data_source``: the ``data_source`` option, else the origin dataset named in ``meta``, else
  ``<name>_<origin>`` with the origin from the id prefix or the image's first folder (so per-source metrics
  keep CLEVR-Math apart from ArxivQA), else the name;
- ``answer``: ``gt``, or the text after the last ``Answer:`` marker of a worked solution (the whole solution
  is kept in ``meta.solution``): a verifier compares final answers, not derivations;
- ``meta``: ``caption``, ``ds_answer`` and every other original field (``meta`` under ``source_meta``);
  for multiple-choice rows also ``options`` (letter -> text, read from the question) for the choice reward;
- ``task`` inferred from the answer by :func:`infer_task`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from data_pipelines.records import SourceResult
from data_pipelines.sources.annotations import annotations_and_root, progress, read_records
from data_pipelines.sources.columns import split_images
from data_pipelines.sources.images import ImageProblem, load_image
from data_pipelines.sources.params import param
from data_pipelines.sources.rows import RowIds, new_row

SOURCE_KEYS = ("source", "dataset", "data_source", "ds_name")
_LETTER_RE = re.compile(r"^\(?([A-Ea-e])\)?[.:)]?$")
# An option marker at a line start or after whitespace: "A.", "(B)", "C:", "D)".
_OPTION_RE = re.compile(r"(?:^|(?<=\s))\(?([A-E])[.:)]\s*(.+?)(?=\s+\(?[A-E][.:)]\s|$)", re.MULTILINE)
_NUMBER_RE = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?\s*(?:%|°)?$")
_MATH_RE = re.compile(r"\\[A-Za-z]+|[\^_=]|\d\s*[+\-*/×÷]\s*[\w(]|^[+\-]?\d*[a-z]\b|[a-z]\s*[+\-*/]\s*\w|√|π")
_BOXED_RE = re.compile(r"^\\boxed\{(.*)\}$", re.DOTALL)
_ANSWER_MARKER_RE = re.compile(r"(?:^|\n|†)[ \t*]*(?:final )?answer[ \t*]*[:：][ \t*]*", re.IGNORECASE)


@dataclass(frozen=True)
class VlaaOptions:
    annotations: str = param("the VLAA-Thinking JSON (list of objects) or JSONL")
    image_root: str | None = param("folder image paths are relative to; default: the JSON file's folder", None)
    data_source: str | None = param("constant data_source; default: the origin named in meta, else the name", None)
    task: str | None = param("force one task for every row instead of inferring it", None)


def load_vlaa(options: VlaaOptions, name: str = "vlaa") -> SourceResult:
    """Rows from a VLAA-Thinking file; records without image, question or ground truth are drops."""
    path, root = annotations_and_root(options.annotations, options.image_root, name)
    result, ids = SourceResult(name), RowIds()
    for index, record in enumerate(progress(read_records(path), name)):
        row = _row(record, index, Path(root), options, result, name)
        if row is not None:
            ids.add(result, row)
    return result


def _row(record: dict, index: int, root: Path, options: VlaaOptions, result: SourceResult, name: str):
    row_id = f"{name}:{record.get('id') if record.get('id') not in (None, '') else index}"
    if "__invalid__" in record:
        return result.drop(row_id, "invalid_record", f"record {index} is not an object")
    question, gt = _text(record.get("question")), _text(record.get("gt"))
    if not question:
        return result.drop(row_id, "missing_question", f"record {index}: empty or missing field 'question'")
    if not gt:
        return result.drop(row_id, "missing_answer", f"record {index}: empty or missing field 'gt'")
    paths = split_images(record.get("image"), "")
    if not paths:
        return result.drop(row_id, "missing_image", f"record {index}: empty or missing field 'image'")
    try:
        images = [_image(p, root, f"record {index}, field 'image'") for p in paths]
    except ImageProblem as problem:
        return result.drop(row_id, problem.reason, problem.detail)
    final = final_answer(gt)
    task = options.task or infer_task(final, question)
    letter = _LETTER_RE.match(_clean_answer(final))
    answer = letter.group(1).upper() if task == "mcq" and letter else final
    source_meta = record.get("meta")
    meta = {k: v for k, v in record.items() if k not in ("image", "question", "gt", "meta", "id")}
    if final != gt:
        meta["solution"] = gt
    if source_meta not in (None, "", {}):
        meta["source_meta"] = source_meta
    if task == "mcq":
        meta["options"] = question_options(question)
    ds_answer = record.get("ds_answer") if isinstance(record.get("ds_answer"), str) else ""
    return new_row(
        row_id,
        images,
        question,
        answer,
        task,
        options.data_source or _origin(source_meta) or _prefixed(name, _release_origin(record, paths)) or name,
        reasoning=thinking(ds_answer),
        meta=meta,
    )


def infer_task(answer: str, question: str = "") -> str:
    """The task a VLAA ground truth routes to, judged from the answer (and the question for letters):

    1. ``mcq``: one letter A–E (``B``, ``(B)``, ``B.``) *and* the question lists lettered options,
       that letter among them (a bare "A" answering "What is A?" is not a choice);
    2. ``yes_no``: "yes" or "no";
    3. ``number``: a plain number (sign, thousands commas, decimals, optional ``%`` or ``°``);
    4. ``math``: an expression — a LaTeX command, ``^``, ``_``, ``=``, ``√``, ``π``, an operator between
       terms (``1/2``, ``2x+3``) or a term with a variable (``3x``);
    5. ``open``: anything else (free text, scored by normalised exact match).

    ``$…$`` and ``\\boxed{…}`` around the answer are ignored.

    >>> [infer_task(a, "Which? A. red B. blue") for a in ("B", "12", "1/2", "\\\\frac{1}{2}", "a red car")]
    ['mcq', 'number', 'math', 'math', 'open']
    """
    text = _clean_answer(answer)
    letter = _LETTER_RE.match(text)
    options = question_options(question)
    if letter and len(options) >= 2 and letter.group(1).upper() in options:
        return "mcq"
    if text.lower().rstrip(".") in ("yes", "no"):
        return "yes_no"
    if text and _NUMBER_RE.match(text) and any(c.isdigit() for c in text):
        return "number"
    if any(c.isdigit() or c in "\\^√π" for c in text) and _MATH_RE.search(text):
        return "math"
    return "open"


def question_options(question: str) -> dict[str, str]:
    """Lettered options in a question ("A. red\\nB. blue" or "(A) red (B) blue"), letter -> text."""
    return {m.group(1): m.group(2).strip() for m in _OPTION_RE.finditer(question)}


def thinking(ds_answer: str) -> str:
    """The reasoning chain of an R1-style answer: inside ``<think>…</think>``, else before ``</think>``."""
    if "</think>" not in ds_answer:
        return ""
    before = ds_answer.split("</think>", 1)[0]
    return before.split("<think>", 1)[-1].strip()


def _clean_answer(answer: str) -> str:
    text = answer.strip()
    if len(text) > 1 and text.startswith("$") and text.endswith("$"):
        text = text.strip("$").strip()
    boxed = _BOXED_RE.match(text)
    return boxed.group(1).strip() if boxed else text


def final_answer(gt: str) -> str:
    """The text after the last ``Answer:`` marker of a worked solution (``†Answer: y = -5 * sin(-5 * x).``,
    ``**Answer:** 3``), final period dropped; ``gt`` itself when it has none.

    >>> final_answer("Step 1: 5 = a * -1.\\n\\n†Answer: a = -5."), final_answer("C")
    ('a = -5', 'C')
    """
    matches = list(_ANSWER_MARKER_RE.finditer(gt))
    if not matches:
        return gt
    tail = gt[matches[-1].end():].strip().strip("*").strip()
    return tail[:-1].rstrip() if tail.endswith(".") and not tail[:-1].rstrip().endswith(".") else tail or gt


def _image(path, root: Path, where: str):
    """The image at ``path`` under ``root`` or ``root/images`` (the release's layout); a leading ``/`` that
    names no existing file is the release's way of writing a path relative to ``images/``."""
    if not isinstance(path, str):
        return load_image(path, root, where)
    candidate = Path(path)
    if candidate.is_absolute() and candidate.is_file():
        return load_image(path, root, where)
    relative = path.lstrip("/")
    for base in (root, root / "images"):
        if (base / relative).is_file():
            return load_image(relative, base, where)
    raise ImageProblem("missing_image", f"{where}: no image file {relative!r} under {root} or {root / 'images'}")


def _release_origin(record: dict, paths: list) -> str:
    """The origin dataset of a release record: its id's prefix (``geoqa170k-geoqa_plus-2905``), else the
    first folder of its image path (``clevr_math/…``, ``/allava_laion/…``)."""
    record_id = record.get("id")
    if isinstance(record_id, str) and "-" in record_id:
        return record_id.split("-", 1)[0]
    if paths and isinstance(paths[0], str):
        parts = [p for p in Path(paths[0].lstrip("/")).parts[:-1] if p != "images"]
        return parts[0] if parts else ""
    return ""


def _prefixed(name: str, origin: str) -> str:
    return f"{name}_{origin}" if origin else ""


def _origin(source_meta) -> str:
    if isinstance(source_meta, dict):
        return next((str(source_meta[k]) for k in SOURCE_KEYS if source_meta.get(k)), "")
    return ""


def _text(value) -> str:
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else str(value).strip()
