"""A teacher for synthetic scenes: exact captions and reasoning chains computed from the scene description.

A synthetic row knows its image completely (its ``meta`` is the scene), so no model is needed to caption it or
reason about it, and what this teacher says is true by construction: a build over synthetic sources runs
offline, instantly, and its chains always verify. The request carries what to do in ``metadata``:

- ``kind``: ``"caption"``, ``"distill"`` or ``"rewrite"`` (the pipeline stage asking);
- ``scene``: the row's meta (a dict or its JSON text), in one of two forms —
  shapes (``data_pipelines/synthetic/shapes.py``): ``{"image_size": [w, h], "background": [r, g, b],
  "shapes": [{"kind", "colour", "box": [x1, y1, x2, y2]}, ...]}``;
  digits: ``{"canvas": [w, h], "digits": [{"digit": d, "box": [x1, y1, x2, y2]}, ...]}``;
- ``task`` (distill): ``colour``, ``count``, ``digit_sum`` or ``digit_grounding``; ``target`` names the digit to
  ground (else the question's "digit N" does: ``question`` in metadata, else the last user message);
- ``reasoning`` (rewrite): the chain to rewrite.

Captions follow the caption prompt's order — setting, then every object with colour/kind, size, position and
box, then visible text — and state nothing the scene does not. Chains reason step by step inside
``<think>…</think>`` and end in ``<answer>…</answer>`` in the form the task's verifier reads. A request this
teacher cannot answer (no scene, unknown task) becomes a reply with ``error`` set.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from data_pipelines.teachers.base import ChatReply, ChatRequest, answer_in_turn

COLOUR_NAMES = {(255, 255, 255): "white", (0, 0, 0): "black", (128, 128, 128): "grey"}
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "centre", "right")


class SceneError(ValueError):
    """The request does not carry what this teacher needs."""


@dataclass(frozen=True)
class SceneObject:
    kind: str  # "square", "circle", "triangle" or "digit"
    box: tuple[int, int, int, int]  # [x1, y1, x2, y2] pixels, x2/y2 exclusive
    colour: str = ""  # shapes: palette word
    digit: int | None = None  # digits: the digit shown


@dataclass(frozen=True)
class Scene:
    size: tuple[int, int]  # (w, h)
    background: str  # a colour word, or "" when the scene does not say
    objects: tuple[SceneObject, ...]  # in reading order: top to bottom, then left to right
    family: str  # "shapes" or "digits"


def parse_scene(scene: dict | str) -> Scene:
    """A shapes or digits scene (a row's meta) as a :class:`Scene`."""
    if isinstance(scene, str):
        try:
            scene = json.loads(scene)
        except json.JSONDecodeError as exc:
            raise SceneError(f"the scene is not valid JSON: {exc}") from exc
    if not isinstance(scene, dict):
        raise SceneError(f"the scene must be an object, got {type(scene).__name__}")
    if "shapes" in scene:
        family, size_key = "shapes", "image_size"
        make = lambda s: SceneObject(s["kind"], _box(s["box"]), colour=s["colour"])  # noqa: E731
    elif "digits" in scene:
        # The digits generator writes canvas_size and label; canvas and digit are accepted too.
        family, size_key = "digits", "canvas_size" if "canvas_size" in scene else "canvas"
        make = lambda d: SceneObject("digit", _box(d["box"]), digit=int(d["label"] if "label" in d else d["digit"]))  # noqa: E731
    else:
        raise SceneError("the scene has neither 'shapes' nor 'digits'")
    try:
        w, h = (int(v) for v in scene[size_key])
        objects = [make(item) for item in scene[family]]
    except (KeyError, TypeError, ValueError) as exc:
        raise SceneError(f"malformed {family} scene: {type(exc).__name__}: {exc}") from exc
    objects.sort(key=lambda o: (_band(o, h), o.box[0]))
    return Scene((w, h), _colour_name(scene.get("background")), tuple(objects), family)


def _box(values) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (int(v) for v in values)
    return x1, y1, x2, y2


def _band(obj: SceneObject, height: int) -> int:
    return min(2, int(3 * (obj.box[1] + obj.box[3]) / 2 / height))


def _colour_name(rgb) -> str:
    if rgb is None:
        return ""
    if isinstance(rgb, str):
        return rgb
    return COLOUR_NAMES.get(tuple(rgb), "rgb({}, {}, {})".format(*rgb))


def region(obj: SceneObject, size: tuple[int, int]) -> str:
    """Where the object's centre lies in a 3x3 split of the image: "top left" ... "centre" ... "bottom right"."""
    (x1, y1, x2, y2), (w, h) = obj.box, size
    col = COLUMNS[min(2, int(3 * (x1 + x2) / 2 / w))]
    row = ROWS[min(2, int(3 * (y1 + y2) / 2 / h))]
    return "centre" if (row, col) == ("middle", "centre") else f"{row} {col}"


def describe(obj: SceneObject, size: tuple[int, int]) -> str:
    """"a red square in the top left" / "the digit 7 in the middle right"."""
    what = f"the digit {obj.digit}" if obj.kind == "digit" else f"a {obj.colour} {obj.kind}"
    return f"{what} in the {region(obj, size)}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _box_text(box: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(v)) for v in box) + "]"


# ---- caption --------------------------------------------------------------------------------------------------
def caption(scene: Scene) -> str:
    """Setting, then each object (what, where, size, box), then visible text; nothing the scene does not hold."""
    w, h = scene.size
    ground = f"a plain {scene.background} background" if scene.background else "a plain background"
    if scene.family == "shapes":
        setting = f"a synthetic {w}x{h} image of flat, single-colour shapes on {ground}."
        noun = "shape"
    else:
        setting = f"a {w}x{h} canvas of handwritten digits on {ground}."
        noun = "handwritten digit"
    lines = [f"Setting: {setting}", f"Objects: {_plural(len(scene.objects), noun)}."]
    for i, obj in enumerate(scene.objects, 1):
        x1, y1, x2, y2 = obj.box
        thing = describe(obj, scene.size)
        lines.append(f"{i}. {thing[0].upper()}{thing[1:]}, {x2 - x1}x{y2 - y1} pixels, box {_box_text(obj.box)}.")
    if scene.family == "digits" and scene.objects:
        by_x = sorted(scene.objects, key=lambda o: o.box[0])
        lines.append("Text: the digits, from left to right, are " + ", ".join(str(o.digit) for o in by_x) + ".")
    else:
        lines.append("Text: none.")
    return "\n".join(lines)


# ---- distill: step-by-step reasoning per task -----------------------------------------------------------------
def _chain(steps: list[str], answer: str) -> str:
    return "<think>\n" + "\n".join(steps) + "\n</think>\n<answer>" + answer + "</answer>"


def _reason_colour(scene: Scene, question: str, target) -> str:
    if len(scene.objects) != 1:
        raise SceneError(f"a colour question needs exactly one shape; the scene has {len(scene.objects)}")
    obj = scene.objects[0]
    return _chain([
        f"The image shows a single shape: {describe(obj, scene.size)}.",
        f"It is filled with one colour throughout, and that colour is {obj.colour}.",
        f"So the shape is {obj.colour}.",
    ], obj.colour)


def _reason_count(scene: Scene, question: str, target) -> str:
    noun = "shape" if scene.family == "shapes" else "digit"
    steps = [f"I go through the image and list every {noun}:"]
    steps += [f"{i}. {describe(obj, scene.size)}" for i, obj in enumerate(scene.objects, 1)]
    n = len(scene.objects)
    steps.append(f"Nothing else is in the image, so there {'is' if n == 1 else 'are'} {_plural(n, noun)}.")
    return _chain(steps, str(n))


def _reason_digit_sum(scene: Scene, question: str, target) -> str:
    digits = [o.digit for o in sorted(scene.objects, key=lambda o: o.box[0])]
    if not digits:
        raise SceneError("a digit-sum question needs at least one digit")
    steps = [f"The image shows {_plural(len(digits), 'handwritten digit')}. From left to right they read "
             + ", ".join(map(str, digits)) + "."]
    total = digits[0]
    if len(digits) == 1:
        steps.append(f"With a single digit, the sum is that digit: {total}.")
    else:
        steps.append("I add them one at a time:")
        for d in digits[1:]:
            steps.append(f"{total} + {d} = {total + d}")
            total += d
        steps.append(f"So the sum of the digits is {total}.")
    return _chain(steps, str(total))


def _reason_digit_grounding(scene: Scene, question: str, target) -> str:
    if target is None:
        found = re.findall(r"\bdigit\s+(\d)\b", question)
        if len(set(found)) != 1:
            raise SceneError("cannot tell which digit to ground: give metadata 'target' or ask about 'digit N'")
        target = found[0]
    target = int(target)
    matches = [o for o in scene.objects if o.digit == target]
    if len(matches) != 1:
        raise SceneError(f"the digit {target} appears {len(matches)} times; grounding needs exactly one")
    obj = matches[0]
    x1, y1, x2, y2 = obj.box
    others = [str(o.digit) for o in scene.objects if o is not obj]
    steps = [f"I look for the digit {target}" + (f"; the other digits are {', '.join(others)}." if others else ".")]
    steps += [
        f"It is in the {region(obj, scene.size)} of the image.",
        f"Its strokes span x from {x1} to {x2} and y from {y1} to {y2}, so its box is {_box_text(obj.box)}.",
    ]
    return _chain(steps, _box_text(obj.box))


REASONERS: dict[str, Callable[[Scene, str, object], str]] = {
    "colour": _reason_colour,
    "count": _reason_count,
    "digit_sum": _reason_digit_sum,
    "digit_grounding": _reason_digit_grounding,
}


# Schema-v1 task names of the digits generator's rows -> the reasoner for that kind of question.
DIGITS_TASKS = {"number": "digit_sum", "grounding": "digit_grounding"}


def reasoning(scene: Scene, task: str, question: str = "", target=None) -> str:
    """The step-by-step chain for ``task`` on ``scene``, ending in ``<answer>…</answer>``."""
    if scene.family == "digits":
        task = DIGITS_TASKS.get(task, task)
    if task not in REASONERS:
        raise SceneError(f"no programmatic reasoning for task {task!r}; known tasks: {sorted(REASONERS)}")
    return REASONERS[task](scene, question, target)


# ---- rewrite --------------------------------------------------------------------------------------------------
_SOURCE = re.compile(
    r"\b(the|this|that)\s+(?:(?:given|provided|above|image)\s+)?(?:caption|description)\b", re.IGNORECASE
)
_SAYS = re.compile(r"\b(the image)\s+(?:says|states|mentions|notes|tells us)\b", re.IGNORECASE)


def rewrite(chain: str) -> str:
    """``chain`` speaking of "the image" where it spoke of "the caption" / "the description"."""

    def image(match: re.Match) -> str:
        return "The image" if match.group(1)[0].isupper() else "the image"

    out = _SOURCE.sub(image, chain)
    return _SAYS.sub(lambda m: f"{m.group(1)} shows", out)


# ---- the teacher ----------------------------------------------------------------------------------------------
class ProgrammaticTeacher:
    """Answers caption / distill / rewrite requests from ``request.metadata`` (see the module docstring)."""

    reads_metadata = True  # its replies depend on request.metadata: the reply cache must hash it
    identity = "programmatic:v1"  # bump when the wording changes, so cached replies are asked again

    def chat(self, requests: Sequence[ChatRequest], on_reply=None) -> list[ChatReply]:
        return answer_in_turn(self._ask, requests, on_reply)

    def _ask(self, request: ChatRequest) -> ChatReply:
        meta = request.metadata or {}
        kind = meta.get("kind")
        try:
            if kind == "caption":
                text = caption(parse_scene(_need(meta, "scene")))
            elif kind == "distill":
                question = meta.get("question") or _last_user_text(request.messages)
                scene = _need(meta, "scene")
                target = meta.get("target", scene.get("target") if isinstance(scene, dict) else None)
                text = reasoning(parse_scene(scene), str(_need(meta, "task")), question, target)
            elif kind == "rewrite":
                text = rewrite(str(_need(meta, "reasoning")))
            else:
                raise SceneError(f"metadata 'kind' must be caption, distill or rewrite, got {kind!r}")
        except SceneError as exc:
            return ChatReply(None, error=f"programmatic teacher: {exc}")
        return ChatReply(text, finish_reason="stop")


def _need(meta: dict, key: str):
    if meta.get(key) in (None, ""):
        raise SceneError(f"the request's metadata has no {key!r}")
    return meta[key]


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message["content"]
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
    return ""
