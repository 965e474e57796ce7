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
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from lxml import etree

from detection.data.problems import Problems, dataset_dir, image_size, images_by_stem, resolve_image
from detection.data.table import BOX_COLUMNS, check_unique_stems, empty_table, image_rows, normalize, pixel, summary
from detection.errors import DetectionError
from detection.io import atomic_path

log = logging.getLogger(__name__)

LAYOUT_HINT = "a VOC folder holds Annotations/*.xml and JPEGImages/"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def read_voc(
    root: Path, class_names: Sequence[str] | None = None, on_error: str = "raise"
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Read a VOC folder into the canonical table and a report.

    ``image`` paths are relative to ``root`` (``JPEGImages/<filename>``). Each XML's image must exist in
    ``JPEGImages/`` (by ``<filename>``, else by the XML's stem with any image extension); the image
    header gives the size when ``<size>`` is absent or zero, and must agree with it otherwise. An XML
    without ``<object>`` gives an image without a box. Problems raise a ``DetectionError`` naming the
    XML file, line and field (``on_error="raise"``), or are skipped and listed in the report
    (``"skip"``: a bad object skips that box, a bad file skips that image).
    """
    problems = Problems(on_error)
    root = Path(root)
    folder = dataset_dir(root, "Annotations", "VOC", LAYOUT_HINT)
    prefix = folder.relative_to(root if root.is_dir() else root.parent)
    xmls = sorted((folder / "Annotations").glob("*.xml"))
    if not xmls:
        raise DetectionError(f"{folder / 'Annotations'}: no .xml file", hint=LAYOUT_HINT)
    by_stem = images_by_stem(folder / "JPEGImages")
    known = None if class_names is None else set(class_names)
    parser = _parser()
    seen: dict[str, Path] = {}
    rows: list[dict[str, object]] = []
    substituted = 0
    for xml in xmls:
        found = _image_of(xml, parser, folder, by_stem, problems)
        if found is None:
            continue
        tree, path, width, height = found
        image = (prefix / "JPEGImages" / path.name).as_posix()
        if image in seen:
            problems.add(str(xml), f"names the image {path.name} that {seen[image].name} names too")
            continue
        seen[image] = xml
        substituted += path.name != (tree.findtext("filename") or "").strip()
        boxes = [b for obj in tree.iter("object") if (b := _object(obj, xml, width, height, known, problems))]
        rows += image_rows({"image": image, "width": width, "height": height}, boxes)
    if substituted:
        log.info("%s: %d XML file(s) name an image absent from JPEGImages/; used the image with the XML's stem", folder, substituted)
    df = normalize(pd.DataFrame(rows)) if rows else empty_table()
    problems.log_summary(folder)
    report = {"format": "voc", "source": str(root), "annotations": str(folder / "Annotations"), **summary(df),
              "extension_substitutions": substituted, **problems.report()}  # fmt: skip
    return df, report


def _image_of(
    xml: Path, parser: etree.XMLParser, folder: Path, by_stem: dict[str, list[Path]], problems: Problems
) -> tuple[etree._Element, Path, int, int] | None:
    """Parse ``xml``; return its root, its image file and size, or ``None`` (the problem recorded)."""
    try:
        tree = etree.parse(str(xml), parser).getroot()
    except etree.XMLSyntaxError as exc:
        problems.add(f"{xml}:{exc.lineno}", f"malformed XML ({exc.msg})", hint="fix or delete that file")
        return None
    if tree.tag != "annotation":
        problems.add(f"{xml}:{tree.sourceline}", f"root element is <{tree.tag}>, not <annotation>", hint=LAYOUT_HINT)
        return None
    name = (tree.findtext("filename") or "").strip() or xml.stem
    path = resolve_image(folder / "JPEGImages", Path(name).name, by_stem) or resolve_image(folder / "JPEGImages", xml.stem, by_stem)
    if path is None:
        problems.add(f"{xml}: <filename>", f"image {name} not found in {folder / 'JPEGImages'}",
                     hint="put the image in JPEGImages/, or delete that XML file")  # fmt: skip
        return None
    size = image_size(path, problems)
    if size is None:
        return None
    declared = []
    for field in ("width", "height"):
        text = (tree.findtext(f"size/{field}") or "").strip()
        try:
            declared.append(int(float(text)) if text else 0)
        except ValueError:
            problems.add(f"{xml}: <size>/<{field}>", f"not a number: {text!r}")
            return None
    if declared != [0, 0] and tuple(declared) != size:
        problems.add(f"{xml}: <size>", f"says {declared[0]}x{declared[1]} but the image {path.name} is {size[0]}x{size[1]}",
                     hint="fix <size> (or the image: a rotated photo?), or delete that XML file")  # fmt: skip
        return None
    return tree, path, size[0], size[1]


def _object(
    obj: etree._Element, xml: Path, width: int, height: int, known: set[str] | None, problems: Problems
) -> dict[str, object] | None:
    """One ``<object>`` as a table row's box fields, or ``None`` (the problem recorded)."""
    where = f"{xml}:{obj.sourceline}"
    label = (obj.findtext("name") or "").strip()
    if not label:
        problems.add(where, "missing field <object>/<name>", hint="every <object> needs a <name>")
        return None
    values = []
    for corner in BOX_COLUMNS:
        text = (obj.findtext(f"bndbox/{corner}") or "").strip()
        if not text:
            problems.add(where, f"missing field <object>/<bndbox>/<{corner}>", hint="every <object> needs <bndbox> with xmin, ymin, xmax, ymax")
            return None
        try:
            values.append(float(text))
        except ValueError:
            problems.add(where, f"field <bndbox>/<{corner}> is not a number: {text!r}")
            return None
    difficult_text = (obj.findtext("difficult") or "0").strip()
    if difficult_text not in ("0", "1"):
        problems.add(where, f"field <object>/<difficult> must be 0 or 1, got {difficult_text!r}")
        return None
    if not problems.label(where, label, known):
        return None
    xmin, ymin, xmax, ymax = values
    shown = f"xmin={_shown(xmin)} ymin={_shown(ymin)} xmax={_shown(xmax)} ymax={_shown(ymax)}"
    if xmax <= xmin or ymax <= ymin:
        problems.add(where, f"zero or negative area box ({shown}) of {label!r}")
        return None
    box = problems.box(where, (xmin - 1, ymin - 1, xmax, ymax), width, height, shown)
    if box is None:
        return None
    return dict(zip(BOX_COLUMNS, box, strict=True)) | {"label": label, "difficult": int(difficult_text)}


def _shown(value: float) -> str:
    """A coordinate as VOC writes it: an integer when it is one."""
    return str(int(value)) if float(value).is_integer() else str(value)


def write_voc(df: pd.DataFrame, dst_dir: Path) -> Path:
    """Write one VOC XML per image into ``dst_dir/Annotations/`` (atomically, as a whole); return that folder.

    Boxes become 1-based inclusive indices (``VOC xmin = round(xmin) + 1``, ``VOC xmax = round(xmax)``);
    an image without a box gets an XML without ``<object>``. ``<filename>`` is the image's name and
    ``<path>`` its path in the table; the images themselves are not copied.
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
    log.info("wrote %d VOC XML files -> %s", len(groups), out)
    return out


def _to_xml(image: str, width: int, height: int, boxes: list[dict[str, object]]) -> tuple[etree._Element, int]:
    root = etree.Element("annotation")
    path = Path(image)
    for tag, text in (("folder", path.parent.name or "JPEGImages"), ("filename", path.name), ("path", image)):
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
        etree.SubElement(obj, "truncated").text = "0"
        etree.SubElement(obj, "difficult").text = str(row["difficult"])
        box = etree.SubElement(obj, "bndbox")
        corners = (pixel(row["xmin"]) + 1, pixel(row["ymin"]) + 1, pixel(row["xmax"]), pixel(row["ymax"]))
        thin += corners[2] <= corners[0] or corners[3] <= corners[1]
        for tag, value in zip(BOX_COLUMNS, corners, strict=True):
            etree.SubElement(box, tag).text = str(value)
    return root, thin
