"""What the format readers share: the ``on_error`` policy, problem records, box checks, image look-up.

Every reader builds one ``Problems`` for its read. A problem (a bad line, a bad box, a missing image)
either raises a ``DetectionError`` naming the file, line or field (``on_error="raise"``) or is recorded
and counted in the reader's report (``on_error="skip"``): nothing is dropped silently.

Boxes are checked in the canonical table's coordinates (0-based continuous corners, ``xmax``
exclusive): a box must have a positive area and lie inside ``[0, width] x [0, height]``. A box that
sticks out by at most ``TOLERANCE`` pixels (a rounding or 0-/1-based slip) is clipped and counted in
the report as ``clipped_boxes``; one that sticks out further is a problem.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from detection.data.images import IMAGE_SUFFIXES
from detection.errors import DetectionError

log = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")
TOLERANCE = 1.0
SKIP_HINT = "or set on_error: skip to skip it and count it in the report"

Box = tuple[float, float, float, float]


class Problems:
    """The problems of one read: raise the first (``on_error="raise"``) or record them all (``"skip"``)."""

    def __init__(self, on_error: str) -> None:
        if on_error not in ON_ERROR:
            raise DetectionError(
                f"on_error must be one of {list(ON_ERROR)}, got {on_error!r}",
                hint="set convert.on_error in params.yaml to 'raise' or 'skip'",
            )
        self.on_error = on_error
        self.items: list[dict[str, str]] = []
        self.clipped = 0

    def add(self, where: str, problem: str, hint: str | None = None) -> None:
        """Raise, or record ``problem`` found at ``where`` (``file:line`` or ``file: field``)."""
        if self.on_error == "raise":
            raise DetectionError(f"{where}: {problem}", hint=f"{hint or 'fix or remove that entry'}, {SKIP_HINT}")
        self.items.append({"where": where, "problem": problem})
        log.debug("skipped %s: %s", where, problem)

    def box(self, where: str, box: Box, width: int, height: int, shown: str) -> Box | None:
        """Check a table-coordinate box against its image; return it (clipped if need be) or ``None``.

        ``shown`` is the box as the source file wrote it, for the message.
        """
        xmin, ymin, xmax, ymax = box
        if not xmax > xmin or not ymax > ymin:
            self.add(where, f"zero or negative area box ({shown})")
            return None
        if xmin < -TOLERANCE or ymin < -TOLERANCE or xmax > width + TOLERANCE or ymax > height + TOLERANCE:
            self.add(where, f"box ({shown}) lies outside the {width}x{height} image")
            return None
        clipped = (max(xmin, 0.0), max(ymin, 0.0), min(xmax, float(width)), min(ymax, float(height)))
        if clipped != (xmin, ymin, xmax, ymax):
            if not clipped[2] > clipped[0] or not clipped[3] > clipped[1]:
                self.add(where, f"box ({shown}) lies outside the {width}x{height} image")
                return None
            self.clipped += 1
        return clipped

    def label(self, where: str, label: str, known: set[str] | None) -> bool:
        """Whether ``label`` is allowed by the dataset config's classes (``known``; ``None``: any)."""
        if known is None or label in known:
            return True
        self.add(
            where,
            f"class {label!r} is not in the dataset config's classes {sorted(known)}",
            hint="add it to `names` in the dataset config",
        )
        return False

    def report(self) -> dict[str, object]:
        return {"clipped_boxes": self.clipped, "skipped": len(self.items), "problems": list(self.items)}

    def log_summary(self, source: Path | str) -> None:
        if self.items:
            first = self.items[0]
            log.warning("%s: skipped %d problem(s), e.g. %s: %s", source, len(self.items), first["where"], first["problem"])
        if self.clipped:
            log.info("%s: clipped %d box(es) that stuck out of their image by <= %g px", source, self.clipped, TOLERANCE)


def dataset_dir(root: Path, marker: str, kind: str, hint: str) -> Path:
    """The folder holding ``marker`` (``gt.txt``, ``Annotations``): ``root`` itself, or its only subfolder that has it.

    ``root`` may also be the marker file itself. Raise a ``DetectionError`` with ``hint`` if none is found.
    """
    if not root.exists():
        raise DetectionError(f"{kind} folder not found: {root}", hint="check the path, or run `detection fetch` first")
    if root.is_file():
        if root.name == marker:
            return root.parent
        raise DetectionError(f"{root}: expected a {kind} folder, got a file", hint=hint)
    if (root / marker).exists():
        return root
    found = [d for d in sorted(root.iterdir()) if d.is_dir() and (d / marker).exists()]
    if len(found) == 1:
        log.info("%s: using %s, the one subfolder holding %s", root, found[0].name, marker)
        return found[0]
    raise DetectionError(f"{root}: no {marker} found (nor in exactly one subfolder)", hint=hint)


def images_by_stem(folder: Path) -> dict[str, list[Path]]:
    """The image files directly in ``folder``, grouped by stem, each group in ``IMAGE_SUFFIXES`` order."""
    out: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return out
    rank = {ext: i for i, ext in enumerate(IMAGE_SUFFIXES)}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in rank and path.is_file():
            out.setdefault(path.stem, []).append(path)
    for group in out.values():
        group.sort(key=lambda p: (rank[p.suffix.lower()], p.name))
    return out


def resolve_image(folder: Path, name: str, by_stem: dict[str, list[Path]]) -> Path | None:
    """The file ``folder/name``, else the image with the same stem (``.ppm`` named, ``.jpg`` present)."""
    exact = folder / name
    if exact.is_file():
        return exact
    group = by_stem.get(Path(name).stem)
    return group[0] if group else None


def image_size(path: Path, problems: Problems | None = None) -> tuple[int, int] | None:
    """``(width, height)`` from the image header (no full decode).

    An unreadable image raises a ``DetectionError``, or with ``problems`` is one problem and ``None``.
    """
    try:
        with Image.open(path) as img:
            return int(img.size[0]), int(img.size[1])
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        why, hint = f"not a readable image ({exc})", "re-fetch the data set or delete that file"
        if problems is None:
            raise DetectionError(f"{path}: {why}", hint=hint) from None
        problems.add(str(path), why, hint=hint)
        return None
