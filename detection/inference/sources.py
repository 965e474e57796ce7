"""What ``detection predict SOURCE`` reads: an image, a folder (recursive), a glob, a list file, or URLs.

``list_sources(spec)`` turns the user's SOURCE into an ordered list of items (a ``Path`` or an
``http(s)`` URL string) plus the root that output names are made relative to; ``read_source(item)``
decodes one item as RGB, or raises a ``DetectionError`` naming it and the reason (missing, empty,
truncated, not an image, download failed), which ``predict`` reports, counts and skips.

A list file is a text file (``.txt``, ``.csv``, ``.lst`` or any non-image file) with one path or URL
per line; blank lines and lines starting with ``#`` are ignored; relative paths are relative to the
list file's folder.
"""

from __future__ import annotations

import glob
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from detection.data.images import IMAGE_SUFFIXES, display_path, read_image_rgb
from detection.errors import DetectionError

Item = Path | str  # a local file, or an http(s) URL
URL_TIMEOUT_S = 30.0


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _walk(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively (hidden folders skipped), sorted by their bytes."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in files if _is_image(Path(f)) and not f.startswith(".")]
    return sorted(found, key=os.fsencode)


def _list_file(path: Path) -> list[Item]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DetectionError(f"{display_path(path)}: not a text list of images (not UTF-8)", hint="pass an image, a folder, a glob, or a text file with one path or URL per line") from None
    items: list[Item] = []
    for line in (raw.strip() for raw in lines):
        if line and not line.startswith("#"):
            items.append(line if is_url(line) else path.parent / line)
    if not items:
        raise DetectionError(f"{display_path(path)}: the list file names no image", hint="write one path or URL per line")
    return items


def list_sources(spec: str | Path) -> tuple[list[Item], Path | None]:
    """``(items, root)`` for SOURCE ``spec``: ``root`` is the folder output names are relative to
    (the folder, the glob's fixed part), or None when items are named by their file name."""
    text = str(spec)
    if is_url(text):
        return [text], None
    path = Path(spec)
    if path.is_dir():
        images = _walk(path)
        if not images:
            raise DetectionError(f"no images in folder {display_path(path)} (looked recursively for {', '.join(IMAGE_SUFFIXES)})", hint="pass a folder that holds images")
        return list(images), path
    if path.is_file():
        return ([path], None) if _is_image(path) else (_list_file(path), None)
    if glob.has_magic(text):
        matches = sorted((Path(p) for p in glob.glob(text, recursive=True) if _is_image(Path(p)) and Path(p).is_file()), key=os.fsencode)
        if not matches:
            raise DetectionError(f"no images match {text!r}", hint=f"the pattern must match files ending in {', '.join(IMAGE_SUFFIXES)}; quote it so that the shell does not expand it")
        fixed = Path(text.split("*")[0].split("?")[0].split("[")[0])
        return list(matches), fixed if fixed.is_dir() else fixed.parent
    raise DetectionError(f"image, folder or list file not found: {display_path(path)}", hint="check the path (SOURCE may be an image, a folder, a glob, a list file or a URL)")


def item_name(item: Item, root: Path | None) -> str:
    """How an item is shown in outputs: its path relative to ``root`` (or as given), printable."""
    if isinstance(item, str):
        return item
    if root is not None:
        try:
            return display_path(item.relative_to(root))
        except ValueError:
            pass
    return display_path(item)


def read_source(item: Item) -> np.ndarray:
    """The RGB uint8 image of a path or URL; a DetectionError naming it and the reason otherwise."""
    if not isinstance(item, str):
        if not _is_image(item):
            raise DetectionError(f"cannot read image {display_path(item)}", hint=f"not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
        return read_image_rgb(item)
    try:
        with urllib.request.urlopen(item, timeout=URL_TIMEOUT_S) as response:  # noqa: S310 - http(s) only (is_url)
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", None) or exc
        raise DetectionError(f"cannot download image {item}", hint=f"{reason}") from None
    suffix = Path(urllib.request.urlparse(item).path).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="detection-url-") as tmp:
        local = Path(tmp) / f"image{suffix if suffix in IMAGE_SUFFIXES else '.img'}"
        local.write_bytes(data)
        try:
            return read_image_rgb(local)
        except DetectionError as exc:
            raise DetectionError(f"cannot read image {item}", hint=exc.hint) from None
