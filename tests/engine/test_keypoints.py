"""Keypoint R-CNN from keypoint files: keypoint AP (pycocotools), flips that swap left/right, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from detection.cli import app
from detection.config import AugmentParams, DatasetConfig
from detection.data.augment_keypoints import KeypointAugmenter
from detection.data.formats.kpjson import read_kpjson
from detection.data.keypoints import COCO_KEYPOINTS, COCO_SIGMAS, keypoint_array, keypoint_spec
from detection.data.table import boxes_of, images, label_ids
from detection.engine.data import DetectionDataset
from detection.engine.keypoints import keypoint_metrics
from detection.errors import DetectionError
from tests.engine.kpdata import FLIP, NAMES, write_config, write_kpjson


@pytest.fixture(scope="module")
def quads(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DatasetConfig]:
    root = write_kpjson(tmp_path_factory.mktemp("kp") / "quads", images=12)
    table, _ = read_kpjson(root)
    return root, DatasetConfig(name="q", format="kpjson", names=["quad"], root=root, keypoints=list(NAMES), keypoint_flip=FLIP), table


def _truth_as_detections(table, names, shift: float = 0.0) -> list[dict[str, np.ndarray]]:
    ids = label_ids(names)
    out = []
    for group in boxes_of(table).values():
        points = keypoint_array(group, 4)
        points[..., 0] += shift
        out.append({"boxes": group[["xmin", "ymin", "xmax", "ymax"]].to_numpy(np.float32).reshape(-1, 4), "scores": np.ones(len(group), np.float32),
                    "labels": np.array([ids[n] for n in group["label"]], np.int64), "keypoints": points})  # fmt: skip
    return out


def test_keypoint_ap_is_one_for_the_truth_and_drops_when_shifted(quads) -> None:
    root, data, table = quads
    spec = keypoint_spec(data, table)
    perfect = keypoint_metrics(table, data.names, _truth_as_detections(table, data.names), spec)
    assert perfect["map"] == pytest.approx(1.0) and perfect["map50"] == pytest.approx(1.0) and perfect["instances"] == 10
    near = keypoint_metrics(table, data.names, _truth_as_detections(table, data.names, shift=4.0), spec)
    far = keypoint_metrics(table, data.names, _truth_as_detections(table, data.names, shift=12.0), spec)
    assert far["map"] < near["map"] < 1.0
    looser = keypoint_spec(data.model_copy(update={"keypoint_sigma": 0.2}), table)
    assert keypoint_metrics(table, data.names, _truth_as_detections(table, data.names, shift=4.0), looser)["map"] > near["map"]


def test_spec_defaults_and_config_errors(quads) -> None:
    root, data, table = quads
    spec = keypoint_spec(data, table)
    assert spec.flip == (1, 0, 3, 2) and spec.sigmas == (0.07,) * 4
    plain = keypoint_spec(data.model_copy(update={"keypoints": None, "keypoint_flip": None}), table)
    assert plain.names == ("kp0", "kp1", "kp2", "kp3") and plain.flip is None
    coco = keypoint_spec(data.model_copy(update={"keypoints": list(COCO_KEYPOINTS), "keypoint_flip": None}))
    assert coco.sigmas == COCO_SIGMAS and coco.flip[COCO_KEYPOINTS.index("left_eye")] == COCO_KEYPOINTS.index("right_eye")
    with pytest.raises(DetectionError, match="keypoint_flip: unknown keypoint 'left'"):
        keypoint_spec(data.model_copy(update={"keypoint_flip": [["left", "top_right"]]}), table)
    with pytest.raises(DetectionError, match="boxes have 4 keypoints, the dataset config's `keypoints` names 3"):
        keypoint_spec(data.model_copy(update={"keypoints": ["a", "b", "c"]}), table)
    with pytest.raises(DetectionError, match=r"train.hflip = 0.5 mirrors the image, but the keypoints have no flip map.*keypoint_flip"):
        KeypointAugmenter(AugmentParams(), plain, hflip=0.5)


def test_hflip_mirrors_keypoints_and_swaps_left_and_right(quads) -> None:
    root, data, table = quads
    spec = keypoint_spec(data, table)
    off = AugmentParams(affine=0, color=0, hsv=0)
    plain = DetectionDataset(table, root, data.names, keypoints=spec)
    flipped = DetectionDataset(table, root, data.names, KeypointAugmenter(off, spec, hflip=1.0), keypoints=spec)
    for i in range(len(plain)):
        (img, t), (fimg, ft) = plain[i], flipped[i]
        assert ft["keypoints"].shape == t["keypoints"].shape and t["keypoints"].shape[1:] == (4, 3)
        assert np.array_equal(fimg.numpy(), img.numpy()[:, :, ::-1])
        if not len(t["boxes"]):
            continue  # an image without objects: no keypoints either
        w = img.shape[2]
        kp, fkp = t["keypoints"][0].numpy(), ft["keypoints"][0].numpy()
        # the mirror of top_left is the new top_right (and so on): x -> w - x, names swapped by the flip map
        assert np.allclose(fkp[[1, 0, 3, 2], 0], w - kp[:, 0]) and np.allclose(fkp[[1, 0, 3, 2], 1], kp[:, 1])
        assert fkp[1, 0] > fkp[0, 0], "top_right must stay right of top_left after the flip"
        assert np.allclose(ft["boxes"][0].numpy(), [w - t["boxes"][0, 2], t["boxes"][0, 1], w - t["boxes"][0, 0], t["boxes"][0, 3]])


def test_box_without_keypoints_gets_absent_points(quads) -> None:
    root, data, table = quads
    table = table.copy()
    first = table.index[table["keypoints"] != ""][0]
    table.loc[first, "keypoints"] = ""
    ds = DetectionDataset(table, root, data.names, keypoints=keypoint_spec(data, table))
    index = list(images(table)["image"]).index(table.at[first, "image"])
    assert ds[index][1]["keypoints"].abs().sum() == 0 and ds[index][1]["keypoints"].shape == (1, 4, 3)


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_convert_split_train_evaluate_predict_keypoints(tmp_path: Path) -> None:
    src = write_kpjson(tmp_path / "src", images=10, seed=1)
    config = write_config(tmp_path / "quads.yaml", src, tmp_path / "processed")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "train": {"epochs": 1, "batch": 4, "imgsz": 128, "warmup_iters": 2, "hflip": 0.5, "dvclive": False, "val_loss": False,
                  "out": str(tmp_path / "models"), "reports": str(tmp_path / "reports/train"), "roi_batch": 32, "rpn_post_nms": 100},
        "model": {"name": "keypointrcnn_resnet18_single_nano_head"},
        "evaluate": {"out": str(tmp_path / "reports/evaluate"), "metrics": str(tmp_path / "reports/metrics.json"), "samples": 1},
    }))  # fmt: skip
    _cli("convert", str(src), str(tmp_path / "interim"), "--from", "kpjson", "--to", "csv", "--params", str(params))
    _cli("split", str(tmp_path / "interim/annotations.csv"), "--out", str(tmp_path / "processed"), "--valid", "0.3", "--params", str(params))
    _cli("train", "--data", str(config), "--params", str(params))
    summary = json.loads((tmp_path / "reports/train/summary.json").read_text())
    assert "valid_kp_map" in summary and 0.0 <= summary["valid_kp_map"] <= 1.0
    assert "val_kp_map" in (tmp_path / "reports/train/history.csv").read_text().splitlines()[0].split(",")
    _cli("evaluate", "--weights", str(tmp_path / "models/best.pt"), "--data", str(config), "--params", str(params))
    metrics = json.loads((tmp_path / "reports/metrics.json").read_text())
    kp = metrics["keypoints"]
    assert kp["num_keypoints"] == 4 and kp["sigmas"] == [0.07] * 4 and kp["instances"] > 0
    assert {"map", "map50", "map75"} <= set(kp) and 0.0 <= kp["map"] <= 1.0
    _cli("predict", str(src / "images"), "--weights", str(tmp_path / "models/best.pt"), "--out", str(tmp_path / "predict"), "--threshold", "0.0")
    lines = [json.loads(line) for line in (tmp_path / "predict/predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 10
    dets = [d for line in lines for d in line["detections"]]
    assert dets and all(len(d["keypoints"]) == 4 and all(len(p) == 3 for p in d["keypoints"]) for d in dets)
    assert (tmp_path / "predict/000.png").is_file()
