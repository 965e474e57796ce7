"""The validation report's plots: boxes per class, box sizes and aspect, box centres, image sizes, samples."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from detection.data.images import decode_image
from detection.data.table import has_box, images
from detection.errors import DetectionError
from detection.viz.draw import draw_detections, write_image
from detection.viz.plots import _save, plt


def dataset_plots(df: pd.DataFrame, image_root: Path | None, out_dir: Path, samples: int = 9) -> dict[str, str]:
    """Write the PNG plots of ``df`` into ``out_dir``; return plot name -> path."""
    out_dir = Path(out_dir)
    boxed = df[has_box(df)]
    w, h = boxed["xmax"] - boxed["xmin"], boxed["ymax"] - boxed["ymin"]
    written: dict[str, str] = {}

    counts = boxed["label"].value_counts().sort_values()
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.22 * len(counts) + 1)))
    ax.barh([str(c) for c in counts.index], counts.to_numpy(), color="tab:blue")
    ax.set_xlabel("boxes")
    ax.set_title(f"boxes per class ({len(boxed)} boxes, {df['image'].nunique()} images)")
    written["boxes_per_class"] = str(_save(fig, out_dir / "boxes_per_class.png"))

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.scatter(w, h, s=4, alpha=0.5)
    ax1.set(xlabel="box width (px)", ylabel="box height (px)", title="box sizes")
    aspect = np.log2((w / h.replace(0, np.nan)).dropna().clip(1e-3, 1e3))
    ax2.hist(aspect, bins=40, color="tab:orange")
    ax2.set(xlabel="log2(width / height)", ylabel="boxes", title="box aspect ratio")
    written["box_sizes"] = str(_save(fig, out_dir / "box_sizes.png"))

    fig, ax = plt.subplots(figsize=(5, 4.2))
    cx = ((boxed["xmin"] + boxed["xmax"]) / 2 / boxed["width"]).clip(0, 1)
    cy = ((boxed["ymin"] + boxed["ymax"]) / 2 / boxed["height"]).clip(0, 1)
    hist = ax.hist2d(cx, cy, bins=24, range=[[0, 1], [0, 1]], cmap="viridis")
    ax.invert_yaxis()
    ax.set(xlabel="centre x / image width", ylabel="centre y / image height", title="box centres")
    fig.colorbar(hist[3], ax=ax, label="boxes")
    written["box_centers"] = str(_save(fig, out_dir / "box_centers.png"))

    sizes = images(df)
    fig, ax = plt.subplots(figsize=(5, 4))
    shape_counts = sizes.groupby(["width", "height"]).size()
    ax.scatter([k[0] for k in shape_counts.index], [k[1] for k in shape_counts.index], s=20 + 80 * shape_counts.to_numpy() / shape_counts.max())
    ax.set(xlabel="image width (px)", ylabel="image height (px)", title=f"image sizes ({len(shape_counts)} distinct)")
    written["image_sizes"] = str(_save(fig, out_dir / "image_sizes.png"))

    if image_root is not None and samples:
        grid = sample_grid(df, Path(image_root), samples)
        if grid is not None:
            written["samples"] = str(write_image(out_dir / "samples.png", grid))
    return written


def tile(tiles: list[np.ndarray], cell: int = 320) -> np.ndarray:
    """Images letterboxed into ``cell``-px squares, laid out in a near-square grid."""
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    grid = np.full((rows * cell, cols * cell, 3), 40, np.uint8)
    for i, img in enumerate(tiles):
        s = cell / max(img.shape[:2])
        small = cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))), interpolation=cv2.INTER_AREA)
        r, c = divmod(i, cols)
        grid[r * cell : r * cell + small.shape[0], c * cell : c * cell + small.shape[1]] = small
    return grid


def sample_grid(df: pd.DataFrame, image_root: Path, count: int) -> np.ndarray | None:
    """A grid of up to ``count`` images (spread over the table) with their boxes drawn."""
    names = list(images(df)["image"])
    picks = [names[int(i)] for i in np.linspace(0, len(names) - 1, min(count, len(names)))] if names else []
    tiles = []
    for name in dict.fromkeys(picks):
        try:
            img = decode_image(image_root / name)
        except DetectionError:
            continue
        rows = df[(df["image"] == name) & has_box(df)]
        tiles.append(draw_detections(img, rows[["xmin", "ymin", "xmax", "ymax"]].to_numpy(), list(rows["label"]), None))
    return tile(tiles) if tiles else None

