"""Pascal VOC: ``Annotations/*.xml`` (one per image) + ``JPEGImages/``, read into and written from the table.

VOC boxes are 1-based inclusive pixel indices; the canonical table stores 0-based continuous corners,
so on read ``xmin = VOC xmin - 1``, ``ymin = VOC ymin - 1``, ``xmax = VOC xmax``, ``ymax = VOC ymax``,
and on write the inverse (rounded to whole pixels). A box with ``xmax <= xmin`` or ``ymax <= ymin`` in
the file is a zero/negative-area annotation (what a tool writes for a click without a drag) and is a
problem. ``difficult`` is kept. XML is parsed without entity expansion or network access.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from lxml import etree

from detection.data.formats.common import place_images
from detection.data.images import display_path
from detection.data.problems import (
    Problems,
    bad_name,
    image_size,
    images_by_stem,
    resolve_image,
)
from detection.data.table import (
    BOX_COLUMNS,
    check_unique_stems,
    empty_table,
    image_rows,
    normalize,
    pixel,
    summary,
)
from detection.errors import DetectionError
from detection.io import atomic_path

log = logging.getLogger(__name__)

LAYOUT_HINT = "a VOC folder holds Annotations/*.xml and JPEGImages/"


ANNOTATION_DIRS = ("Annotations", "annotations", "Annotation", "annotation", "annots", "Annots", "xml", "labels")
IMAGE_DIRS = ("JPEGImages", "images", "Images", "imgs", "jpegimages", "JPEGImages")


_local = threading.local()


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)


def layout(root: Path, annotations_dir: str | None = None, images_dir: str | None = None) -> tuple[Path, str, str]:
    """``(folder, annotations folder name, images folder name)`` of a VOC data set under ``root``.

    The names are the given ones, else the first of ``ANNOTATION_DIRS`` / ``IMAGE_DIRS`` present (in
    ``root`` or its only subfolder that has one); XML files directly in ``root`` are read with the
    images beside them (``"."``).
    """
    root = Path(root)
    if not root.exists():
        raise DetectionError(f"VOC folder not found: {display_path(root)}", hint="check the path, or run `detection fetch` first")
    if root.is_file():
        root = root.parent.parent if root.suffix == ".xml" else root.parent
    names = (annotations_dir,) if annotations_dir else ANNOTATION_DIRS
    for folder in [root, *sorted(d for d in root.iterdir() if d.is_dir())]:
        ann = next((n for n in names if (folder / n).is_dir() and any((folder / n).glob("*.xml"))), None)
        if ann is not None:
            break
    else:
        if annotations_dir is None and any(root.glob("*.xml")):
            folder, ann = root, "."
        else:
            raise DetectionError(f"{display_path(root)}: no folder of .xml files ({'/'.join(names)})",
                                 hint=f"{LAYOUT_HINT}; name other folders with --annotations-dir / --images-dir")  # fmt: skip
    if images_dir:
        img = images_dir
    else:
        img = next((n for n in IMAGE_DIRS if (folder / n).is_dir()), ann)
    return folder, ann, img


def read_voc(
    root: Path, class_names: Sequence[str] | None = None, on_error: str = "raise", *,
    annotations_dir: str | None = None, images_dir: str | None = None, policy: Mapping[str, str] | None = None,
    check_size: bool = True,
) -> tuple[pd.DataFrame, dict[str, object]]:  # fmt: skip
    """Read a VOC folder into the canonical table and a report.

    ``image`` paths are relative to ``root`` (``JPEGImages/<filename>``). The folders may also be named
    ``annotations``/``annots`` and ``images`` (see ``layout``). Each XML's image must exist in the images
    folder (by ``<filename>``, else by the XML's stem with any image extension); the image header gives
    the size when ``<size>`` is absent or zero, and must agree with it otherwise. An XML without
    ``<object>`` gives an image without a box. ``difficult`` and ``truncated`` are kept. Problems raise
    a ``DetectionError`` naming the XML file, line and field, or are skipped and listed in the report
    (a bad object skips that box, a bad file skips that image). ``ImageSets/Main/*.txt`` lists are
    reported under ``image_sets`` (the split stage reads them as explicit lists). ``check_size=False``
    trusts a non-zero ``<size>`` without opening the image (``convert`` does: its dataset check
    decodes every image and compares the size then).
    """
    problems = Problems(on_error, policy)
    root = Path(root)
    folder, ann_dir, img_dir = layout(root, annotations_dir, images_dir)
    base = root if root.is_dir() else (root.parent.parent if root.suffix == ".xml" else root.parent)
    prefix = folder.relative_to(base)
    xml_dir = folder / ann_dir
    xmls = [xml_dir / n for n in sorted(os.listdir(xml_dir)) if n.endswith(".xml")]
    by_stem = images_by_stem(folder / img_dir, problems)
    known = None if class_names is None else set(class_names)
    seen: dict[str, Path] = {}
    rows: list[dict[str, object]] = []
    substituted = 0
    image_prefix = (prefix / img_dir / "x").as_posix()[:-1]
    image_dir = folder / img_dir
    for xml in xmls:
        if bad_name(xml, problems):
            continue
        found = _image_of(xml, _parse(xml), image_dir, by_stem, problems, check_size)
        if found is None:
            continue
        tree, path, width, height = found
        image = f"{image_prefix}{path.name}"
        if image in seen:
            problems.add(display_path(xml), f"names the image {display_path(Path(path.name))} that {display_path(Path(seen[image].name))} names too")
            continue
        seen[image] = xml
        substituted += path.name != (tree.findtext("filename") or "").strip()
        shown = display_path(xml)
        boxes = [b for obj in tree.iter("object") if (b := _object(obj, shown, width, height, known, problems))]
        rows += image_rows({"image": image, "width": width, "height": height}, boxes)
    if substituted:
        log.info("%s: %d XML file(s) name an image absent from %s/; used the image with the XML's stem", folder, substituted, img_dir)
    df = normalize(pd.DataFrame(rows)) if rows else empty_table()
    problems.log_summary(folder)
    sets = {p.stem: str(p) for p in sorted((folder / "ImageSets" / "Main").glob("*.txt")) if "_" not in p.stem}
    report = {"format": "voc", "source": str(root), "annotations": str(folder / ann_dir), "image_root": str(base),
              "images_dir": str(folder / img_dir), "image_sets": sets, **summary(df),
              "extension_substitutions": substituted, **problems.report()}  # fmt: skip
    return df, report


def _parse(xml: Path) -> etree._ElementTree | etree.XMLSyntaxError:
    """``xml`` parsed (safe parser, one per thread), or its syntax error. From bytes, not a path: lxml
    cannot encode a file name that is not UTF-8."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = _parser()
    try:
        return etree.fromstring(xml.read_bytes(), parser).getroottree()
    except etree.XMLSyntaxError as exc:
        return exc


def _image_of(
    xml: Path, parsed: etree._ElementTree | etree.XMLSyntaxError | None, images: Path, by_stem: dict[str, list[Path]],
    problems: Problems, check_size: bool = True,
) -> tuple[etree._Element, Path, int, int] | None:
    """Parse ``xml``; return its root, its image file and size, or ``None`` (the problem recorded)."""
    shown = display_path(xml)
    doc = parsed if parsed is not None else _parse(xml)
    if isinstance(doc, etree.XMLSyntaxError):
        problems.add(f"{shown}:{doc.lineno}", f"malformed XML ({doc.msg})", hint="fix or delete that file")
        return None
    dtd = doc.docinfo.internalDTD
    if dtd is not None and (list(dtd.iterentities()) or dtd.external_id or dtd.system_url):
        problems.add(f"{shown}:1", "XML declares entities (a DTD with <!ENTITY>): refused, never expanded (XXE / billion laughs)",
                     hint="annotation XML needs no DTD; remove the <!DOCTYPE ...> block")  # fmt: skip
        return None
    tree = doc.getroot()
    if tree.tag != "annotation":
        problems.add(f"{shown}:{tree.sourceline}", f"root element is <{tree.tag}>, not <annotation>", hint=LAYOUT_HINT)
        return None
    name = (tree.findtext("filename") or "").strip() or xml.stem
    base = name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    path = resolve_image(images, base, by_stem) or resolve_image(images, xml.stem, by_stem)
    if path is None:
        problems.add(f"{shown}: <filename>", f"image {name} not found in {display_path(images)}",
                     hint=f"put the image in {images.name}/, or delete that XML file", kind="image_missing")  # fmt: skip
        return None
    declared = []
    for field in ("width", "height"):
        text = (tree.findtext(f"size/{field}") or "").strip()
        try:
            declared.append(int(float(text)) if text else 0)
        except ValueError:
            problems.add(f"{shown}: <size>/<{field}>", f"not a number: {text!r}")
            return None
    if not check_size and min(declared) > 0:  # validate.check_dataset compares it with the decoded image
        return tree, path, declared[0], declared[1]
    size = image_size(path, problems)
    if size is None:
        return None
    if declared != [0, 0] and tuple(declared) != size:
        problems.add(f"{shown}: <size>", f"says {declared[0]}x{declared[1]} but the image {path.name} is {size[0]}x{size[1]}",
                     hint="fix <size> (or the image: a rotated photo?), or delete that XML file", kind="size_mismatch")  # fmt: skip
        return None
    return tree, path, size[0], size[1]


def _object(
    obj: etree._Element, xml: str, width: int, height: int, known: set[str] | None, problems: Problems
) -> dict[str, object] | None:
    """One ``<object>`` as a table row's box fields, or ``None`` (the problem recorded); ``xml``: the file as shown."""
    fields = {child.tag: child for child in obj if isinstance(child.tag, str)}
    label = ((fields["name"].text or "") if "name" in fields else "").strip()
    if not label:
        problems.add(f"{xml}:{obj.sourceline}", "missing field <object>/<name>", hint="every <object> needs a <name>")
        return None
    bndbox = fields.get("bndbox")
    corners = {c.tag: (c.text or "").strip() for c in bndbox if isinstance(c.tag, str)} if bndbox is not None else {}
    values = []
    for corner in BOX_COLUMNS:
        text = corners.get(corner, "")
        if not text:
            problems.add(f"{xml}:{obj.sourceline}", f"missing field <object>/<bndbox>/<{corner}>",
                         hint="every <object> needs <bndbox> with xmin, ymin, xmax, ymax")  # fmt: skip
            return None
        try:
            values.append(float(text))
        except ValueError:
            problems.add(f"{xml}:{obj.sourceline}", f"field <bndbox>/<{corner}> is not a number: {text!r}")
            return None
    flags = {}
    for flag in ("difficult", "truncated"):
        text = ((fields[flag].text or "0") if flag in fields else "0").strip()
        if text not in ("0", "1"):
            problems.add(f"{xml}:{obj.sourceline}", f"field <object>/<{flag}> must be 0 or 1, got {text!r}")
            return None
        flags[flag] = int(text)
    if known is not None and not problems.label(f"{xml}:{obj.sourceline}", label, known):
        return None
    xmin, ymin, xmax, ymax = values
    if 1 <= xmin < xmax <= width and 1 <= ymin < ymax <= height:  # the common case: inside, positive area
        return {"xmin": xmin - 1, "ymin": ymin - 1, "xmax": xmax, "ymax": ymax, "label": label, **flags}
    where = f"{xml}:{obj.sourceline}"
    shown = f"xmin={_shown(xmin)} ymin={_shown(ymin)} xmax={_shown(xmax)} ymax={_shown(ymax)}"
    if xmax <= xmin or ymax <= ymin:
        problems.add(where, f"zero or negative area box ({shown}) of {label!r}", kind="zero_area")
        return None
    box = problems.box(where, (xmin - 1, ymin - 1, xmax, ymax), width, height, shown)
    if box is None:
        return None
    return dict(zip(BOX_COLUMNS, box, strict=True)) | {"label": label, **flags}


def _shown(value: float) -> str:
    """A coordinate as VOC writes it: an integer when it is one."""
    return str(int(value)) if float(value).is_integer() else str(value)


def write_voc(df: pd.DataFrame, dst_dir: Path, image_root: Path | None = None, images: str = "link") -> Path:
    """Write one VOC XML per image into ``dst_dir/Annotations/`` (atomically, as a whole); return that folder.

    Boxes become 1-based inclusive indices (``VOC xmin = round(xmin) + 1``, ``VOC xmax = round(xmax)``);
    an image without a box gets an XML without ``<object>``. ``<filename>`` is the image's name and
    ``<path>`` ``JPEGImages/<filename>`` (where it is in the written folder). With ``image_root``, ``dst_dir/JPEGImages/`` gets the images
    (``images``: link, copy or none; see ``formats.common.place_images``), so the folder reads back.
    """
    groups: dict[str, list[dict[str, object]]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for row in normalize(df).to_dict("records"):  # plain records: per-image pandas slicing is slow
        groups.setdefault(row["image"], [])
        sizes.setdefault(row["image"], (int(row["width"]), int(row["height"])))
        if row["label"] and not math.isnan(row["xmin"]):
            groups[row["image"]].append(row)
    check_unique_stems(groups, "VOC", ".xml")
    thin = 0
    out = Path(dst_dir) / "Annotations"
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for image, boxes in groups.items():
            xml, n = _to_xml(image, *sizes[image], boxes)
            thin += n
            (tmp / f"{Path(image).stem}.xml").write_bytes(etree.tostring(xml, pretty_print=True, encoding="utf-8"))
    if thin:
        log.warning("write_voc: %d box(es) are at most 1 px wide or high; reading them back reports zero area", thin)
    if image_root is not None and images != "none":
        with atomic_path(Path(dst_dir) / "JPEGImages") as tmp:
            place_images(groups, image_root, tmp, images, final=Path(dst_dir) / "JPEGImages")
    log.info("wrote %d VOC XML files -> %s", len(groups), out)
    return out


def _to_xml(image: str, width: int, height: int, boxes: list[dict[str, object]]) -> tuple[etree._Element, int]:
    root = etree.Element("annotation")
    path = Path(image)
    for tag, text in (("folder", "JPEGImages"), ("filename", path.name), ("path", f"JPEGImages/{path.name}")):
        etree.SubElement(root, tag).text = text
    etree.SubElement(etree.SubElement(root, "source"), "database").text = "detection"
    size = etree.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        etree.SubElement(size, tag).text = str(value)
    etree.SubElement(root, "segmented").text = "0"
    thin = 0
    for row in boxes:
        obj = etree.SubElement(root, "object")
        etree.SubElement(obj, "name").text = str(row["label"])
        etree.SubElement(obj, "pose").text = "Unspecified"
        etree.SubElement(obj, "truncated").text = str(row["truncated"])
        etree.SubElement(obj, "difficult").text = str(row["difficult"])
        box = etree.SubElement(obj, "bndbox")
        corners = (pixel(row["xmin"]) + 1, pixel(row["ymin"]) + 1, pixel(row["xmax"]), pixel(row["ymax"]))
        thin += corners[2] <= corners[0] or corners[3] <= corners[1]
        for tag, value in zip(BOX_COLUMNS, corners, strict=True):
            etree.SubElement(box, tag).text = str(value)
    return root, thin
