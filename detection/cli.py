"""``detection``: one verb per pipeline stage, plus tools (validate, predict, models).

Every stage verb reads its section of ``params.yaml`` (``--params``) and lets options override it,
then runs the same library function that ``dvc repro`` runs (``detection.stages.run_stage``).
User mistakes end with one ``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from detection.config import Params, load_params
from detection.errors import DetectionError, TransientError

app = typer.Typer(
    name="detection",
    help="Reproducible object detection: fetch -> convert -> split -> train -> evaluate -> export -> video.\n\n"
    "Each stage verb reads its section of params.yaml; options override it. "
    "`dvc repro` runs the same verbs; `python -m flows.pipeline` runs them through Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
log = logging.getLogger("detection")

ParamsOpt = Annotated[Path, typer.Option("--params", help="params file whose section gives the defaults")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="dataset config (configs/datasets/*.yaml) (params.yaml: data)")]


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="warnings and errors only")] = False,
) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname).1s %(name)s: %(message)s", datefmt="%H:%M:%S", stream=sys.stderr, force=True)
    logging.getLogger("PIL").setLevel(logging.WARNING)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


# section.field -> the option that sets it, where its name is not --field (for error messages).
OPTION_NAMES = {
    "convert.format": "--from", "convert.src": "SRC", "convert.out": "DST", "convert.on_error": "--on-error",
    "evaluate.score_threshold": "--threshold", "split.annotations": "ANNOTATIONS", "fetch.source": "SOURCE",
    "video.source": "SOURCE", "video.max_frames": "--max-frames", "split.train_list": "--train-list",
    "split.valid_list": "--valid-list", "convert.images_dir": "--images-dir", "convert.annotations_dir": "--annotations-dir",
}  # fmt: skip


def _params(path: Path, data: Path | None = None, **sections: dict[str, Any]) -> Params:
    """``params.yaml`` with the options that were given (not None) laid over their sections."""
    from pydantic import ValidationError

    from detection.config import option_errors

    base = load_params(path).model_dump()
    if data is not None:
        base["data"] = data
    given: dict[str, str] = {}
    for section, values in sections.items():
        base[section].update({k: v for k, v in values.items() if v is not None})
        given |= {f"{section}.{k}": OPTION_NAMES.get(f"{section}.{k}", "--" + k.replace("_", "-")) for k, v in values.items() if v is not None}
    try:
        return Params.model_validate(base)
    except ValidationError as exc:  # an option value out of range: one line naming option, value and what is allowed
        raise DetectionError(option_errors(exc, given, str(path))) from None


def _run(stage: str, params: Params, **kwargs: Any) -> Any:
    from detection.stages import run_stage

    return run_stage(stage, params, **kwargs)


def _show(title: str, result: dict[str, Any], keys: list[str] | None = None) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in result.items():
        if (keys is None or key in keys) and not isinstance(value, (dict, list)):
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    out.print(table)


@app.command()
def fetch(
    source: Annotated[Optional[str], typer.Argument(help="'sample', a local folder or archive, or an http(s) URL (params.yaml: fetch.source)")] = None,
    dest: Annotated[Optional[Path], typer.Option(help="folder to fill (replaced atomically) (params.yaml: fetch.dest)")] = None,
    sha256: Annotated[Optional[str], typer.Option(help="expected sha256 of the archive (params.yaml: fetch.sha256)")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Get the raw data set: the built-in sample, a local folder/archive, or a verified download."""
    p = _params(params, fetch={"source": source, "dest": dest, "sha256": sha256})
    out.print(f"fetched {p.fetch.source} -> {_run('fetch', p)}")


@app.command()
def convert(
    src: Annotated[Optional[Path], typer.Argument(help="source folder/file (default: the dataset config's root)")] = None,
    dst: Annotated[Optional[Path], typer.Argument(help="output folder (params.yaml: convert.out)")] = None,
    from_: Annotated[Optional[str], typer.Option("--from", help="source format: auto, gtsdb, voc, coco, csv, yolo, kpjson (default: the dataset config's; auto when SRC is given without --data)")] = None,
    to: Annotated[Optional[list[str]], typer.Option("--to", help="output format (repeatable): csv, voc, coco, gtsdb, yolo, kpjson (params.yaml: convert.to)")] = None,
    on_error: Annotated[Optional[str], typer.Option(help="raise | skip bad boxes (skips are counted in report.json)")] = None,
    images: Annotated[Optional[str], typer.Option(help="images beside written VOC/YOLO/kpjson folders: link | copy | none (params.yaml: convert.images)")] = None,
    policy: Annotated[Optional[list[str]], typer.Option(help="KIND=ACTION (repeatable), e.g. duplicate_box=drop, outside_image=clip (params.yaml: convert.policy)")] = None,
    column: Annotated[Optional[list[str]], typer.Option(help="CSV: NAME=COLUMN (repeatable), e.g. image=path label=category (params.yaml: convert.columns)")] = None,
    annotations_dir: Annotated[Optional[str], typer.Option(help="VOC: name of the XML folder (params.yaml: convert.annotations_dir)")] = None,
    images_dir: Annotated[Optional[str], typer.Option(help="VOC: images folder name; COCO/CSV: images folder relative to the file (params.yaml: convert.images_dir)")] = None,
    write_config: Annotated[Optional[Path], typer.Option(help="write the dataset config inferred from the source (format, root, class names) to this file")] = None,
    data: DataOpt = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Read annotations into the canonical table; write annotations.csv, VOC XML, COCO JSON and a validation report."""
    values = {"src": src, "out": dst, "format": from_, "to": to, "on_error": on_error, "images": images,
              "annotations_dir": annotations_dir, "images_dir": images_dir,
              "policy": _pairs("--policy", policy), "columns": _pairs("--column", column)}  # fmt: skip
    p = _params(params, data, convert=values)
    report = _run("convert", p, config=data is not None or src is None, write_config=write_config)
    _show("convert", report, ["format", "images", "boxes", "empty_images", "skipped", "warnings"])


def _pairs(option: str, items: list[str] | None) -> dict[str, str] | None:
    """``["a=b", ...]`` as a dict; a DetectionError naming the option for an item without ``=``."""
    if not items:
        return None
    bad = [i for i in items if "=" not in i]
    if bad:
        raise DetectionError(f"invalid option value: {option} {bad[0]!r}: expected NAME=VALUE")
    return dict(i.split("=", 1) for i in items)


@app.command()
def validate(
    src: Annotated[Path, typer.Argument(help="annotations/images folder or file to check")],
    format: Annotated[str, typer.Option("--format", "--from", "-f", help="auto, gtsdb, voc, coco, csv, yolo or kpjson")] = "auto",
    data: DataOpt = None,
    report: Annotated[Optional[Path], typer.Option(help="folder for report.json, report.md and the plots")] = None,
    policy: Annotated[Optional[list[str]], typer.Option(help="KIND=ACTION (repeatable), as for convert")] = None,
    images_dir: Annotated[Optional[str], typer.Option(help="VOC: images folder name; COCO/CSV: images folder relative to the file")] = None,
    annotations_dir: Annotated[Optional[str], typer.Option(help="VOC: name of the XML folder")] = None,
    plots: Annotated[bool, typer.Option(help="write the PNG plots with the report")] = True,
) -> None:
    """Check a data set without converting it: every problem is listed with its file and line, nothing is skipped silently."""
    from detection.config import load_dataset_config
    from detection.data.convert import FORMATS
    from detection.data.convert import validate as run

    if format not in (*FORMATS, "auto"):
        raise DetectionError(f"invalid option value: --format {format!r}: allowed: auto, {', '.join(FORMATS)}")
    names = load_dataset_config(data).names if data is not None else None
    options = {"images_dir": images_dir, "annotations_dir": annotations_dir}
    result = run(src, format, names, report, policy=_pairs("--policy", policy), options=options, plots=plots)
    _show(f"validate {src}", result, ["format", "images", "boxes", "empty_images", "skipped", "warnings", "ok"])
    if result["problem_counts"]:
        _show("problems by kind", result["problem_counts"])  # type: ignore[arg-type]
    if not result["ok"]:
        raise typer.Exit(1)


@app.command("augment-preview")
def augment_preview(
    annotations: Annotated[Optional[Path], typer.Argument(help="canonical table (default: the dataset config's train table)")] = None,
    out_file: Annotated[Path, typer.Option("--out", help="PNG grid to write")] = Path("reports/augment_preview.png"),
    count: Annotated[int, typer.Option(min=1, max=64, help="augmented samples in the grid")] = 9,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    data: DataOpt = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Write a grid of augmented training samples (params.yaml: train.augment) so you see what training sees."""
    from detection.config import load_dataset_config
    from detection.data.augment import preview

    p = _params(params, data)
    config = load_dataset_config(p.data)
    path = preview(annotations or config.train, config.root, config.names, p.train.augment, out_file, count=count, seed=seed, imgsz=p.train.imgsz)
    out.print(f"wrote {path}")


@app.command()
def split(
    annotations: Annotated[Optional[Path], typer.Argument(help="canonical annotations.csv (params.yaml: split.annotations)")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="output folder (params.yaml: split.out)")] = None,
    valid: Annotated[Optional[float], typer.Option(help="fraction of images (mode group: of scenes) for validation (params.yaml: split.valid)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="random seed (params.yaml: split.seed)")] = None,
    mode: Annotated[Optional[str], typer.Option(help="ratio | lists | gtsdb | group (params.yaml: split.mode)")] = None,
    train_list: Annotated[Optional[Path], typer.Option(help="mode lists: file of train image names, e.g. VOC ImageSets/Main/train.txt")] = None,
    valid_list: Annotated[Optional[Path], typer.Option(help="mode lists: file of valid image names, e.g. ImageSets/Main/val.txt")] = None,
    group: Annotated[Optional[str], typer.Option(help="mode group: regex on the image path; its first group names the scene")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Split images into train/valid: stratified by class (deterministic), by lists, GTSDB's official split, or by scene."""
    values = {"annotations": annotations, "out": out_dir, "valid": valid, "seed": seed, "mode": mode,
              "train_list": train_list, "valid_list": valid_list, "group": group}  # fmt: skip
    p = _params(params, split=values)
    report = _run("split", p)
    _show("split", {k: v for k, v in report.items() if isinstance(v, (int, float, str))})
    _show("images", report["images"])


@app.command()
def train(
    data: DataOpt = None,
    model: Annotated[Optional[str], typer.Option(help="registered model name (`detection models`) (params.yaml: model.name)")] = None,
    weights: Annotated[Optional[str], typer.Option(help="none | default | backbone | auto | path.pt (params.yaml: model.weights)")] = None,
    trainable_layers: Annotated[Optional[int], typer.Option(help="backbone stages trained from pretrained weights, 0-5 (params.yaml: model.trainable_layers)")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="[params: train.epochs]")] = None,
    batch: Annotated[Optional[int], typer.Option(help="[params: train.batch]")] = None,
    imgsz: Annotated[Optional[int], typer.Option(help="longest image side fed to the model (params.yaml: train.imgsz)")] = None,
    lr: Annotated[Optional[float], typer.Option(help="[params: train.lr]")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto | cpu | cuda | cuda:N | mps (params.yaml: train.device)")] = None,
    workers: Annotated[Optional[int], typer.Option(help="data-loader worker processes (params.yaml: train.workers)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="[params: train.seed]")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="checkpoint folder (params.yaml: train.out)")] = None,
    resume: Annotated[bool, typer.Option(help="continue from <out>/last.pt")] = False,
    optimizer: Annotated[Optional[str], typer.Option(help="sgd | adam | adamw [params: train.optimizer]")] = None,
    schedule: Annotated[Optional[str], typer.Option(help="cosine | multistep | cosine_restarts | onecycle | constant [params: train.schedule]")] = None,
    amp: Annotated[Optional[str], typer.Option(help="auto | on | off [params: train.amp]")] = None,
    patience: Annotated[Optional[int], typer.Option(help="early-stopping patience in epochs, 0: off [params: train.patience]")] = None,
    save_every_iters: Annotated[Optional[int], typer.Option(help="also write last.pt every N steps [params: train.save_every_iters]")] = None,
    nproc: Annotated[Optional[int], typer.Option(help="DDP processes; >1 relaunches under torchrun [params: train.nproc]")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Train a detector; writes last.pt (each epoch, and every save_every_iters steps) and best.pt."""
    p = _params(
        params, data,
        model={"name": model, "weights": weights, "trainable_layers": trainable_layers},
        train={"epochs": epochs, "batch": batch, "imgsz": imgsz, "lr": lr, "device": device, "workers": workers, "seed": seed, "out": out_dir,
               "optimizer": optimizer, "schedule": schedule, "amp": amp, "patience": patience, "save_every_iters": save_every_iters, "nproc": nproc},
    )  # fmt: skip
    if p.train.nproc > 1 and "WORLD_SIZE" not in os.environ:  # e.g. the DVC stage with train.nproc: 2
        from detection.engine.distributed import relaunch

        raise typer.Exit(relaunch(p.train.nproc, sys.argv[1:]))
    result = _run("train", p, resume=resume)
    if result:  # under torchrun only rank 0 reports
        _show("train", result)


@app.command()
def evaluate(
    weights: Annotated[Optional[Path], typer.Option(help="checkpoint (params.yaml: evaluate.weights)")] = None,
    data: DataOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="reports folder (params.yaml: evaluate.out)")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="score threshold of the drawn samples (params.yaml: evaluate.score_threshold)")] = None,
    device: Annotated[Optional[str], typer.Option(help="[params: evaluate.device]")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """COCO mAP, mAP@0.5 and per-class AP on the valid split (pycocotools), with PR plots and samples."""
    p = _params(params, data, evaluate={"weights": weights, "out": out_dir, "score_threshold": threshold, "device": device})
    metrics = _run("evaluate", p)
    _show("evaluate", metrics)
    _print_per_class(metrics["per_class"])


@app.command()
def export(
    weights: Annotated[Optional[Path], typer.Option(help="checkpoint (params.yaml: export.weights)")] = None,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="ONNX file (params.yaml: export.out)")] = None,
    opset: Annotated[Optional[int], typer.Option(help="[params: export.opset]")] = None,
    torchscript: Annotated[Optional[bool], typer.Option("--torchscript/--no-torchscript", help="also write <stem>.torchscript.pt (params.yaml: export.torchscript)")] = None,
    quantize: Annotated[Optional[str], typer.Option(help="none | int8: also write <stem>.int8.onnx, checked by mAP on valid (params.yaml: export.quantize)")] = None,
    proposals: Annotated[Optional[int], typer.Option(min=1, help="RPN proposals per image in the graph (two-stage models): fewer is faster; checked by mAP on valid (params.yaml: export.proposals)")] = None,
    data: DataOpt = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Export to ONNX and check onnxruntime against torch on valid images."""
    section = {"weights": weights, "out": out_file, "opset": opset, "torchscript": torchscript, "quantize": quantize, "proposals": proposals}
    p = _params(params, data, export=section)
    result = _run("export", p)
    _show("export", result)
    if (c := result.get("proposals_check")) is not None:
        out.print(f"proposals: {c['proposals']} (model's own {c['model_proposals']}), mAP@0.5 on valid {c['model']['map50']:.4f} -> {c['reduced']['map50']:.4f}")
    if (q := result.get("int8")) is not None:
        v, f = q.get("valid"), q["agreement"]["matched_fraction"]
        agree = f"{f:.1%} of the detections agree" if f is not None else "no confident detection to compare"
        out.print(f"int8: {q['onnx']}, {agree}" + (f", mAP@0.5 {v['fp32']['map50']:.4f} -> {v['int8']['map50']:.4f}" if v else ""))


ClassesOpt = Annotated[Optional[list[str]], typer.Option("--classes", help="keep only these class names (repeat, or one comma-separated list)")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="with --weights default: torchvision's COCO detector of this name (`detection models`)")]
ImgszOpt = Annotated[Optional[int], typer.Option("--imgsz", help="with --weights default: longest image side (default 640); a .pt/.onnx carries its own")]
ProposalsOpt = Annotated[Optional[int], typer.Option("--proposals", min=1, help="RPN proposals per image of a two-stage .pt or COCO detector: fewer is faster, may miss objects (default: the model's own; an .onnx has its count from export)")]


def _classes(values: list[str] | None) -> list[str] | None:
    """``--classes person car`` / ``--classes person,car`` / repeated ``--classes``: one list (None if not given)."""
    names = [n.strip() for v in values or [] for n in v.split(",") if n.strip()]
    return names or None


def _looks_like_path(arg: str) -> bool:
    return "/" in arg or "." in arg or arg.isdigit() or arg == "sample" or Path(arg).exists()


def _split_classes(argv: list[str]) -> list[str]:
    """Let ``--classes person car`` take several values (click options take one): repeat the option."""
    result, taking = [], False
    for arg in argv:
        if arg == "--classes":
            taking = True
            result.append(arg)
            continue
        if taking and not arg.startswith("-") and not _looks_like_path(arg):
            if result[-1] != "--classes":
                result.append("--classes")
            result.append(arg)
            continue
        taking = False
        result.append(arg)
    return result


@app.command()
def video(
    source: Annotated[Optional[str], typer.Argument(help="video file, folder of videos, camera index (0, 1...), or 'sample' (params.yaml: video.source)")] = None,
    weights: Annotated[Optional[str], typer.Option(help="checkpoint (.pt), model.onnx, or 'default' with --model (params.yaml: video.weights)")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="output folder (params.yaml: video.out)")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="[params: video.threshold]")] = None,
    max_frames: Annotated[Optional[int], typer.Option(help="stop after N frames (params.yaml: video.max_frames)")] = None,
    stride: Annotated[Optional[int], typer.Option(help="run the model on every N-th frame (params.yaml: video.stride)")] = None,
    track: Annotated[Optional[bool], typer.Option("--track/--no-track", help="ByteTrack ids and tracks.csv (params.yaml: video.track)")] = None,
    classes: ClassesOpt = None,
    model: ModelOpt = None,
    imgsz: ImgszOpt = None,
    proposals: ProposalsOpt = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Run a model over a video: annotated mp4, per-frame detections (JSONL), tracks.csv and FPS per step."""
    section = {"source": source, "weights": weights, "out": out_dir, "threshold": threshold, "max_frames": max_frames}
    section |= {"stride": stride, "track": track, "classes": _classes(classes), "model": model, "imgsz": imgsz, "proposals": proposals}
    p = _params(params, video=section)
    result = _run("infer-video", p)
    for one in result.get("videos", [result]):
        _show(f"video {one['source']}", one, ["frames", "frames_inferred", "detections", "tracks", "proposals", "fps_decode", "fps_model", "fps_encode", "fps_end_to_end", "size_rule", "annotated"])


@app.command()
def predict(
    source: Annotated[str, typer.Argument(help="an image, a folder (searched recursively), a quoted glob, a text file listing paths/URLs, or a URL")],
    weights: Annotated[str, typer.Option(help="checkpoint (.pt), model.onnx, or 'default' with --model (COCO)")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for annotated images, predictions.jsonl/.csv and summary.json")] = Path("reports/predict"),
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="minimum score")] = 0.5,
    classes: ClassesOpt = None,
    batch: Annotated[int, typer.Option(min=1, help="images per forward pass")] = 1,
    model: ModelOpt = None,
    imgsz: ImgszOpt = None,
    proposals: ProposalsOpt = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
) -> None:
    """Detect objects in images with a checkpoint, an ONNX model or a COCO detector; unreadable files are skipped and named."""
    from detection.inference.predict import predict as run
    from detection.inference.predict import skipped_lines

    result = run(source, weights, out_dir, threshold=threshold, classes=_classes(classes), batch=batch, model=model, imgsz=imgsz, device=device, proposals=proposals)
    for line in skipped_lines(result):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    _show("predict", result, ["images", "skipped", "detections", "backend", "proposals", "batch", "images_per_second", "images_per_second_model", "size_rule", "out"])


@app.command()
def metrics(params: ParamsOpt = Path("params.yaml")) -> None:
    """Summarise the pipeline's metrics files (train, evaluate, export, video) in one table."""
    from detection.stages import metrics_files

    p = load_params(params)
    shown = {
        "train": ["best_epoch", "best_val_map", "best_val_map50", "train_seconds"],
        "evaluate": ["map", "map50", "map75", "images", "boxes"],
        "export": ["ok", "max_box_diff_px", "max_score_diff", "opset"],
        "infer-video": ["frames", "fps_model", "fps_end_to_end", "backend"],
    }
    files = metrics_files(p)
    table = Table("stage", "metric", "value", title="pipeline metrics", title_justify="left")
    for stage, path in files.items():
        if not Path(path).is_file():
            table.add_row(stage, f"({path} not written yet)", "")
            continue
        values = json.loads(Path(path).read_text(encoding="utf-8"))
        for key in shown[stage]:
            value = values.get(key)
            table.add_row(stage, key, f"{value:.4g}" if isinstance(value, float) else str(value))
            stage = ""
    out.print(table)
    evaluated = Path(files["evaluate"])
    if evaluated.is_file():
        per_class = json.loads(evaluated.read_text(encoding="utf-8")).get("per_class", {})
        _print_per_class(per_class)


def _print_per_class(per_class: dict[str, dict[str, float | None]]) -> None:
    table = Table("class", "AP@[.5:.95]", "AP@0.5", title="per class (valid split)", title_justify="left")
    for name, v in per_class.items():
        table.add_row(name, *("-" if v.get(k) is None else f"{v[k]:.3f}" for k in ("ap", "ap50")))
    out.print(table)


_MODELS_HELP = (
    "List every registered detector: name (aliases beside it), family, parameters (M), default input size, "
    "GFLOPs at that size, the weights it can start from (imagenet = `weights: backbone`, coco = `weights: default`; "
    "`none` and `auto` always) and whether it is CPU-friendly.\n\n"
    "Besides the listed names, `fasterrcnn_<network>`, `retinanet_<network>` and `fcos_<network>` work for any "
    "torchvision classification network (`torchvision.models.list_models()`), with `mini_` (last stage cut), "
    "`_single` (one feature map, no FPN) and, for Faster R-CNN, `_small_head` / `_tiny_head` / `_nano_head` "
    "(box head 512 / 256 / 128).\n\n"
    "To add a model, write one decorated function in a module under detection/models/ (imported by "
    "registry._ensure_loaded), as in Detectron2's and MMDetection's registries: "
    "`@register(\"fasterrcnn_mynet\", family=\"faster_rcnn\", description=\"...\", imgsz=320)` on "
    "`def fasterrcnn_mynet(num_classes, weights=\"none\", imgsz=320, trainable_layers=None) -> nn.Module`. "
    "A new backbone network needs only `@register_network(\"mynet\")` (detection/models/backbones.py) on a "
    "function that returns the classifier-like module: its stages and channels are found automatically.\n\n"
    "Parameters and GFLOPs come from `python -m benchmarks.models --stats`."
)


@app.command(help=_MODELS_HELP)
def models(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    family: Annotated[Optional[str], typer.Option(help="only this family (faster_rcnn, retinanet, fcos, ssd, keypoint_rcnn)")] = None,
    cpu: Annotated[bool, typer.Option("--cpu", help="only CPU-friendly models")] = False,
) -> None:
    from detection.models.catalog import rows

    listed = rows(family, cpu)
    if as_json:
        print(json.dumps(listed, indent=1))
        return
    from rich import box

    table = Table(title=f"{len(listed)} models", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("name (= alias)", "family", "params M", "size", "GFLOPs", "weights", "CPU"):
        table.add_column(col, no_wrap=True)
    cells = []
    for r in listed:
        num = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        weights = ",".join({"backbone": "imagenet", "default": "coco"}[w] for w in r["weights"] if w != "none") or "-"
        cells.append([r["name"], [a["name"] for a in r["aliases"]], r["family"], num(r["params_m"]), str(r["imgsz"]), num(r["gflops"]), weights])
        name = "\n".join([r["name"], *(f"  = {a}" for a in cells[-1][1])])
        table.add_row(name, *cells[-1][2:], "yes" if r["cpu_friendly"] else "")
    # Never cut a name: a table wider than the terminal becomes two lines per model instead (a wrapped
    # table row is unreadable and a cropped name ambiguous). Piped (no terminal, no COLUMNS), the table
    # keeps its natural width, one line per model for grep.
    natural = Console(width=10_000).measure(table).maximum
    if natural <= out.width or not (out.is_terminal or "COLUMNS" in os.environ):
        Console(width=max(out.width, natural)).print(table)
        return
    plain = {"highlight": False, "markup": False, "soft_wrap": True}
    out.print(f"{len(listed)} models, two lines each (the table needs more than {out.width} columns):", **plain)
    out.print("name  (= aliases)\n    family  parameters  input size  GFLOPs  weights  CPU-friendly\n", **plain)
    for (name, aliases, fam, params_m, size, gflops, weights), r in zip(cells, listed, strict=True):
        out.print(name + "".join(f"  (= {a})" for a in aliases), **plain)
        out.print(f"    {fam}  {params_m}M  {size}px  {gflops} GFLOPs  {weights}{'  CPU' if r['cpu_friendly'] else ''}", **plain)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors (ours and bad usage) become one ``error:`` line and exit status 2."""
    try:
        code = app(args=_split_classes(sys.argv[1:] if argv is None else argv), prog_name="detection", standalone_mode=False)
        if isinstance(code, int) and code:  # typer.Exit(N) inside a verb: click returns N in this mode
            sys.exit(code)
    except TransientError as exc:  # may pass on a retry (network): EX_TEMPFAIL, which orchestrators retry
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(75)
    except DetectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:  # typer's own click: bad option value, unknown verb...
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        ctx = getattr(exc, "ctx", None)
        see = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print(f"error: {message}{see}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2) or 2)


if __name__ == "__main__":
    main()
