"""The fetch stage on real files: archives built here (benign and malicious), a local HTTP server, the sample."""

from __future__ import annotations

import hashlib
import http.server
import io
import logging
import os
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from detection.config import SampleParams
from detection.data.fetch import cache_path, fetch, sha256sum
from detection.errors import DetectionError
from tests.conftest import shared_path

DATA = {"gt.txt": b"00000.ppm;1;2;30;40;14\n", "ReadMe.txt": b"test data\n", "img/00000.ppm": os.urandom(300_000)}
TAR_MODES = {".tar": "w", ".tar.gz": "w:gz", ".tgz": "w:gz", ".tar.bz2": "w:bz2", ".tar.xz": "w:xz"}


def files_in(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (links not followed): to show that nothing was written anywhere."""
    return {os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files}


def make_archive(path: Path, members: dict[str, bytes]) -> Path:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
    else:
        mode: Any = next(m for suffix, m in TAR_MODES.items() if path.name.endswith(suffix))
        with tarfile.open(path, mode) as tf:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def make_tar(path: Path, entries: list[tuple[str, bytes | str | int]]) -> Path:
    """A tar of ``(name, bytes)`` files, ``(name, 'sym:TARGET' | 'hard:TARGET')`` links, ``(name, tarfile.CHRTYPE)`` devices."""
    with tarfile.open(path, "w") as tf:
        for name, what in entries:
            info = tarfile.TarInfo(name)
            if isinstance(what, bytes):
                info.size = len(what)
                tf.addfile(info, io.BytesIO(what))
                continue
            if isinstance(what, str):
                kind, _, info.linkname = what.partition(":")
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
            else:
                info.type, info.devmajor, info.devminor = bytes([what]), 1, 3
            tf.addfile(info)
    return path


# --------------------------------------------------------------------------------------------- local sources


def test_sha256sum(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(DATA["img/00000.ppm"] * 5)
    assert sha256sum(path) == hashlib.sha256(DATA["img/00000.ppm"] * 5).hexdigest()


def test_sample(tmp_path: Path) -> None:
    dest = fetch("sample", tmp_path / "raw", sample=SampleParams(images=4, width=96, height=64, video_frames=0))
    assert dest == tmp_path / "raw"
    assert sorted(p.name for p in dest.iterdir()) == ["00000.ppm", "00001.ppm", "00002.ppm", "00003.ppm", "README.txt", "gt.txt"]


def test_folder_is_linked_and_replaces_dest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "src"
    for name, data in DATA.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    dest = tmp_path / "raw"
    dest.mkdir()
    (dest / "old.txt").write_text("stale")
    caplog.set_level(logging.INFO, logger="detection.data.fetch")
    fetch(str(src), dest)
    assert files_in(dest) == DATA  # old.txt is gone: dest was replaced
    assert (dest / "img/00000.ppm").stat().st_ino == (src / "img/00000.ppm").stat().st_ino  # same filesystem: hard link
    assert f"3 files, {sum(map(len, DATA.values()))} bytes" in caplog.text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left


def test_gtsdb_folder(tmp_path: Path) -> None:
    gtsdb = shared_path("gtsdb")
    dest = fetch(str(gtsdb), tmp_path / "raw")
    assert len(list(dest.glob("*.jpg"))) == 900
    assert (dest / "gt.txt").read_bytes() == (gtsdb / "gt.txt").read_bytes()


@pytest.mark.parametrize("suffix", [".zip", *TAR_MODES])
@pytest.mark.parametrize("top", ["FullIJCNN2013/", ""])
def test_archive_extracts_and_strips_lone_top_folder(tmp_path: Path, suffix: str, top: str) -> None:
    archive = make_archive(tmp_path / f"data{suffix}", {top + name: data for name, data in DATA.items()})
    dest = fetch(str(archive), tmp_path / "raw", sha256=sha256sum(archive).upper())
    assert files_in(dest) == DATA


def test_archive_keeps_links_inside(tmp_path: Path) -> None:
    entries: list[tuple[str, bytes | str | int]] = [("top/a.txt", b"A"), ("top/sub/b.txt", b"B")]
    archive = make_tar(tmp_path / "d.tar", [*entries, ("top/link", "sym:sub/b.txt"), ("top/hard", "hard:top/a.txt")])
    dest = fetch(str(archive), tmp_path / "raw")
    assert (dest / "link").is_symlink() and (dest / "link").read_bytes() == b"B"
    assert (dest / "hard").read_bytes() == b"A"


def test_local_archive_checksum_mismatch(tmp_path: Path) -> None:
    archive = make_archive(tmp_path / "data.zip", DATA)
    actual, wrong = sha256sum(archive), "ab" * 32
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "old.txt").write_text("old")
    with pytest.raises(DetectionError) as err:
        fetch(str(archive), tmp_path / "raw", sha256=wrong)
    assert all(s in str(err.value) for s in ("checksum mismatch", str(archive), wrong, actual, "fetch.sha256"))
    assert archive.exists() and files_in(tmp_path / "raw") == {"old.txt": b"old"}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing/data.zip", "fetch source not found: missing/data.zip"),
        ("ftp://example.org/data.zip", "unsupported URL scheme 'ftp:'"),
        ("notes.txt", "unsupported archive type: notes.txt"),
        ("broken.zip", "broken.zip is not a valid .zip archive"),
    ],
)
def test_bad_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("not an archive")
    Path("broken.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DetectionError, match=message):
        fetch(source, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_bad_digest_and_overlap(tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="fetch.sha256 'xyz' is not a sha256 digest"):
        fetch("sample", tmp_path / "raw", sha256="xyz")
    (tmp_path / "src").mkdir()
    with pytest.raises(DetectionError, match="overlap"):
        fetch(str(tmp_path / "src"), tmp_path / "src" / "raw")


# ---------------------------------------------------------------------------------------- malicious archives

EVIL_TARS: dict[str, list[tuple[str, bytes | str | int]]] = {
    "parent": [("ok.txt", b"fine"), ("../../../../evil.txt", b"x")],
    "absolute": [("ok.txt", b"fine"), ("{tmp}/evil.txt", b"x")],
    "symlink-out": [("ok.txt", b"fine"), ("passwd", "sym:/etc/passwd")],
    "symlink-up": [("ok.txt", b"fine"), ("up", "sym:../../../..")],
    "write-through-symlink": [("here", "sym:."), ("here/l", "sym:../../../evil.txt")],
    "hardlink-out": [("ok.txt", b"fine"), ("pw", "hard:/etc/passwd")],
    "device": [("ok.txt", b"fine"), ("null", tarfile.CHRTYPE[0])],
    "escape-after-strip": [("top/ok.txt", b"fine"), ("top/up", "sym:..")],
}


@pytest.mark.parametrize("case", list(EVIL_TARS))
def test_malicious_tar_is_refused(tmp_path: Path, case: str) -> None:
    entries = [(name.format(tmp=tmp_path), what) for name, what in EVIL_TARS[case]]
    archive = make_tar(tmp_path / "evil.tar", entries)
    dest = tmp_path / "a" / "b" / "c" / "raw"
    dest.mkdir(parents=True)
    (dest / "old.txt").write_text("old")
    before = tree(tmp_path)
    with pytest.raises(DetectionError, match="unsafe archive member") as err:
        fetch(str(archive), dest)
    assert repr(entries[-1][0]) in str(err.value) and "evil.tar" in str(err.value)
    assert tree(tmp_path) == before  # nothing written anywhere, no temp folder left
    assert files_in(dest) == {"old.txt": b"old"}


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt", "a\\..\\..\\evil.txt"])
def test_malicious_zip_is_refused(tmp_path: Path, name: str) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr(zipfile.ZipInfo(name), b"x")  # ZipInfo keeps the name as given
    before = tree(tmp_path)
    with pytest.raises(DetectionError, match="unsafe archive member") as err:
        fetch(str(archive), tmp_path / "a" / "raw")
    assert repr(name) in str(err.value)
    assert tree(tmp_path) == before


# --------------------------------------------------------------------------------------------- downloads


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=N-`` unless ``server.ranges`` is off."""

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        srv.requests.append(self.headers.get("Range"))  # type: ignore[attr-defined]
        data = srv.files.get(self.path)  # type: ignore[attr-defined]
        if data is None:
            self.send_error(404)
            return
        start, rng = 0, self.headers.get("Range")
        if rng and srv.ranges:  # type: ignore[attr-defined]
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cut_next:  # type: ignore[attr-defined]
            srv.cut_next, body = False, body[: len(body) // 2]  # type: ignore[attr-defined]
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[http.server.ThreadingHTTPServer]:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.requests, srv.ranges, srv.cut_next = {}, [], True, False  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def serve(srv: http.server.ThreadingHTTPServer, tmp_path: Path, path: str = "/files/data.tar.gz") -> tuple[str, bytes, str]:
    data = make_archive(tmp_path / "upload.tar.gz", {"top/" + k: v for k, v in DATA.items()}).read_bytes()
    srv.files[path] = data  # type: ignore[attr-defined]
    return f"http://127.0.0.1:{srv.server_port}{path}", data, hashlib.sha256(data).hexdigest()


def test_download_verify_and_reuse_cache(server: http.server.ThreadingHTTPServer, tmp_path: Path) -> None:
    url, data, digest = serve(server, tmp_path)
    cache = tmp_path / "cache"
    dest = fetch(url, tmp_path / "raw", sha256=digest, cache_dir=cache)
    assert files_in(dest) == DATA
    assert cache_path(url, cache).read_bytes() == data and list(cache.iterdir()) == [cache_path(url, cache)]
    fetch(url, tmp_path / "raw2", sha256=digest, cache_dir=cache)
    assert server.requests == [None]  # type: ignore[attr-defined]  # the second fetch used the cache


def test_download_resumes_after_interruption(server: http.server.ThreadingHTTPServer, tmp_path: Path) -> None:
    url, data, digest = serve(server, tmp_path)
    server.cut_next = True  # type: ignore[attr-defined]
    part = Path(f"{cache_path(url, tmp_path)}.part")
    with pytest.raises(DetectionError, match=f"stopped at {len(data) // 2} of {len(data)} bytes.*run fetch again to resume"):
        fetch(url, tmp_path / "raw", sha256=digest, cache_dir=tmp_path)
    assert part.stat().st_size == len(data) // 2 and not (tmp_path / "raw").exists()
    fetch(url, tmp_path / "raw", sha256=digest, cache_dir=tmp_path)
    assert server.requests == [None, f"bytes={len(data) // 2}-"]  # type: ignore[attr-defined]
    assert sha256sum(cache_path(url, tmp_path)) == digest and not part.exists()
    assert files_in(tmp_path / "raw") == DATA


@pytest.mark.parametrize("ranges", [True, False])
def test_download_partial_file_complete_or_ignored(server: http.server.ThreadingHTTPServer, tmp_path: Path, ranges: bool) -> None:
    url, data, digest = serve(server, tmp_path, "/get?id=3")  # no archive suffix: the type is sniffed
    server.ranges = ranges  # type: ignore[attr-defined]
    Path(f"{cache_path(url, tmp_path)}.part").write_bytes(data if ranges else b"garbage")
    fetch(url, tmp_path / "raw", sha256=digest, cache_dir=tmp_path)  # 416 (already whole) / 200 (start again)
    assert sha256sum(cache_path(url, tmp_path)) == digest and files_in(tmp_path / "raw") == DATA


def test_download_checksum_mismatch(server: http.server.ThreadingHTTPServer, tmp_path: Path) -> None:
    url, _, digest = serve(server, tmp_path)
    wrong = "0" * 64
    with pytest.raises(DetectionError) as err:
        fetch(url, tmp_path / "raw", sha256=wrong, cache_dir=tmp_path / "cache")
    assert all(s in str(err.value) for s in (url, wrong, digest, "was removed"))
    assert list((tmp_path / "cache").iterdir()) == [] and not (tmp_path / "raw").exists()


def test_download_unpinned_warns_with_digest(
    server: http.server.ThreadingHTTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, _, digest = serve(server, tmp_path)
    caplog.set_level(logging.INFO, logger="detection.data.fetch")
    fetch(url, tmp_path / "raw", cache_dir=tmp_path / "cache")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and digest in warnings[0] and "fetch.sha256" in warnings[0]
    assert "fetch: url" in caplog.text and "3 files" in caplog.text


def test_download_http_error(server: http.server.ThreadingHTTPServer, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{server.server_port}/missing.zip"
    with pytest.raises(DetectionError, match="could not download .*/missing.zip \\(HTTP 404"):
        fetch(url, tmp_path / "raw", cache_dir=tmp_path)


def test_unreachable_url_says_where_to_put_the_file(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/FullIJCNN2013.zip"
    with pytest.raises(DetectionError) as err:
        fetch(url, tmp_path / "raw", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert f"could not download {url} (" in message and "refused" in message.lower()
    assert f"download it by hand and save it as {cache_path(url, tmp_path / 'cache')}" in message
    assert "fetch.source" in message and not (tmp_path / "raw").exists()


def test_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = "https://example.org/a%20b/FullIJCNN2013.zip?x=1"
    monkeypatch.delenv("DETECTION_CACHE", raising=False)
    assert cache_path(url).parent == Path.home() / ".cache" / "detection" / "downloads"
    monkeypatch.setenv("DETECTION_CACHE", str(tmp_path))
    assert cache_path(url).parent == tmp_path and cache_path(url).name.endswith("-FullIJCNN2013.zip")
    assert cache_path(url, tmp_path / "c").parent == tmp_path / "c"
    assert cache_path(url) != cache_path("https://example.org/other/FullIJCNN2013.zip")
