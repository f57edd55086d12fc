"""Download and extract the Speech Commands archives, only when asked.

Guarantees:

- **Verified.** The archive's SHA-256 is checked before extraction. The URLs and checksums of the
  two main archives are torchaudio 2.11's (``torchaudio/datasets/speechcommands.py``,
  ``_CHECKSUMS``). torchaudio has none for the 12-class test archives: the V2 one is TFDS's
  (``tensorflow_datasets/url_checksums/speech_commands.txt``); the V1 one is unverified and a
  warning says so. A mismatch deletes the file and raises :class:`DatasetError` quoting both hashes.
- **Resumable.** Bytes go to ``<archive>.part``; a later call sends ``Range: bytes=<size>-`` and
  appends on ``206 Partial Content``, or starts over on ``200``. An interrupted transfer keeps the
  ``.part`` and says so.
- **Atomic.** The archive is extracted into a temporary folder beside the destination, which is
  renamed into place (``os.replace``) only after every member was written; on any error the
  temporary folder is removed, so no half tree is ever visible. Members with an absolute path, a
  ``..`` component, a link leaving the tree, or a device node are refused.

Layout: ``<root>/<name>/`` where ``<name>`` is the archive name without ``.tar.gz``
(``speech_commands_v0.02``, ``speech_commands_test_set_v0.02``); the archives are flat, as
torchaudio extracts them. A tree already there (or at torchaudio's
``<root>/SpeechCommands/<name>/``) is reused without touching the network.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from binkit.errors import DatasetError

__all__ = ["ARCHIVES", "Archive", "download_speech_commands", "download_file", "extract_archive"]

_TF_HOST = "http://download.tensorflow.org/data/"
MARKER = ".binkit_download.json"  # written inside a finished extraction: url and sha256
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """An official archive: URL and SHA-256 (``None``: no published checksum known)."""

    url: str
    sha256: str | None


# (version, test_set) -> archive
ARCHIVES: dict[tuple[str, bool], Archive] = {
    # torchaudio 2.11 torchaudio/datasets/speechcommands.py, _CHECKSUMS
    ("v1", False): Archive(_TF_HOST + "speech_commands_v0.01.tar.gz",
                           "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d"),
    ("v2", False): Archive(_TF_HOST + "speech_commands_v0.02.tar.gz",
                           "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"),
    # tensorflow_datasets url_checksums/speech_commands.txt (112,563,277 bytes); torchaudio has none
    ("v2", True): Archive(_TF_HOST + "speech_commands_test_set_v0.02.tar.gz",
                          "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df"),
    # no published checksum known: downloaded unverified, with a warning
    ("v1", True): Archive(_TF_HOST + "speech_commands_test_set_v0.01.tar.gz", None),
}


def _archive_stem(name: str) -> str:
    for ext in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar"):
        if name.endswith(ext):
            return name[: -len(ext)]
    raise ValueError(f"cannot tell the archive type of {name!r}; expected .tar.gz, .tgz, .tar.bz2, .tar.xz or .tar")


def _check_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.lower().removeprefix("sha256:")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"checksum must be a SHA-256 hex digest (64 hex digits), got {value!r}")
    return value


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _progress_bar(enabled: bool, total: int | None, initial: int, desc: str):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional
        return None
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                leave=False)


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": "binkit"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def download_file(url: str, dest: str | os.PathLike[str], *, sha256: str | None = None, progress: bool = True,
                  timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` through ``dest + ".part"``, resuming a partial file.

    The finished file is checked against ``sha256`` (when given) and only then renamed to
    ``dest``. An interrupted transfer keeps the ``.part`` so the next call resumes it.

    Raises:
        DatasetError: HTTP or network error, short transfer, or checksum mismatch (the bad file is
            deleted; the message gives expected and actual digests).
    """
    dest = Path(dest)
    sha256 = _check_sha256(sha256)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):  # a second pass only after an unusable .part was thrown away
        offset = part.stat().st_size if part.exists() else 0
        try:
            resp = _open(url, offset, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset and attempt == 0:
                # the server has nothing past our offset: the .part may already be whole
                if sha256 is not None and _sha256(part) == sha256:
                    os.replace(part, dest)
                    return dest
                part.unlink()
                continue
            raise DatasetError(f"downloading {url} failed: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DatasetError(f"cannot download {url}: {reason}") from None
        with resp:
            status = getattr(resp, "status", 200)
            if offset and status == 206:
                content_range = resp.headers.get("Content-Range", "")
                if not content_range.startswith(f"bytes {offset}-"):
                    raise DatasetError(f"downloading {url}: asked to resume at byte {offset}, "
                                       f"the server answered Content-Range {content_range!r}")
                mode = "ab"
            elif status == 200:
                offset, mode = 0, "wb"  # no range support (or a fresh start): start over
            else:
                raise DatasetError(f"downloading {url} failed: unexpected HTTP status {status}")
            length = resp.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            received = offset
            bar = _progress_bar(progress, total, offset, dest.name)
            try:
                with open(part, mode) as f:
                    while chunk := resp.read(_CHUNK):
                        f.write(chunk)
                        received += len(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
            except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                raise DatasetError(f"download of {url} interrupted after {received} bytes ({exc}); "
                                   f"{part} is kept: call again to resume") from None
            finally:
                if bar is not None:
                    bar.close()
        if total is not None and received != total:
            raise DatasetError(f"download of {url} interrupted after {received} of {total} bytes; "
                               f"{part} is kept: call again to resume")
        break
    if sha256 is not None:
        actual = _sha256(part)
        if actual != sha256:
            part.unlink(missing_ok=True)
            raise DatasetError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}; "
                               "the downloaded file was deleted")
    os.replace(part, dest)
    return dest


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise DatasetError(f"{archive}: refusing archive member {name!r}: an absolute path or '..' "
                           "would write outside the destination")
    if member.issym() or member.islnk():
        target = member.linkname
        tparts = PurePosixPath(target.replace("\\", "/")).parts
        if target.startswith(("/", "\\")) or ".." in tparts:
            raise DatasetError(f"{archive}: refusing link member {name!r} -> {target!r}: it points outside "
                               "the destination")
    elif not (member.isfile() or member.isdir()):
        raise DatasetError(f"{archive}: refusing archive member {name!r}: not a regular file or folder")


def extract_archive(archive: str | os.PathLike[str], dest: str | os.PathLike[str], *,
                    marker: dict | None = None) -> Path:
    """Extract ``archive`` so that ``dest`` appears whole or not at all.

    Members go to a temporary folder beside ``dest``, which replaces ``dest`` (that must not exist)
    once every member is written. ``marker``, when given, is written as ``dest/.binkit_download.json``.

    Raises:
        DatasetError: unreadable or truncated archive, an unsafe member, or ``dest`` exists.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise DatasetError(f"cannot extract {archive} to {dest}: it already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent))
    try:
        with tarfile.open(archive, "r|*") as tar:  # stream: one decompression pass
            for member in tar:
                _check_member(member, archive)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.12: belt and braces
                    tar.extract(member, tmp, filter="data")
                else:  # pragma: no cover
                    tar.extract(member, tmp)
        os.chmod(tmp, 0o755)  # mkdtemp made it 0700; the tree should read like any extracted folder
        if marker is not None:
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, dest)
    except DatasetError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise DatasetError(f"cannot extract {archive} ({type(exc).__name__}: {exc}); nothing was written "
                           f"to {dest}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _looks_complete(folder: Path, test_set: bool) -> bool:
    if (folder / MARKER).is_file():
        return True
    if test_set:
        from binkit.data.speech_commands import KEYWORDS_12, SILENCE, UNKNOWN

        return all((folder / d).is_dir() for d in (*KEYWORDS_12, SILENCE, UNKNOWN))
    return (folder / "validation_list.txt").is_file() and (folder / "testing_list.txt").is_file()


def download_speech_commands(
    root: str | os.PathLike[str],
    version: Literal["v1", "v2"] = "v2",
    *,
    url: str | None = None,
    checksum: str | None = None,
    test_set: bool = False,
    progress: bool = True,
    keep_archive: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download and extract a Speech Commands archive under ``root``; returns the extracted folder.

    Args:
        root: parent folder; the tree goes to ``root/<archive name without .tar.gz>``.
        version: ``"v1"`` (``speech_commands_v0.01``) or ``"v2"`` (``speech_commands_v0.02``).
        url: another source (a mirror); ``checksum`` then defaults to the official one only if the
            file name is an official one, else the archive is unverified (with a warning).
        checksum: expected SHA-256 hex digest, overriding the built-in one.
        test_set: fetch the official 12-class test archive (``speech_commands_test_set_v0.0X``).
        progress: show a tqdm bar when tqdm is installed.
        keep_archive: keep ``root/<archive>`` after extraction (a re-extraction needs no download).
        timeout: socket timeout in seconds.

    A complete tree already at the destination (our marker file, or the list files / the 12
    class folders of a test archive), also at torchaudio's ``root/SpeechCommands/<name>``, is
    returned at once. A verified archive already in ``root`` is extracted without downloading.

    Raises:
        DatasetError: download, checksum or extraction failure, or an incomplete folder already at
            the destination (remove it and call again).
        ValueError: bad ``version`` or ``checksum``.
    """
    if version not in ("v1", "v2"):
        raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")
    official = ARCHIVES[(version, bool(test_set))]
    by_name = {Path(a.url).name: a for a in ARCHIVES.values()}
    if url is None:
        url = official.url
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    if not name:
        raise ValueError(f"cannot tell the archive file name from url {url!r}")
    expected = _check_sha256(checksum) if checksum is not None else (by_name[name].sha256 if name in by_name else None)
    stem = _archive_stem(name)
    root = Path(root).expanduser().absolute()
    dest = root / stem
    for candidate in (dest, root / "SpeechCommands" / stem):
        if candidate.is_dir() and _looks_complete(candidate, test_set):
            return candidate
    if dest.exists():
        raise DatasetError(f"{dest} exists but is not a complete download (no {MARKER}, no list files); "
                           "remove it and call again")
    if expected is None:
        warnings.warn(f"no SHA-256 checksum is known for {url}: the archive is downloaded unverified",
                      stacklevel=2)
    archive = root / name
    if archive.is_file() and expected is not None and _sha256(archive) != expected:
        archive.unlink()  # a stale or corrupt archive from an earlier run: fetch it again
    if not archive.is_file():
        download_file(url, archive, sha256=expected, progress=progress, timeout=timeout)
    digest = expected if expected is not None else _sha256(archive)
    marker = {"url": url, "archive": name, "sha256": digest, "verified": expected is not None}
    extract_archive(archive, dest, marker=marker)
    if not keep_archive:
        archive.unlink(missing_ok=True)
    return dest
