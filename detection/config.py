"""Validated configuration: the per-stage sections of ``params.yaml`` and the dataset configs.

``params.yaml`` holds one section per stage (as DVC's example projects do); every CLI verb can read
its section from there, so a DVC stage and a hand-typed command run the same code with the same
values. Unknown keys are errors (a typo must not be silently ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detection.errors import DetectionError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class SampleParams(_Section):
    """The built-in synthetic sample (GTSDB layout)."""

    images: int = Field(160, ge=4, description="number of images")
    width: int = Field(320, ge=64)
    height: int = Field(192, ge=64)
    seed: int = 0
    video_frames: int = Field(48, ge=0, description="frames of the sample video (0: no video)")


class FetchParams(_Section):
    source: str = Field("sample", description="'sample', a local folder or archive, or an http(s) URL")
    sha256: str | None = Field(None, description="expected sha256 of a downloaded/local archive")
    dest: Path = Path("data/raw")
    sample: SampleParams = SampleParams()


Format = Literal["gtsdb", "voc", "coco", "csv", "yolo", "kpjson"]
ProblemAction = Literal["error", "drop", "warn", "clip"]


class ConvertParams(_Section):
    src: Path | None = Field(None, description="annotations/images folder; default: the dataset config's root")
    out: Path = Path("data/interim")
    format: Literal["gtsdb", "voc", "coco", "csv", "yolo", "kpjson", "auto"] | None = Field(None, description="source format (auto: detected); default: the dataset config's")
    on_error: Literal["raise", "skip"] = Field("raise", description="bad boxes: stop, or skip and count them")
    to: list[Format] = Field(["csv", "voc", "coco"], description="formats written")
    images: Literal["link", "copy", "none"] = Field("link", description="images beside written VOC/YOLO/kpjson folders")
    policy: dict[str, ProblemAction] = Field({}, description="problem kind -> error | drop | warn | clip (detection.data.problems.KINDS)")
    plots: bool = Field(True, description="write the validation report's PNG plots beside report.json")
    columns: dict[str, str] = Field({}, description="CSV: canonical column -> the source's column name")
    annotations_dir: str | None = Field(None, description="VOC: the XML folder's name when not a common one")
    images_dir: str | None = Field(None, description="VOC/COCO/CSV: the images folder (VOC: name; COCO/CSV: relative to the file)")


class SplitParams(_Section):
    annotations: Path = Path("data/interim/annotations.csv")
    out: Path = Path("data/processed")
    valid: float = Field(0.25, gt=0.0, lt=1.0)
    seed: int = 0
    mode: Literal["ratio", "lists", "gtsdb", "group"] = Field("ratio", description="ratio (stratified), lists (files of names), gtsdb (official 600/300), group (by regex)")
    train_list: Path | None = Field(None, description="mode lists: text file of the train images (names or stems, e.g. VOC ImageSets/Main/train.txt)")
    valid_list: Path | None = Field(None, description="mode lists: text file of the valid images")
    group: str | None = Field(None, description="mode group: regular expression on the image path; its first group (or match) names the scene")


class ModelParams(_Section):
    name: str = "fasterrcnn_tiny"
    weights: str = Field("none", description="'none', 'backbone' (ImageNet), 'default' (torchvision's COCO), 'auto' (pretrained if cached), or a .pt path")
    trainable_layers: int | None = Field(None, ge=0, le=5, description="backbone stages that train from pretrained weights (null: 3, as torchvision)")


class AugmentParams(_Section):
    """Training augmentation (albumentations, bbox-aware): each transform's probability and range.

    Boxes that a transform cuts are clipped; those left under ``min_area`` pixels or ``min_visibility``
    of their area are dropped; images without boxes train too. ``detection augment-preview`` shows it.
    """

    vflip: float = Field(0.0, ge=0, le=1, description="vertical-flip probability (horizontal: train.hflip)")
    affine: float = Field(0.5, ge=0, le=1, description="probability of the scale/translate/rotate transform")
    scale: tuple[float, float] = Field((0.8, 1.2), description="affine scale range")
    translate: float = Field(0.08, ge=0, le=0.5, description="affine shift, fraction of the image size")
    rotate: float = Field(0.0, ge=0, le=180, description="affine rotation range, +- degrees")
    crop: float = Field(0.0, ge=0, le=1, description="random-resized-crop probability (output: train.imgsz square)")
    crop_scale: tuple[float, float] = Field((0.5, 1.0), description="random-resized-crop area range")
    color: float = Field(0.7, ge=0, le=1, description="brightness/contrast jitter probability")
    brightness: float = Field(0.25, ge=0, le=1)
    contrast: float = Field(0.25, ge=0, le=1)
    hsv: float = Field(0.5, ge=0, le=1, description="hue/saturation/value jitter probability")
    hue: int = Field(5, ge=0, le=180)
    saturation: int = Field(20, ge=0, le=255)
    value: int = Field(20, ge=0, le=255)
    blur: float = Field(0.0, ge=0, le=1, description="Gaussian blur probability")
    noise: float = Field(0.0, ge=0, le=1, description="Gaussian noise probability")
    mosaic: float = Field(0.0, ge=0, le=1, description="mosaic probability (4 images in a 2x2 grid, output train.imgsz square)")
    min_area: float = Field(0.0, ge=0, description="boxes left smaller than this (pixels) are dropped")
    min_visibility: float = Field(0.4, ge=0, le=1, description="boxes left with less of their area visible are dropped")


class TrainParams(_Section):
    epochs: int = Field(12, ge=1)
    batch: int = Field(4, ge=1)
    imgsz: int = Field(320, ge=32, description="longest image side fed to the model")
    lr: float = Field(0.01, gt=0)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 50
    device: str = "auto"
    workers: int = 0
    seed: int = 0
    hflip: float = Field(0.0, ge=0.0, le=1.0, description="horizontal-flip probability (0 for signs)")
    augment: AugmentParams = AugmentParams()
    out: Path = Path("models")
    reports: Path = Path("reports/train")
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    nesterov: bool = False
    schedule: Literal["cosine", "multistep", "cosine_restarts", "onecycle", "constant"] = "cosine"
    lr_floor: float = Field(0.05, ge=0, le=1, description="final LR / lr (cosine schedules)")
    milestones: list[int] = Field([], description="multistep: epochs at which the LR is multiplied by gamma")
    gamma: float = Field(0.1, gt=0)
    restart_epochs: int = Field(5, ge=1, description="cosine_restarts: epochs per cycle")
    clip_grad: float = Field(0.0, ge=0, description="max gradient norm (0: no clipping)")
    accumulate: int = Field(1, ge=1, description="batches per optimizer step")
    ema: bool = False
    ema_decay: float = Field(0.9998, gt=0, lt=1)
    amp: Literal["auto", "on", "off"] = Field("auto", description="auto: fp16 on CUDA, fp32 elsewhere; on: bf16 on the CPU")
    monitor: str = Field("val_map", description="history column that picks best.pt and drives early stopping")
    patience: int = Field(0, ge=0, description="early stopping: epochs without improvement (0: off)")
    min_delta: float = Field(0.0, ge=0)
    save_every_iters: int = Field(0, ge=0, description="also write last.pt every N optimizer steps (0: per epoch only)")
    val_loss: bool = Field(True, description="compute the validation loss each epoch")
    group_aspect: bool = Field(True, description="batch images of like aspect ratio together")
    sync_bn: bool = False
    roi_batch: int | None = Field(None, ge=1, description="RoIs sampled per image for the box head (torchvision: 512); null: the model's")
    rpn_batch: int | None = Field(None, ge=1, description="anchors sampled per image for the RPN loss (torchvision: 256); null: the model's")
    rpn_post_nms: int | None = Field(None, ge=1, description="proposals kept per image in training (torchvision: 2000); null: the model's")
    speed: Literal["default", "fast"] = Field("default", description="lever preset: fast = roi_batch 128, rpn_post_nms 1000 (explicit values win)")
    channels_last: bool = Field(False, description="channels-last memory format for the convolutions")
    threaded_roi_align: bool = Field(True, description="multi-threaded CPU RoIAlign (results identical to torchvision's)")
    nproc: int = Field(1, ge=1, description="processes (devices) for DDP: >1 relaunches the train verb under torchrun")
    deterministic: bool = Field(False, description="CUDA deterministic algorithms (CPU runs are reproducible anyway)")
    dvclive: bool = Field(True, description="log metrics with dvclive under <reports>/dvclive")


class EvaluateParams(_Section):
    weights: Path = Path("models/best.pt")
    out: Path = Path("reports/evaluate")
    metrics: Path = Path("reports/metrics.json")
    score_threshold: float = Field(0.5, ge=0, le=1, description="threshold of the drawn sample predictions")
    samples: int = Field(4, ge=0, description="sample images drawn with predictions")
    device: str = "auto"


class ExportParams(_Section):
    weights: Path = Path("models/best.pt")
    out: Path = Path("models/model.onnx")
    report: Path = Path("reports/export.json")
    opset: int = 17
    check_images: int = Field(3, ge=1)
    box_atol: float = Field(0.05, gt=0, description="max abs difference of box corners, torch vs ONNX (pixels)")
    score_atol: float = Field(1e-3, gt=0, description="max abs difference of scores, torch vs ONNX")
    torchscript: bool = Field(False, description="also write a TorchScript file beside the .onnx (<stem>.torchscript.pt)")
    quantize: Literal["none", "int8"] = Field("none", description="int8: also write <stem>.int8.onnx (dynamic int8 MatMul/Gemm weights), checked by accuracy")
    int8_map_tol: float = Field(0.01, description="int8: max drop of mAP@0.5 on the valid split, fp32 vs int8 ONNX")
    int8_min_matched: float = Field(0.9, ge=0, le=1, description="int8: min fraction of confident detections (score >= 0.5) both graphs find on the check images")
    proposals: int | None = Field(None, ge=1, description="RPN proposals per image in the graph (two-stage models; null: the model's own), checked by mAP on valid")
    proposals_map_tol: float = Field(0.01, description="proposals: max drop of mAP@0.5 on the valid split, own count vs this one")


class VideoParams(_Section):
    source: str = Field("sample", description="a video file, or 'sample' for the fetched sample video")
    weights: Path = Path("models/model.onnx")
    out: Path = Path("reports/video")
    threshold: float = Field(0.5, ge=0, le=1)
    max_frames: int | None = None
    stride: int = Field(1, ge=1, description="run the model on every N-th frame (the others reuse its detections)")
    track: bool = Field(True, description="ByteTrack track ids in the video, detections.jsonl and tracks.csv")
    classes: list[str] | None = Field(None, description="keep only these class names (None: all)")
    model: str | None = Field(None, description="with weights: default, torchvision's COCO detector of this name")
    imgsz: int | None = Field(None, ge=32, description="longest side for a COCO detector (weights: default); default 640")
    proposals: int | None = Field(None, ge=1, description="RPN proposals per image of a two-stage .pt or COCO detector (null: the model's own)")


class Params(_Section):
    """The whole of ``params.yaml``."""

    data: Path = Field(Path("configs/datasets/sample.yaml"), description="dataset config")
    fetch: FetchParams = FetchParams()
    convert: ConvertParams = ConvertParams()
    split: SplitParams = SplitParams()
    model: ModelParams = ModelParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    export: ExportParams = ExportParams()
    video: VideoParams = VideoParams()


class DatasetConfig(_Section):
    """A dataset config (``configs/datasets/*.yaml``): its format, where it lives, its classes."""

    name: str
    format: Format
    names: list[str] = Field(description="class names, in label-id order (id 1 is names[0])")
    root: Path = Field(Path("data/raw"), description="images root: image paths in the tables are relative to it")
    train: Path = Field(Path("data/processed/train.csv"), description="canonical table of the train split")
    valid: Path = Field(Path("data/processed/valid.csv"), description="canonical table of the valid split")
    test: Path | None = Field(None, description="canonical table of a held-out test split (reported by evaluate, never used to pick best.pt)")
    source: str | None = None
    sha256: str | None = None
    keypoints: list[str] | None = Field(None, description="keypoint names, in the order of the table's keypoints (keypoint models; default: COCO person's when 17, else kp0..)")
    keypoint_flip: list[tuple[str | int, str | int]] | None = Field(None, description="pairs of keypoints (names or 0-based indices) that a flip swaps, e.g. [left_eye, right_eye]")
    keypoint_sigma: float | list[float] | None = Field(None, description="OKS sigma(s) of keypoint AP: one for all, or one per keypoint (default: COCO's when 17 COCO keypoints, else 0.07)")

    @field_validator("names")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must list at least one class")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate class names: {sorted({n for n in v if v.count(n) > 1})}")
        return v


def _format_validation(path: Path, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    return f"{path}: invalid config: " + "; ".join(parts)


def option_errors(exc: ValidationError, options: dict[str, str], source: str = "params.yaml") -> str:
    """One line for a validation error of option values: ``--epochs -1: must be >= 1``, per bad field.

    ``options`` maps ``section.field`` to the CLI option that set it (values not from an option are
    named as ``source``'s key). No pydantic wording, no URLs.
    """
    parts: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith(("literal[", "function-"))]
        key = ".".join(loc[:2]) if len(loc) >= 2 else ".".join(loc)
        if key in parts:
            continue
        value = err.get("input")
        msg = str(err["msg"]).replace("Value error, ", "")
        msg = msg.replace("Input should be '", "allowed: '", 1).replace("Input should be", "must be")
        for old, new in (("greater than or equal to", ">="), ("less than or equal to", "<="), ("greater than", ">"), ("less than", "<")):
            msg = msg.replace(old, new)
        name = options.get(key) or f"{source}: {key}"
        sub = ".".join(x for x in loc[2:] if not x.isdigit())  # a dict key (policy kind), not a list index
        parts[key] = f"{name} {sub + '=' if sub else ''}{value!r}: {msg}"
    return "invalid option value: " + "; ".join(parts.values())


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping safely; raise a ``DetectionError`` naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise DetectionError(f"config file not found: {path}", hint="check the path, or run from the project root")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DetectionError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DetectionError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate ``params.yaml`` (a missing file gives the defaults)."""
    path = Path(path)
    data = load_yaml(path) if path.exists() else {}
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        raise DetectionError(_format_validation(path, exc)) from None


def load_dataset_config(path: str | Path) -> DatasetConfig:
    """Load and validate a dataset config."""
    path = Path(path)
    try:
        return DatasetConfig.model_validate(load_yaml(path))
    except ValidationError as exc:
        raise DetectionError(_format_validation(path, exc)) from None
