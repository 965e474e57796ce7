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


class ConvertParams(_Section):
    src: Path | None = Field(None, description="annotations/images folder; default: the dataset config's root")
    out: Path = Path("data/interim")
    format: Literal["gtsdb", "voc", "coco", "csv"] | None = Field(None, description="source format; default: the dataset config's")
    on_error: Literal["raise", "skip"] = Field("raise", description="bad boxes: stop, or skip and count them")
    to: list[Literal["csv", "voc", "coco", "gtsdb"]] = Field(["csv", "voc", "coco"], description="formats written")


class SplitParams(_Section):
    annotations: Path = Path("data/interim/annotations.csv")
    out: Path = Path("data/processed")
    valid: float = Field(0.25, gt=0.0, lt=1.0)
    seed: int = 0


class ModelParams(_Section):
    name: str = "fasterrcnn_tiny"
    weights: str = Field("none", description="'none', 'backbone' (ImageNet), 'default' (torchvision's COCO), 'auto' (pretrained if cached), or a .pt path")
    trainable_layers: int | None = Field(None, ge=0, le=5, description="backbone stages that train from pretrained weights (null: 3, as torchvision)")


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
    out: Path = Path("models")
    reports: Path = Path("reports/train")


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


class VideoParams(_Section):
    source: str = Field("sample", description="a video file, or 'sample' for the fetched sample video")
    weights: Path = Path("models/model.onnx")
    out: Path = Path("reports/video")
    threshold: float = Field(0.5, ge=0, le=1)
    max_frames: int | None = None


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
    format: Literal["gtsdb", "voc", "coco", "csv"]
    names: list[str] = Field(description="class names, in label-id order (id 1 is names[0])")
    root: Path = Field(Path("data/raw"), description="images root: image paths in the tables are relative to it")
    train: Path = Field(Path("data/processed/train.csv"), description="canonical table of the train split")
    valid: Path = Field(Path("data/processed/valid.csv"), description="canonical table of the valid split")
    source: str | None = None
    sha256: str | None = None

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
