"""Turning whatever a source holds for an image — a path, bytes, a ``{bytes, path}`` dict or a PIL image —
into a decoded RGB ``PIL.Image.Image``, or a :class:`ImageProblem` that says why not.

Images are decoded here, at the source, so an unreadable file is dropped with its row id and path instead
of failing a training run hours later. An image that is already RGB and was read from a file is returned as
PIL opened it from its absolute path (keeping ``filename`` and ``format``): ``datasets`` records the path
and ``save_to_disk`` embeds the original file bytes, rather than re-encoding the pixels (a JPEG would
otherwise come back as a PNG several times its size). Images from bytes or other modes are re-encoded. EXIF
orientation is deliberately not applied: box annotations (COCO, RefCOCO) are in stored-pixel coordinates.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import PIL.Image


class ImageProblem(Exception):
    """One image cannot be used: ``reason`` is a drop reason, ``detail`` names the file or field."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def open_image_file(path: Path) -> PIL.Image.Image:
    """The decoded RGB image at ``path``; ``missing_image`` or ``undecodable_image`` otherwise."""
    path = path.absolute()  # the dataset writer reads the file again later, maybe from another cwd
    if not path.is_file():
        raise ImageProblem("missing_image", f"no image file at {path}")
    try:
        image = PIL.Image.open(path)
        image.load()  # force the decode now: a truncated file fails here, not in a later stage
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise ImageProblem("undecodable_image", f"{path}: {type(exc).__name__}: {exc}") from exc
    return _rgb(image, str(path))


def image_from_bytes(data: bytes, where: str) -> PIL.Image.Image:
    """The decoded RGB image in ``data``; ``where`` names it in the problem."""
    try:
        image = PIL.Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:
        raise ImageProblem("undecodable_image", f"{where}: {type(exc).__name__}: {exc}") from exc
    return _rgb(image, where)


def load_image(value: Any, root: Path | None, where: str) -> PIL.Image.Image:
    """Decode one image given as a PIL image, bytes, a ``{"bytes", "path"}`` dict or a path string.

    Relative paths are taken under ``root`` (absolute ones as they are). ``where`` ("row 12, column
    'image'") prefixes the problem's detail when the value itself is not usable.
    """
    if isinstance(value, PIL.Image.Image):
        try:
            value.load()
        except Exception as exc:
            raise ImageProblem("undecodable_image", f"{where}: {type(exc).__name__}: {exc}") from exc
        return _rgb(value, where)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return image_from_bytes(bytes(value), where)
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return image_from_bytes(bytes(value["bytes"]), f"{where} ({value.get('path') or 'bytes'})")
        if value.get("path"):
            return open_image_file(resolve(str(value["path"]), root))
        raise ImageProblem("missing_image", f"{where}: image entry has neither bytes nor path")
    if isinstance(value, str) and value.strip():
        return open_image_file(resolve(value.strip(), root))
    raise ImageProblem("missing_image", f"{where}: no image (got {type(value).__name__} {str(value)[:80]!r})")


def resolve(path: str, root: Path | None) -> Path:
    """``path`` under ``root`` unless it is absolute (or there is no root)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or root is None else root / p


def _rgb(image: PIL.Image.Image, where: str) -> PIL.Image.Image:
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except Exception as exc:
        raise ImageProblem(
            "undecodable_image", f"{where}: cannot convert {image.mode} to RGB: {exc}"
        ) from exc
