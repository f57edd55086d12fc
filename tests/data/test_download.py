"""Archive download and extraction against a local HTTP server on 127.0.0.1 (never the network)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from binkit.data import download as dl
from binkit.data import speech_commands as sc
from binkit.errors import DatasetError


def wav_bytes(n: int = 800) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, (0.1 * np.sin(np.arange(n) / 5.0)).astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def make_archive(members: dict[str, bytes], *, prefix: str = "./") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(prefix + name if not name.startswith(("/", "..")) else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tiny_tree_archive() -> bytes:
    members = {}
    for word in ("yes", "no", "cat"):
        for spk in ("59a26c7f", "18980f0a", "a9c93012"):
            members[f"{word}/{spk}_nohash_0.wav"] = wav_bytes()
    members["_background_noise_/white_noise.wav"] = wav_bytes(4000)
    members["validation_list.txt"] = b"yes/59a26c7f_nohash_0.wav\nno/59a26c7f_nohash_0.wav\ncat/59a26c7f_nohash_0.wav\n"
    members["testing_list.txt"] = b"yes/18980f0a_nohash_0.wav\nno/18980f0a_nohash_0.wav\ncat/18980f0a_nohash_0.wav\n"
    # a big incompressible member so the archive is worth resuming
    members["_background_noise_/white_noise_long.raw"] = np.random.default_rng(0).bytes(200_000)
    return make_archive(members)


class Server:
    """A range-capable static server; ``mode`` bends its behaviour for failure tests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mode = "normal"  # "normal" | "no_range" | "truncate"
        self.requests: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                outer.requests.append({"path": self.path, **{k: v for k, v in self.headers.items()}})
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and outer.mode != "no_range":
                    start = int(rng.removeprefix("bytes=").split("-")[0])
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
                if outer.mode == "truncate":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def archive_bytes():
    return tiny_tree_archive()


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_download_and_extract(server, archive_bytes, tmp_path):
    server.files["/speech_commands_v0.02.tar.gz"] = archive_bytes
    digest = hashlib.sha256(archive_bytes).hexdigest()
    root = tmp_path / "data"
    out = dl.download_speech_commands(root, url=server.url("/speech_commands_v0.02.tar.gz"), checksum=digest,
                                      progress=False)
    assert out == root / "speech_commands_v0.02"
    assert (out / "yes" / "59a26c7f_nohash_0.wav").read_bytes() == wav_bytes()
    assert (out / dl.MARKER).is_file()
    assert leftovers(root) == ["speech_commands_v0.02", "speech_commands_v0.02.tar.gz"]
    tree = sc.scan(root)  # the download lands where scan looks
    assert tree.root == out and tree.has_lists
    task = sc.build_task(tree)
    assert task.info["split_source"] == "lists"

    # second call: a no-op, no request at all
    n = len(server.requests)
    assert dl.download_speech_commands(root, url=server.url("/speech_commands_v0.02.tar.gz"), checksum=digest,
                                       progress=False) == out
    assert len(server.requests) == n


def test_wrong_checksum_leaves_nothing(server, archive_bytes, tmp_path):
    server.files["/a.tar.gz"] = archive_bytes
    with pytest.raises(DatasetError) as err:
        dl.download_speech_commands(tmp_path, url=server.url("/a.tar.gz"), checksum="0" * 64, progress=False)
    msg = str(err.value)
    assert "0" * 64 in msg and hashlib.sha256(archive_bytes).hexdigest() in msg
    assert leftovers(tmp_path) == []


def test_resume_with_range(server, archive_bytes, tmp_path):
    server.files["/speech_commands_v0.01.tar.gz"] = archive_bytes
    n = len(archive_bytes) // 3
    (tmp_path / "speech_commands_v0.01.tar.gz.part").write_bytes(archive_bytes[:n])
    out = dl.download_speech_commands(tmp_path, "v1", url=server.url("/speech_commands_v0.01.tar.gz"),
                                      checksum=hashlib.sha256(archive_bytes).hexdigest(), progress=False)
    assert [r.get("Range") for r in server.requests] == [f"bytes={n}-"]
    assert (tmp_path / "speech_commands_v0.01.tar.gz").read_bytes() == archive_bytes
    assert (out / "no" / "a9c93012_nohash_0.wav").is_file()


def test_restart_when_server_ignores_range(server, archive_bytes, tmp_path):
    server.files["/a.tar.gz"] = archive_bytes
    server.mode = "no_range"
    (tmp_path / "a.tar.gz.part").write_bytes(b"stale bytes that must not survive")
    dl.download_file(server.url("/a.tar.gz"), tmp_path / "a.tar.gz",
                     sha256=hashlib.sha256(archive_bytes).hexdigest(), progress=False)
    assert server.requests[0].get("Range") is not None
    assert (tmp_path / "a.tar.gz").read_bytes() == archive_bytes


def test_complete_part_answered_416(server, archive_bytes, tmp_path):
    server.files["/a.tar.gz"] = archive_bytes
    (tmp_path / "a.tar.gz.part").write_bytes(archive_bytes)
    dl.download_file(server.url("/a.tar.gz"), tmp_path / "a.tar.gz",
                     sha256=hashlib.sha256(archive_bytes).hexdigest(), progress=False)
    assert (tmp_path / "a.tar.gz").read_bytes() == archive_bytes


def test_interrupted_download_then_resume(server, archive_bytes, tmp_path):
    server.files["/a.tar.gz"] = archive_bytes
    server.mode = "truncate"
    digest = hashlib.sha256(archive_bytes).hexdigest()
    with pytest.raises(DatasetError, match="interrupted.*call again to resume"):
        dl.download_speech_commands(tmp_path, url=server.url("/a.tar.gz"), checksum=digest, progress=False)
    # the partial download is kept for resuming; no tree, no temp folder
    assert leftovers(tmp_path) == ["a.tar.gz.part"]
    assert 0 < (tmp_path / "a.tar.gz.part").stat().st_size < len(archive_bytes)
    server.mode = "normal"
    out = dl.download_speech_commands(tmp_path, url=server.url("/a.tar.gz"), checksum=digest, progress=False)
    assert server.requests[-1].get("Range", "").startswith("bytes=")
    assert (out / "yes").is_dir()


def test_http_error(server, tmp_path):
    with pytest.raises(DatasetError, match="HTTP 404"):
        dl.download_speech_commands(tmp_path, url=server.url("/missing.tar.gz"), checksum="1" * 64, progress=False)
    assert leftovers(tmp_path) == []


def test_truncated_archive_leaves_no_tree(server, archive_bytes, tmp_path):
    # the bytes arrive whole but the archive itself is cut: extraction fails, no half tree
    bad = archive_bytes[: len(archive_bytes) // 2]
    server.files["/a.tar.gz"] = bad
    with pytest.raises(DatasetError, match="cannot extract"):
        dl.download_speech_commands(tmp_path, url=server.url("/a.tar.gz"), checksum=hashlib.sha256(bad).hexdigest(),
                                    progress=False)
    assert leftovers(tmp_path) == ["a.tar.gz"]


@pytest.mark.parametrize("name", ["../evil.wav", "/tmp/evil.wav", "yes/../../evil.wav"])
def test_path_traversal_refused(server, tmp_path, name):
    data = make_archive({"yes/a_nohash_0.wav": wav_bytes(), name: b"pwned"})
    server.files["/a.tar.gz"] = data
    root = tmp_path / "root"
    with pytest.raises(DatasetError, match="refusing archive member"):
        dl.download_speech_commands(root, url=server.url("/a.tar.gz"), checksum=hashlib.sha256(data).hexdigest(),
                                    progress=False)
    assert leftovers(root) == ["a.tar.gz"]
    assert not (tmp_path / "evil.wav").exists()


def test_symlink_out_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("yes/link.wav")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    (tmp_path / "a.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(DatasetError, match="points outside"):
        dl.extract_archive(tmp_path / "a.tar.gz", tmp_path / "out")
    assert leftovers(tmp_path) == ["a.tar.gz"]


def test_unverified_archive_warns(server, archive_bytes, tmp_path):
    server.files["/speech_commands_test_set_v0.01.tar.gz"] = archive_bytes
    with pytest.warns(UserWarning, match="unverified"):
        dl.download_speech_commands(tmp_path, "v1", test_set=True,
                                    url=server.url("/speech_commands_test_set_v0.01.tar.gz"), progress=False)


def test_official_name_gets_official_checksum(server, archive_bytes, tmp_path):
    # a mirror serving a file under an official name is checked against the official digest
    server.files["/speech_commands_v0.02.tar.gz"] = archive_bytes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DatasetError, match=dl.ARCHIVES[("v2", False)].sha256):
            dl.download_speech_commands(tmp_path, url=server.url("/speech_commands_v0.02.tar.gz"), progress=False)
    assert leftovers(tmp_path) == []


def test_incomplete_destination_refused(tmp_path):
    (tmp_path / "speech_commands_v0.02").mkdir()
    with pytest.raises(DatasetError, match="not a complete download"):
        dl.download_speech_commands(tmp_path, progress=False)


def test_existing_torchaudio_tree_reused(tmp_path):
    inner = tmp_path / "SpeechCommands" / "speech_commands_v0.02"
    inner.mkdir(parents=True)
    (inner / "validation_list.txt").write_text("")
    (inner / "testing_list.txt").write_text("")
    assert dl.download_speech_commands(tmp_path, progress=False) == inner


def test_official_table():
    assert dl.ARCHIVES[("v1", False)].url == "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz"
    assert dl.ARCHIVES[("v2", False)].sha256 == "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"
    with pytest.raises(ValueError, match="version"):
        dl.download_speech_commands("/nonexistent", "v3")
    with pytest.raises(ValueError, match="SHA-256"):
        dl.download_speech_commands("/nonexistent", checksum="abc")
