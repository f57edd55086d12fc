"""A Speech Commands tree's file facts without its audio, for training where the tree cannot be made.

binkit's decode caches (binkit/data/cache.py) are keyed by a fingerprint over every clip's path,
size and mtime, and the dataset reads each WAV header when it scans the tree. A machine that
cannot synthesize the corpus (a lent GPU machine has no espeak-ng or flite) can still train on the
caches built here if it holds a tree with the same facts:

    python benchmarks/device/tree_facts.py save data/speech_commands_synth_full .device/tree.tar.xz
    # there, with the tree at the same absolute path:
    python benchmarks/device/tree_facts.py make .device/tree.tar.xz data/speech_commands_synth_full

``save`` keeps the non-WAV files (list files, manifest) whole and each WAV as its path, size,
mtime and header up to the data chunk; ``make`` writes WAVs of that header and silence (sparse),
with the same sizes and mtimes. The audio itself is never needed there: the caches hold it.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from pathlib import Path


def save(root: Path, pack: Path) -> int:
    facts, others = [], []
    for p in sorted(root.rglob("*")):
        if p.is_dir():
            continue
        if p.suffix != ".wav":
            others.append(p)
            continue
        st = p.stat()
        raw = p.read_bytes()
        end = raw.find(b"data")
        if end < 0:
            raise SystemExit(f"{p}: no data chunk")
        facts.append([str(p.relative_to(root)), st.st_size, st.st_mtime_ns, raw[:end + 8].hex()])
    tmp = pack.with_name(pack.name + ".part")
    try:
        with tarfile.open(tmp, "w:xz") as tar:
            for p in others:
                tar.add(p, arcname="files/" + str(p.relative_to(root)))
            data = json.dumps(facts).encode()
            info = tarfile.TarInfo("facts.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, pack)
    finally:
        tmp.unlink(missing_ok=True)
    return len(facts)


def make(pack: Path, root: Path) -> int:
    with tarfile.open(pack) as tar:
        facts = json.load(tar.extractfile("facts.json"))
        for m in tar.getmembers():
            if m.name.startswith("files/"):
                m.name = m.name[len("files/"):]
                tar.extract(m, root, filter="data")
    for rel, size, mtime, head in facts:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as f:
            f.write(bytes.fromhex(head))
            f.truncate(size)
        os.utime(p, ns=(mtime, mtime))
    return len(facts)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("save", "make"):
        print(__doc__, file=sys.stderr)
        print("usage: tree_facts.py save TREE PACK | make PACK TREE", file=sys.stderr)
        return 2
    if argv[0] == "save":
        n = save(Path(argv[1]), Path(argv[2]))
        print(f"{n} WAV facts of {argv[1]} in {argv[2]}")
    else:
        n = make(Path(argv[1]), Path(argv[2]))
        print(f"{n} silent WAVs with the original facts under {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
