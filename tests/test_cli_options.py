"""Every out-of-range or invalid option value of every verb: one `error:` line naming the option, the value
and what is allowed (not pydantic's text), exit status 2."""

from __future__ import annotations

import pytest

from detection.cli import main

CASES = [
    (["train", "--epochs", "-1"], "--epochs -1: must be >= 1"),
    (["train", "--batch", "0"], "--batch 0: must be >= 1"),
    (["train", "--imgsz", "8"], "--imgsz 8: must be >= 32"),
    (["train", "--lr", "0"], "--lr 0.0: must be > 0"),
    (["convert", "--from", "nope"], "--from 'nope': allowed: 'gtsdb', 'voc', 'coco', 'csv', 'yolo', 'kpjson' or 'auto'"),
    (["convert", "--to", "pdf"], "--to 'pdf': allowed:"),
    (["convert", "--on-error", "ignore"], "--on-error 'ignore': allowed: 'raise' or 'skip'"),
    (["convert", "--images", "move"], "--images 'move': allowed: 'link', 'copy' or 'none'"),
    (["convert", "--policy", "zero_area=explode"], "--policy zero_area='explode': allowed: 'error', 'drop', 'warn' or 'clip'"),
    (["convert", "--policy", "zero_area"], "--policy 'zero_area': expected NAME=VALUE"),
    (["split", "--valid", "1.5"], "--valid 1.5: must be < 1"),
    (["split", "--mode", "random"], "--mode 'random': allowed: 'ratio', 'lists', 'gtsdb' or 'group'"),
    (["evaluate", "--threshold", "2"], "--threshold 2.0: must be <= 1"),
    (["video", "--threshold", "-0.5"], "--threshold -0.5: must be >= 0"),
    (["validate", ".", "--format", "nope"], "--format 'nope': allowed: auto, gtsdb"),
    (["augment-preview", "--count", "0"], "--count"),
    (["predict", ".", "--weights", "x.pt", "--threshold", "3"], "--threshold"),
    (["train", "--epochs", "many"], "--epochs"),
]


@pytest.mark.parametrize(("args", "needle"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_option_value_is_one_line(args: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert exc.value.code == 2 and len(lines) == 1 and len(err.strip().splitlines()) == 1, err
    assert needle in lines[0] and "pydantic" not in err and "http" not in err and "validation error" not in err
