"""The built-in sample: a small synthetic traffic-sign set, generated offline in the official GTSDB layout.

``make_sample(dest)`` writes ``00000.ppm ...`` images and a ``gt.txt`` whose lines read
``00000.ppm;leftCol;topRow;rightCol;bottomRow;ClassID`` (inclusive pixel indices, GTSDB class ids),
plus ``sample.mp4``, a short video of signs drifting across a street-like background. The signs
differ by shape and colour (stop octagon, give-way triangle, priority diamond, no-entry disc,
keep-right disc), so a small detector trained from scratch learns them on a CPU in minutes.
Same seed, same bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detection.io import atomic_path

log = logging.getLogger(__name__)

# GTSDB class ids drawn by the sample (names in detection.data.formats.gtsdb.GTSDB_CLASSES).
SAMPLE_CLASS_IDS: tuple[int, ...] = (14, 13, 12, 17, 38)

RED = (40, 30, 200)  # BGR
WHITE = (235, 235, 235)
YELLOW = (30, 200, 240)
BLUE = (190, 90, 20)


@dataclass(frozen=True)
class Sign:
    class_id: int
    cx: float
    cy: float
    size: float  # side of the square the sign fits in


def _poly(cx: float, cy: float, r: float, n: int, phase: float) -> np.ndarray:
    angles = phase + np.arange(n) * 2 * np.pi / n
    pts = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1)
    return np.round(pts * 16).astype(np.int32)  # 4 fractional bits for cv2's shift=4


def _fill(img: np.ndarray, pts: np.ndarray, color: tuple[int, int, int]) -> None:
    cv2.fillPoly(img, [pts], color, lineType=cv2.LINE_AA, shift=4)


def _disc(img: np.ndarray, cx: float, cy: float, r: float, color: tuple[int, int, int]) -> None:
    cv2.circle(img, (round(cx * 16), round(cy * 16)), round(r * 16), color, -1, cv2.LINE_AA, shift=4)


def draw_sign(img: np.ndarray, sign: Sign) -> tuple[int, int, int, int]:
    """Draw ``sign`` on ``img`` (BGR, in place); return its inclusive box ``(left, top, right, bottom)``."""
    cx, cy, r = sign.cx, sign.cy, sign.size / 2
    pts: np.ndarray
    if sign.class_id == 14:  # stop: red octagon, white rim, white bar
        pts = _poly(cx, cy, r, 8, np.pi / 8)
        _fill(img, pts, WHITE)
        _fill(img, _poly(cx, cy, r * 0.86, 8, np.pi / 8), RED)
        cv2.rectangle(img, (int(cx - r * 0.55), int(cy - r * 0.12)), (int(cx + r * 0.55), int(cy + r * 0.12)), WHITE, -1)
    elif sign.class_id == 13:  # give way: inverted triangle, red rim, white inside
        pts = _poly(cx, cy + r * 0.15, r * 1.05, 3, np.pi / 2)
        _fill(img, pts, RED)
        _fill(img, _poly(cx, cy + r * 0.15, r * 0.55, 3, np.pi / 2), WHITE)
    elif sign.class_id == 12:  # priority road: diamond, white rim, yellow inside
        pts = _poly(cx, cy, r, 4, 0.0)
        _fill(img, pts, WHITE)
        _fill(img, _poly(cx, cy, r * 0.62, 4, 0.0), YELLOW)
    elif sign.class_id == 17:  # no entry: red disc, white horizontal bar
        pts = _poly(cx, cy, r, 32, 0.0)
        _disc(img, cx, cy, r, RED)
        cv2.rectangle(img, (int(cx - r * 0.65), int(cy - r * 0.16)), (int(cx + r * 0.65), int(cy + r * 0.16)), WHITE, -1)
    elif sign.class_id == 38:  # keep right: blue disc, white diagonal arrow
        pts = _poly(cx, cy, r, 32, 0.0)
        _disc(img, cx, cy, r, BLUE)
        a = r * 0.5
        cv2.arrowedLine(img, (int(cx - a), int(cy - a)), (int(cx + a), int(cy + a)), WHITE, max(1, int(r / 4)), cv2.LINE_AA, tipLength=0.45)
    else:
        raise ValueError(f"the sample draws no sign with GTSDB id {sign.class_id}")
    xy = pts.astype(np.float64) / 16
    h, w = img.shape[:2]
    left, top = max(0, int(np.floor(xy[:, 0].min()))), max(0, int(np.floor(xy[:, 1].min())))
    right, bottom = min(w - 1, int(np.ceil(xy[:, 0].max()))), min(h - 1, int(np.ceil(xy[:, 1].max())))
    return left, top, right, bottom


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A street-like background: sky gradient, buildings, trees, road, clutter and noise."""
    img = np.empty((height, width, 3), np.float32)
    horizon = int(height * rng.uniform(0.35, 0.6))
    sky_top, sky_bottom = rng.uniform(150, 230, 3), rng.uniform(170, 250, 3)
    t = np.linspace(0, 1, horizon)[:, None, None]
    img[:horizon] = sky_top * (1 - t) + sky_bottom * t
    img[horizon:] = rng.uniform(70, 120) + rng.normal(0, 4, (height - horizon, 1, 3))
    img = img.clip(0, 255).astype(np.uint8)
    for _ in range(rng.integers(3, 9)):  # buildings and trees
        x0 = int(rng.integers(0, width))
        bw, bh = int(rng.integers(width // 12, width // 4)), int(rng.integers(height // 8, horizon + 1))
        color = tuple(int(c) for c in (rng.uniform(40, 200, 3) if rng.random() < 0.6 else (rng.uniform(20, 70), rng.uniform(80, 150), rng.uniform(20, 70))))
        cv2.rectangle(img, (x0, horizon - bh), (x0 + bw, horizon + int(rng.integers(0, 8))), color, -1)
    for _ in range(rng.integers(2, 7)):  # clutter: poles, cars, blobs in muted colours
        color = tuple(int(c) for c in rng.uniform(30, 180, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(horizon // 2, height))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(10, 60)), y + int(rng.integers(6, 30))), color, -1)
        else:
            cv2.line(img, (x, y), (x + int(rng.integers(-4, 5)), y + int(rng.integers(20, 80))), color, int(rng.integers(1, 4)))
    cv2.line(img, (0, height - 1), (width // 2, horizon), (200, 200, 200), 1, cv2.LINE_AA)
    return img


def _place_signs(rng: np.random.Generator, width: int, height: int, count: int) -> list[Sign]:
    signs: list[Sign] = []
    lo, hi = max(12.0, min(width, height) * 0.09), max(16.0, min(width, height) * 0.3)
    for _ in range(count * 20):
        if len(signs) == count:
            break
        size = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        cx = rng.uniform(size / 2 + 1, width - size / 2 - 1)
        cy = rng.uniform(size / 2 + 1, height - size / 2 - 1)
        if all(abs(cx - s.cx) > (size + s.size) / 2 + 2 or abs(cy - s.cy) > (size + s.size) / 2 + 2 for s in signs):
            signs.append(Sign(int(rng.choice(SAMPLE_CLASS_IDS)), cx, cy, size))
    return signs


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Lighting, blur and sensor noise, so that the task is not trivially clean."""
    out = img.astype(np.float32) * rng.uniform(0.7, 1.2) + rng.uniform(-20, 20)
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (3, 3), 0)
    out += rng.normal(0, 3.0, out.shape)
    return out.clip(0, 255).astype(np.uint8)


def render_image(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[tuple[int, int, int, int, int]]]:
    """One sample image and its boxes ``(left, top, right, bottom, class_id)`` (inclusive)."""
    img = background(rng, width, height)
    count = int(rng.choice([0, 1, 1, 2, 2, 3, 4]))
    boxes = []
    for sign in _place_signs(rng, width, height, count):
        left, top, right, bottom = draw_sign(img, sign)
        boxes.append((left, top, right, bottom, sign.class_id))
    return _finish(rng, img), boxes


def write_video(path: Path, rng: np.random.Generator, width: int, height: int, frames: int, fps: float = 15.0) -> Path:
    """A short mp4 of signs drifting over a fixed background (for the infer-video stage)."""
    base = background(rng, width, height)
    signs = _place_signs(rng, width, height, 3)
    velocity = rng.uniform(-1.5, 1.5, (len(signs), 2))
    with atomic_path(path) as tmp:  # tmp keeps the .mp4 name, which OpenCV needs to pick the container
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write mp4 video to {tmp}")
        try:
            for f in range(frames):
                img = base.copy()
                for s, (vx, vy) in zip(signs, velocity, strict=True):
                    cx = float(np.clip(s.cx + vx * f, s.size / 2 + 1, width - s.size / 2 - 1))
                    cy = float(np.clip(s.cy + vy * f, s.size / 2 + 1, height - s.size / 2 - 1))
                    draw_sign(img, Sign(s.class_id, cx, cy, s.size))
                writer.write(_finish(np.random.default_rng(f), img))
        finally:
            writer.release()
    return path


def make_sample(dest: str | Path, images: int = 160, width: int = 320, height: int = 192, seed: int = 0, video_frames: int = 48) -> Path:
    """Write the sample (GTSDB layout) into ``dest``, atomically; return ``dest``."""
    dest = Path(dest)
    rng = np.random.default_rng(seed)
    lines: list[str] = []
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        for i in range(images):
            img, boxes = render_image(rng, width, height)
            name = f"{i:05d}.ppm"
            cv2.imwrite(str(tmp / name), img)
            lines += [f"{name};{l};{t};{r};{b};{c}" for l, t, r, b, c in boxes]
        (tmp / "gt.txt").write_text("\n".join(lines) + "\n", encoding="ascii")
        if video_frames:
            write_video(tmp / "sample.mp4", rng, width, height, video_frames)
        (tmp / "README.txt").write_text(
            f"Synthetic traffic-sign sample in GTSDB layout, made by detection.data.sample (seed={seed}).\n"
            f"{images} images {width}x{height}, {len(lines)} boxes, GTSDB class ids {list(SAMPLE_CLASS_IDS)}.\n",
            encoding="ascii",
        )
    log.info("sample: %d images, %d boxes -> %s", images, len(lines), dest)
    return dest
