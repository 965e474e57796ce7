"""The fetch stage: fill the raw-data folder from the built-in sample, a local folder or archive, or a URL.

What ``dest`` holds afterwards, per kind of ``source``:

- ``"sample"``: the synthetic sample in GTSDB layout, written by :func:`detection.data.sample.make_sample`.
- a local folder: its files and sub-folders, hard-linked when on the same filesystem (copied otherwise).
  Hard links share their bytes with the source, so later stages must never edit ``dest`` files in place.
- a local archive (.zip, .tar, .tar.gz/.tgz, .tar.bz2/.tbz2, .tar.xz/.txz), or an http(s) URL of one:
  its members. When they all sit in one top-level folder, that folder is stripped, so that ``dest``
  holds the data directly (``dest/gt.txt``, not ``dest/FullIJCNN2013/gt.txt``).

Downloads go to a cache (``cache_dir``, else ``$DETECTION_CACHE``, else ``~/.cache/detection/downloads``)
as ``<cache>/<12 hex of the URL's sha256>-<file name>``, through ``<that>.part``, which a later run resumes
with an HTTP Range request. A file is verified against ``sha256`` before use; a cached file that matches
is reused without a download. Archives are checked member by member before anything is extracted
(no absolute paths, no ``..``, no links leading outside, no device files), and ``dest`` is replaced
atomically: an interrupted or refused fetch leaves the previous ``dest`` or none.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import posixpath
import re
import shutil
import sys
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlparse
from urllib.request import Request, build_opener, url2pathname

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from detection.config import SampleParams
from detection.data.sample import make_sample
from detection.errors import DetectionError, TransientError
from detection.io import atomic_path

log = logging.getLogger(__name__)

TIMEOUT_S = 60.0  # seconds without an answer (connect or read) before a download gives up
CHUNK = 1 << 20
ARCHIVE_SUFFIXES = {".zip": "zip", ".tar": "tar", ".tar.gz": "tar", ".tgz": "tar", ".tar.bz2": "tar",
                    ".tbz2": "tar", ".tar.xz": "tar", ".txz": "tar"}  # fmt: skip


def fetch(source: str, dest: Path, sha256: str | None = None, sample: SampleParams | None = None,
          cache_dir: Path | None = None) -> Path:  # fmt: skip
    """Fill ``dest`` (replacing it atomically) from ``source``; return ``dest``. See the module docstring."""
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise DetectionError(f"fetch destination {dest} exists and is not a folder", hint="remove it or choose another dest")
    expected = _check_digest(sha256) if sha256 else None
    scheme = urlparse(source).scheme.lower()
    if source == "sample":
        if expected:
            log.warning("fetch.sha256 is ignored for the built-in sample")
        make_sample(dest, **(sample or SampleParams()).model_dump())
        kind = "sample"
    elif scheme in ("http", "https"):
        _extract(download(source, expected, cache_dir), dest, label=source)
        kind = "url"
    elif len(scheme) > 1 and scheme != "file":  # one letter: a Windows drive, not a scheme
        raise DetectionError(f"fetch source {source}: unsupported URL scheme '{scheme}:'",
                             hint="use an http(s) URL, a local folder or archive, or 'sample'")  # fmt: skip
    else:
        path = Path(url2pathname(urlparse(source).path)) if scheme == "file" else Path(source).expanduser()
        if not path.exists():
            raise DetectionError(f"fetch source not found: {path}",
                                 hint="check the path (relative to the current folder), or set fetch.source to "
                                 "'sample', an http(s) URL, or an existing folder or archive")  # fmt: skip
        _check_overlap(path, dest)
        if path.is_dir():
            if expected:
                log.warning("fetch.sha256 is ignored for a folder (%s): only files can be verified", path)
            with atomic_path(dest) as tmp:
                shutil.copytree(path, tmp, copy_function=_link_or_copy)
            kind = "folder"
        else:
            digest = sha256sum(path)
            if expected and digest != expected:
                raise DetectionError(f"checksum mismatch for {path}: expected sha256 {expected}, got {digest}",
                                     hint="check that this is the right file; if it is, set fetch.sha256 to the new digest")  # fmt: skip
            log.info("%s: sha256 %s%s", path, digest, " (verified)" if expected else "")
            _extract(path, dest, label=str(path))
            kind = "archive"
    files = [p for p in dest.rglob("*") if p.is_file()]
    log.info("fetch: %s %s -> %s: %d files, %d bytes", kind, source, dest, len(files), sum(p.stat().st_size for p in files))
    return dest


def sha256sum(path: Path) -> str:
    """The sha256 hex digest of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cache_path(url: str, cache_dir: Path | None = None) -> Path:
    """Where ``url`` is cached: ``<cache>/<12 hex of sha256(url)>-<file name>`` (the download goes through ``+'.part'``)."""
    root = Path(cache_dir or os.environ.get("DETECTION_CACHE") or Path.home() / ".cache" / "detection" / "downloads")
    name = re.sub(r"[^A-Za-z0-9._-]", "_", unquote(urlparse(url).path).rsplit("/", 1)[-1]) or "download"
    return root.expanduser() / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"


def download(url: str, sha256: str | None = None, cache_dir: Path | None = None) -> Path:
    """Download ``url`` into the cache (resuming a partial download), verify it, and return the cached file."""
    target = cache_path(url, cache_dir)
    expected = _check_digest(sha256) if sha256 else None
    if target.is_file():
        digest = sha256sum(target)
        if expected in (None, digest):
            log.info("using the cached %s (sha256 %s)", target, digest)
            if expected is None:
                _warn_unpinned(url, digest)
            return target
        log.warning("the cached %s has sha256 %s, not %s: downloading it again", target, digest, expected)
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    _download(url, target)
    digest = sha256sum(target)
    if expected and digest != expected:
        target.unlink()
        raise DetectionError(f"checksum mismatch for {url}: expected sha256 {expected}, got {digest}; "
                             f"the downloaded file was removed ({target})",
                             hint="if the file changed upstream on purpose, set fetch.sha256 to the new digest; "
                             "otherwise run fetch again")  # fmt: skip
    if expected is None:
        _warn_unpinned(url, digest)
    return target


def _download(url: str, target: Path) -> None:
    part = target.with_name(target.name + ".part")
    done = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "detection-fetch"} | ({"Range": f"bytes={done}-"} if done else {})
    total: int | None = None
    try:
        try:
            resp = build_opener().open(Request(url, headers=headers), timeout=TIMEOUT_S)
        except HTTPError as exc:
            if exc.code != 416 or not done:
                raise
            if exc.headers.get("Content-Range", "").rpartition("/")[2] == str(done):  # the .part is whole
                os.replace(part, target)
                return
            part.unlink()  # longer than the file: stale
            return _download(url, target)
        with resp:
            if resp.status == 206 and not resp.headers.get("Content-Range", "").startswith(f"bytes {done}-"):
                part.unlink()
                return _download(url, target)
            if done and resp.status != 206:
                log.info("%s: the server does not resume downloads; starting again", url)
                done = 0
            length = resp.headers.get("Content-Length", "")
            total = done + int(length) if length.isdigit() else None
            log.info("downloading %s -> %s (%s bytes%s)", url, target, total if total is not None else "unknown",
                     f", resuming at {done}" if done else "")  # fmt: skip
            start = time.monotonic()
            with part.open("ab" if done else "wb") as fh, _progress(target.name, total, done) as advance:
                while chunk := resp.read(CHUNK):
                    fh.write(chunk)
                    done += len(chunk)
                    advance(len(chunk))
    except (URLError, OSError, http.client.HTTPException) as exc:
        reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, HTTPError) else str(getattr(exc, "reason", exc) or type(exc).__name__)
        # a 4xx other than timeout/too-many-requests is the URL's fault; the network and 5xx may pass
        transient = not isinstance(exc, HTTPError) or exc.code >= 500 or exc.code in (408, 429)
        raise (TransientError if transient else DetectionError)(f"could not download {url} ({reason}); download it by hand and save it as {target} "
                             "(or set fetch.source to the local file)") from None  # fmt: skip
    if total is not None and done != total:
        raise TransientError(f"the download of {url} stopped at {done} of {total} bytes",
                             hint=f"run fetch again to resume; the partial file is kept as {part}")  # fmt: skip
    log.info("downloaded %d bytes in %.1f s", done, time.monotonic() - start)
    os.replace(part, target)


@contextlib.contextmanager
def _progress(label: str, total: int | None, done: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr when it is a terminal; a no-op otherwise (the log lines say enough)."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total, completed=done)
        yield lambda n: bar.update(task, advance=n)


def _extract(archive: Path, dest: Path, label: str) -> None:
    """Check every member of ``archive``, then extract it into ``dest`` atomically, stripping a lone top folder."""
    kind = _archive_kind(archive, label)
    try:
        with _checked(archive, kind, label) as extract, atomic_path(dest) as tmp:
            staging = tmp.with_name(tmp.name + ".extract")
            staging.mkdir()
            try:
                extract(staging)
                entries = list(staging.iterdir())
                root = entries[0] if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink() else staging
                real_root = os.path.realpath(root)
                for folder, dirs, files in os.walk(root):  # links must stay inside what becomes dest
                    for name in dirs + files:
                        path = os.path.join(folder, name)
                        if os.path.islink(path) and os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
                            _refuse(label, os.path.relpath(path, staging), f"link to {os.readlink(path)} outside the destination")
                os.replace(root, tmp)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise DetectionError(f"could not extract {label} ({exc})",
                             hint="the archive may be corrupt or truncated: fetch it again") from None  # fmt: skip


@contextlib.contextmanager
def _checked(archive: Path, kind: str, label: str) -> Iterator[Callable[[Path], None]]:
    """Open ``archive``, refuse it if any member is unsafe (before anything is written), yield its extractor."""
    if kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _refuse(label, info.filename, _bad_name(info.filename))
            yield zf.extractall
    else:
        with tarfile.open(archive) as tf:
            _check_tar(tf, label)
            if hasattr(tarfile, "data_filter"):
                yield lambda to: tf.extractall(to, filter="data")
            else:  # Python < 3.11.4: _check_tar alone guards the extraction
                yield tf.extractall


def _archive_kind(path: Path, label: str) -> str:
    name = path.name.lower()
    for suffix, kind in ARCHIVE_SUFFIXES.items():
        if name.endswith(suffix):
            if not (zipfile.is_zipfile(path) if kind == "zip" else tarfile.is_tarfile(path)):
                raise DetectionError(f"{label} is not a valid {suffix} archive ({path})",
                                     hint="the file may be corrupt or truncated: fetch it again")  # fmt: skip
            return kind
    if zipfile.is_zipfile(path):  # a URL without a telling suffix
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise DetectionError(f"unsupported archive type: {label}",
                         hint=f"fetch takes a folder or an archive ({', '.join(ARCHIVE_SUFFIXES)})")  # fmt: skip


def _bad_name(name: str) -> str | None:
    """Why an archive member's path (or a link's target) is unsafe, or None."""
    name = name.replace("\\", "/")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "absolute path"
    if ".." in name.split("/"):
        return "'..' in the path"
    return None


def _check_tar(tf: tarfile.TarFile, label: str) -> None:
    """Refuse the whole archive if any member could write outside the destination (before extracting anything)."""
    members = tf.getmembers()
    symlinks = {posixpath.normpath(m.name) for m in members if m.issym()}

    def through_symlink(path: str) -> bool:
        parts = posixpath.normpath(path).split("/")
        return any("/".join(parts[:i]) in symlinks for i in range(1, len(parts)))

    for m in members:
        why = _bad_name(m.name) or ("device or fifo" if m.isdev() else None)
        why = why or ("path goes through a symlink" if through_symlink(m.name) else None)
        if not why and (m.issym() or m.islnk()):
            target = m.linkname.replace("\\", "/")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(m.name) if m.issym() else "", target))
            if _bad_name(target) == "absolute path" or resolved.split("/")[0] == ".." or (m.islnk() and through_symlink(resolved)):
                why = f"link to {m.linkname} outside the destination"
        _refuse(label, m.name, why)


def _refuse(label: str, member: str, why: str | None) -> None:
    if why:
        raise DetectionError(f"{label}: unsafe archive member {member!r} ({why}); nothing was extracted",
                             hint="use an archive from a trusted source, or extract it by hand and fetch the folder")  # fmt: skip


def _check_digest(sha256: str) -> str:
    digest = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise DetectionError(f"fetch.sha256 {sha256!r} is not a sha256 digest", hint="64 hex characters, as `sha256sum FILE` prints")
    return digest


def _warn_unpinned(url: str, digest: str) -> None:
    log.warning("%s is not pinned: its sha256 is %s; set `fetch.sha256: %s` in params.yaml (or pass --sha256) "
                "so that later downloads are verified", url, digest, digest)  # fmt: skip


def _check_overlap(source: Path, dest: Path) -> None:
    src, dst = source.resolve(), dest.resolve()
    if src == dst or dst in src.parents or src in dst.parents:
        raise DetectionError(f"fetch source {source} and destination {dest} overlap",
                             hint="fetch replaces the destination: choose a dest outside the source, e.g. data/raw")  # fmt: skip


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or linking not allowed
        shutil.copy2(src, dst)
