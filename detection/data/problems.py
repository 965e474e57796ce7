"""What the format readers share: the ``on_error`` policy, problem records, box checks, image look-up.

Every reader builds one ``Problems`` for its read. A problem (a bad line, a bad box, a missing image)
has a kind (``KINDS``) and the policy of its kind says what happens: ``error`` raises a
``DetectionError`` naming the file, line or field; ``drop`` skips the entry and counts it in the
report; ``warn`` keeps it and lists it in the report; ``clip`` (``outside_image`` only) clips the box
to its image. ``on_error`` (``raise`` -> ``error``, ``skip`` -> ``drop``) is the default of the kinds
that make an entry unusable; the others default to ``warn``: nothing is dropped silently.

Boxes are checked in the canonical table's coordinates (0-based continuous corners, ``xmax``
exclusive): a box must have a positive area and lie inside ``[0, width] x [0, height]``. A box that
sticks out by at most ``TOLERANCE`` pixels (a rounding or 0-/1-based slip) is clipped and counted in
the report as ``clipped_boxes``; one that sticks out further is a problem.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from detection.data.images import IMAGE_SUFFIXES, display_path
from detection.errors import DetectionError

log = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")
ACTIONS = ("error", "drop", "warn", "clip")
TOLERANCE = 1.0
SKIP_HINT = "or set on_error: skip (or convert.policy) to skip it and count it in the report"

# Problem kind -> what it is. The first group makes an entry unusable (default: ``on_error``).
KINDS: dict[str, str] = {
    "malformed": "a line, field or file that cannot be parsed",
    "zero_area": "a box of zero or negative width or height",
    "outside_image": "a box (partly) outside its image",
    "unknown_class": "a class that is not in the dataset config",
    "image_missing": "an annotation whose image file does not exist",
    "image_unreadable": "an image that is empty, truncated or not an image",
    "size_mismatch": "an image of another size than the annotation says",
    "image_without_annotation": "an image file that no annotation names",
    "duplicate_image": "two image files with the same bytes",
    "duplicate_box": "the same box and class twice in one image",
}
WARN_KINDS = ("image_without_annotation", "duplicate_image", "duplicate_box")

Box = tuple[float, float, float, float]


class Problems:
    """The problems of one read: raise the first (``on_error="raise"``) or record them all (``"skip"``)."""

    def __init__(self, on_error: str, policy: Mapping[str, str] | None = None) -> None:
        if on_error not in ON_ERROR:
            raise DetectionError(
                f"on_error must be one of {list(ON_ERROR)}, got {on_error!r}",
                hint="set convert.on_error in params.yaml to 'raise' or 'skip'",
            )
        self.on_error = on_error
        self.policy = check_policy(policy or {})
        self.items: list[dict[str, str]] = []
        self.clipped = 0

    def action(self, kind: str) -> str:
        """What a problem of ``kind`` does: ``error``, ``drop``, ``warn`` or ``clip``."""
        if kind in self.policy:
            return self.policy[kind]
        if kind in WARN_KINDS:
            return "warn"
        return "error" if self.on_error == "raise" else "drop"

    def add(self, where: str, problem: str, hint: str | None = None, kind: str = "malformed") -> None:
        """Raise, or record ``problem`` found at ``where`` (``file:line`` or ``file: field``) under its kind's policy."""
        action = self.action(kind)
        if action == "error":
            raise DetectionError(f"{where}: {problem}", hint=f"{hint or 'fix or remove that entry'}, {SKIP_HINT}")
        self.items.append({"where": where, "problem": problem, "kind": kind, "action": "kept" if action == "warn" else "dropped"})
        log.debug("%s %s: %s", kind, where, problem)

    def box(self, where: str, box: Box, width: int, height: int, shown: str) -> Box | None:
        """Check a table-coordinate box against its image; return it (clipped if need be) or ``None``.

        ``shown`` is the box as the source file wrote it, for the message.
        """
        xmin, ymin, xmax, ymax = box
        if not xmax > xmin or not ymax > ymin:
            self.add(where, f"zero or negative area box ({shown})", kind="zero_area")
            return None
        clip = self.action("outside_image") == "clip"
        if not clip and (xmin < -TOLERANCE or ymin < -TOLERANCE or xmax > width + TOLERANCE or ymax > height + TOLERANCE):
            self.add(where, f"box ({shown}) lies outside the {width}x{height} image", kind="outside_image")
            return None
        clipped = (max(xmin, 0.0), max(ymin, 0.0), min(xmax, float(width)), min(ymax, float(height)))
        if clipped != (xmin, ymin, xmax, ymax):
            if not clipped[2] > clipped[0] or not clipped[3] > clipped[1]:
                self.add(where, f"box ({shown}) lies outside the {width}x{height} image", kind="outside_image" if not clip else "zero_area")
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
            kind="unknown_class",
        )
        return False

    def report(self) -> dict[str, object]:
        counts: dict[str, int] = {}
        for item in self.items:
            counts[item["kind"]] = counts.get(item["kind"], 0) + 1
        skipped = sum(item["action"] == "dropped" for item in self.items)
        return {"clipped_boxes": self.clipped, "skipped": skipped, "warnings": len(self.items) - skipped,
                "problem_counts": counts, "problems": list(self.items)}  # fmt: skip


    def log_summary(self, source: Path | str) -> None:
        if self.items:
            first = self.items[0]
            log.warning("%s: skipped %d problem(s), e.g. %s: %s", source, len(self.items), first["where"], first["problem"])
        if self.clipped:
            log.info("%s: clipped %d box(es) that stuck out of their image by <= %g px", source, self.clipped, TOLERANCE)


def check_policy(policy: Mapping[str, str]) -> dict[str, str]:
    """``policy`` checked: known kinds, known actions (``clip`` only for ``outside_image``)."""
    for kind, action in policy.items():
        if kind not in KINDS:
            raise DetectionError(f"convert.policy: unknown problem kind {kind!r}", hint=f"use some of {sorted(KINDS)}")
        allowed = ACTIONS if kind == "outside_image" else ACTIONS[:3]
        if action not in allowed:
            raise DetectionError(f"convert.policy.{kind}: unknown action {action!r}", hint=f"use one of {list(allowed)}")
    return dict(policy)


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


def bad_name(path: Path, problems: Problems) -> bool:
    """Whether ``path``'s name is not valid UTF-8 (then recorded as a problem: no format can write it)."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        problems.add(display_path(path), "file name is not valid UTF-8 (annotation formats cannot name it)",
                     hint="rename the file (e.g. `convmv -f latin1 -t utf8`)")  # fmt: skip
        return True
    return False


def images_by_stem(folder: Path, problems: Problems | None = None) -> dict[str, list[Path]]:
    """The image files directly in ``folder``, grouped by stem, each group in ``IMAGE_SUFFIXES`` order.

    With ``problems``, a file whose name is not valid UTF-8 is a problem and left out.
    """
    out: dict[str, list[Path]] = {}
    if not folder.is_dir():
        return out
    rank = {ext: i for i, ext in enumerate(IMAGE_SUFFIXES)}
    with os.scandir(folder) as entries:  # d_type: no stat per file
        files = sorted(e.name for e in entries if os.path.splitext(e.name)[1].lower() in rank and e.is_file())
    for path in (folder / name for name in files):
        if problems is not None and bad_name(path, problems):
            continue
        out.setdefault(path.stem, []).append(path)
    for group in out.values():
        group.sort(key=lambda p: (rank[p.suffix.lower()], p.name))
    return out


def resolve_image(folder: Path, name: str, by_stem: dict[str, list[Path]]) -> Path | None:
    """The file ``folder/name``, else the image with the same stem (``.ppm`` named, ``.jpg`` present)."""
    stem = os.path.splitext(name)[0] if "/" not in name else Path(name).stem
    for path in by_stem.get(stem, ()):
        if path.name == name:  # listed by the folder scan: no stat needed
            return path
    exact = folder / name
    if exact.is_file():
        return exact
    group = by_stem.get(stem)
    return group[0] if group else None


def image_size(path: Path, problems: Problems | None = None) -> tuple[int, int] | None:
    """``(width, height)`` from the image header (no full decode).

    An unreadable image raises a ``DetectionError``, or with ``problems`` is one problem and ``None``.
    """
    try:
        with Image.open(path) as img:
            return int(img.size[0]), int(img.size[1])
    except FileNotFoundError:
        why, hint, kind = "image file not found", "put the image there, or remove its annotation", "image_missing"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        why, hint, kind = f"not a readable image ({exc})", "re-fetch the data set or delete that file", "image_unreadable"
    if problems is None:
        raise DetectionError(f"{display_path(path)}: {why}", hint=hint) from None
    problems.add(display_path(path), why, hint=hint, kind=kind)
    return None
