"""What the writers share: putting the images beside a written data set, so that it is complete.

A VOC, YOLO or kpjson folder that ``convert`` writes must open in the next ``convert`` or in a
labelling tool, so its images folder holds the images: relative symbolic links to the source files
(``link``, the default: no copy of the bytes), copies (``copy``), or nothing (``none``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from detection.errors import DetectionError

IMAGE_MODES = ("link", "copy", "none")


def place_images(
    names: Iterable[str], image_root: Path | None, dest: Path, mode: str = "link", final: Path | None = None
) -> dict[str, str]:
    """Put each image ``image_root/name`` into the folder ``dest`` (by its file name); return name -> new file name.

    ``dest`` is created; ``final`` is where it will lie once renamed (links are relative to it); a
    missing source image raises (the written data set would not be complete).
    """
    final = Path(final or dest)
    final = final.parent.resolve() / final.name
    if mode not in IMAGE_MODES:
        raise DetectionError(f"unknown image mode {mode!r}", hint=f"use one of {list(IMAGE_MODES)}")
    dest.mkdir(parents=True, exist_ok=True)
    placed: dict[str, str] = {}
    for name in dict.fromkeys(names):
        target = dest / Path(name).name
        placed[name] = target.name
        if mode == "none" or image_root is None:
            continue
        source = (Path(image_root) / name).resolve()
        if not source.is_file():
            raise DetectionError(f"cannot write the data set's images: {source} not found",
                                 hint="check the images root (report.json: image_root), or write with images: none")  # fmt: skip
        if target.exists() or target.is_symlink():
            target.unlink()
        if mode == "copy":
            shutil.copy2(source, target)
        else:
            os.symlink(os.path.relpath(source, final), target)
    return placed
