"""A COCO-trained torchvision detector as a predictor, before any training (``--model NAME --weights default``).

``coco_predictor(name)`` builds torchvision's architecture ``name`` (a registered model name, see
``detection models``) with its 91-way COCO head and loads torchvision's COCO weights from torch's hub
cache (``$TORCH_HOME/hub/checkpoints/<file>``), downloading them only when they are missing and the
network is there (never with ``DETECTION_OFFLINE=1``). Offline with no cached file it raises one ``DetectionError`` naming the file, the
folder and the URL. Class names are COCO's (``person``, ``car``, ...), in torchvision's label order.
The size rule is the project's (longest side = ``imgsz``, see ``detection.inference.size``).

``open_predictor(weights, model, imgsz)`` is what predict and video call: a ``.pt``/``.onnx`` file, or
``weights == "default"`` with a model name.
"""

from __future__ import annotations

from pathlib import Path

from detection.errors import DetectionError
from detection.inference.predictor import Predictor, load_predictor, torch_predictor

DEFAULT_IMGSZ = 640  # longest side for the COCO detectors unless --imgsz says otherwise


def coco_weights_file(name: str) -> tuple[Path, str]:
    """``(path in torch's hub cache, download URL)`` of torchvision's COCO weights for model ``name``."""
    from torchvision.models import get_model_weights

    from detection.models import get_spec
    from detection.models.weights import hub_checkpoint_path

    get_spec(name)  # an unknown name fails here, with close matches
    weights = get_model_weights(name).DEFAULT
    return hub_checkpoint_path(weights.url), weights.url


def coco_predictor(name: str, imgsz: int = DEFAULT_IMGSZ, device: str = "cpu", proposals: int | None = None) -> Predictor:
    """torchvision's COCO-trained ``name`` (eval mode) as a predictor with COCO's class names
    (``proposals``: RPN proposals per image of a two-stage model; None: torchvision's own)."""
    from torchvision.models import get_model, get_model_weights

    from detection.engine.device import resolve_device
    from detection.models import get_spec

    from detection.models.weights import hub_state_dict

    path, url = coco_weights_file(name)
    weights = get_model_weights(name).DEFAULT
    state = hub_state_dict(url, f"{name} COCO")  # cache, else download, else one line naming the file
    size = {} if get_spec(name).family == "ssd" else {"min_size": imgsz, "max_size": imgsz}
    model = get_model(name, weights=None, weights_backbone=None, num_classes=len(weights.meta["categories"]), **size)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise DetectionError(f"{path}: not the COCO weights of {name} ({first})", hint=f"delete it and download {url} again") from None
    model.to(resolve_device(device)).eval()
    if proposals is not None:
        from detection.engine.tuning import set_inference_proposals

        set_inference_proposals(model, proposals)
    class_names = list(weights.meta["categories"][1:])  # [0] is __background__; label i is categories[i]
    meta = {"model_name": name, "class_names": class_names, "imgsz": imgsz}
    return torch_predictor(model, meta, path)


def open_predictor(weights: str | Path, model: str | None = None, imgsz: int | None = None, device: str = "cpu", proposals: int | None = None) -> Predictor:
    """A ``.pt``/``.onnx`` file, or with ``weights == "default"`` torchvision's COCO detector ``model``;
    ``proposals``: RPN proposals per image (see ``load_predictor``)."""
    if str(weights) == "default":
        if not model:
            raise DetectionError("--weights default needs --model NAME (a COCO-trained torchvision detector)", hint="e.g. --model fasterrcnn_mobilenet_v3_large_320_fpn --weights default; `detection models` lists them")
        return coco_predictor(model, imgsz or DEFAULT_IMGSZ, device, proposals)
    if model:
        raise DetectionError(f"--model {model} is only for --weights default", hint=f"{weights} carries its own model name; drop --model")
    return load_predictor(Path(weights), device, proposals)
