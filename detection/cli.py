"""``detection``: one verb per pipeline stage, plus tools (validate, predict, models).

Every stage verb reads its section of ``params.yaml`` (``--params``) and lets options override it,
then runs the same library function that ``dvc repro`` runs (``detection.stages.run_stage``).
User mistakes end with one ``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from detection.config import Params, load_params
from detection.errors import DetectionError

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


def _params(path: Path, data: Path | None = None, **sections: dict[str, Any]) -> Params:
    """``params.yaml`` with the options that were given (not None) laid over their sections."""
    base = load_params(path).model_dump()
    if data is not None:
        base["data"] = data
    for section, values in sections.items():
        base[section].update({k: v for k, v in values.items() if v is not None})
    try:
        return Params.model_validate(base)
    except Exception as exc:  # pydantic.ValidationError: an option value out of range
        raise DetectionError(f"invalid option: {exc}".replace("\n", " ")) from None


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
    from_: Annotated[Optional[str], typer.Option("--from", help="source format: gtsdb, voc, coco, csv (default: the dataset config's)")] = None,
    to: Annotated[Optional[list[str]], typer.Option("--to", help="output format (repeatable): csv, voc, coco, gtsdb (params.yaml: convert.to)")] = None,
    on_error: Annotated[Optional[str], typer.Option(help="raise | skip bad boxes (skips are counted in report.json)")] = None,
    data: DataOpt = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Read annotations into the canonical table; write annotations.csv, VOC XML, COCO JSON and a report."""
    p = _params(params, data, convert={"src": src, "out": dst, "format": from_, "to": to, "on_error": on_error})
    report = _run("convert", p)
    _show("convert", report, ["images", "boxes", "empty_images", "skipped"])


@app.command()
def validate(
    src: Annotated[Path, typer.Argument(help="annotations/images folder or file to check")],
    format: Annotated[str, typer.Option("--format", "-f", help="gtsdb, voc, coco or csv")],
    data: DataOpt = None,
    report: Annotated[Optional[Path], typer.Option(help="folder for report.json")] = None,
) -> None:
    """Check a data set without converting it: every problem is listed, nothing is skipped silently."""
    from detection.config import load_dataset_config
    from detection.data.convert import validate as run

    names = load_dataset_config(data).names if data is not None else None
    result = run(src, format, names, report)
    _show(f"validate {src}", result, ["images", "boxes", "empty_images", "skipped", "ok"])
    if not result["ok"]:
        raise typer.Exit(1)


@app.command()
def split(
    annotations: Annotated[Optional[Path], typer.Argument(help="canonical annotations.csv (params.yaml: split.annotations)")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="output folder (params.yaml: split.out)")] = None,
    valid: Annotated[Optional[float], typer.Option(help="fraction of images for validation (params.yaml: split.valid)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="random seed (params.yaml: split.seed)")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Split images into train/valid, deterministic and stratified by class."""
    p = _params(params, split={"annotations": annotations, "out": out_dir, "valid": valid, "seed": seed})
    report = _run("split", p)
    _show("split", {k: v for k, v in report.items() if isinstance(v, (int, float, str))})


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
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Train a detector; writes last.pt (each epoch) and best.pt (best validation mAP)."""
    p = _params(
        params, data,
        model={"name": model, "weights": weights, "trainable_layers": trainable_layers},
        train={"epochs": epochs, "batch": batch, "imgsz": imgsz, "lr": lr, "device": device, "workers": workers, "seed": seed, "out": out_dir},
    )  # fmt: skip
    _show("train", _run("train", p, resume=resume))


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
    data: DataOpt = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Export to ONNX and check onnxruntime against torch on valid images."""
    p = _params(params, data, export={"weights": weights, "out": out_file, "opset": opset})
    _show("export", _run("export", p))


@app.command()
def video(
    source: Annotated[Optional[str], typer.Argument(help="video file, or 'sample' (params.yaml: video.source)")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="checkpoint (.pt) or model.onnx (params.yaml: video.weights)")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="output folder (params.yaml: video.out)")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="[params: video.threshold]")] = None,
    max_frames: Annotated[Optional[int], typer.Option(help="stop after N frames (params.yaml: video.max_frames)")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Run a model over a video: annotated mp4, per-frame detections (JSONL) and FPS."""
    p = _params(params, video={"source": source, "weights": weights, "out": out_dir, "threshold": threshold, "max_frames": max_frames})
    _show("video", _run("infer-video", p))


@app.command()
def predict(
    source: Annotated[Path, typer.Argument(help="an image file or a folder of images")],
    weights: Annotated[Path, typer.Option(help="checkpoint (.pt) or model.onnx")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for annotated images and predictions.jsonl")] = Path("reports/predict"),
    threshold: Annotated[float, typer.Option(help="minimum score")] = 0.5,
) -> None:
    """Detect objects in images with a checkpoint or an ONNX model."""
    from detection.inference.predict import predict as run

    _show("predict", run(source, weights, out_dir, threshold=threshold))


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
        name = "\n".join([r["name"], *(f"  = {a['name']}" for a in r["aliases"])])
        num = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        weights = ",".join({"backbone": "imagenet", "default": "coco"}[w] for w in r["weights"] if w != "none") or "-"
        cells.append([name, r["family"], num(r["params_m"]), str(r["imgsz"]), num(r["gflops"]), weights, "yes" if r["cpu_friendly"] else ""])
        table.add_row(*cells[-1])
    # Never cut a name: print as wide as the table needs (a narrow terminal wraps the line, it does not crop it).
    heads = [str(c.header) for c in table.columns]
    width = sum(max(len(line) for cell in [h, *(row[i] for row in cells)] for line in cell.split("\n")) + 2 for i, h in enumerate(heads))
    Console(width=max(out.width, width + 2 * len(heads) + 2)).print(table)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors (ours and bad usage) become one ``error:`` line and exit status 2."""
    try:
        app(args=argv, prog_name="detection", standalone_mode=False)
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
