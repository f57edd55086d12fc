"""Small helpers of the CI stages, run by the host venv's Python from the repository root.

    python .ci/ci_helpers.py requirements     # aarch64 site-packages requirements, one per line
    python .ci/ci_helpers.py dist-info DIR    # binkit's metadata + entry points into DIR
    python .ci/ci_helpers.py elf-machine FILE...   # the ELF machine of each file ("aarch64", ...)
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: pip vendors the same parser
    from pip._vendor import tomli as tomllib

# Extras whose packages the torch-free stages install (the runtime itself needs none).
EXTRAS = ("test",)


def _project() -> dict:
    return tomllib.loads(Path("pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip()).group(0)


def requirements() -> list[str]:
    """The base dependencies plus the test extra, pinned to the versions in the host venv (the
    x86 run's versions) where installed there, else as pyproject.toml states them."""
    project = _project()
    reqs = list(project.get("dependencies", []))
    for extra in EXTRAS:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    out = []
    for req in reqs:
        if ";" in req:  # environment markers: not needed today; keep them as written
            out.append(req)
            continue
        try:
            out.append(f"{_name(req)}=={metadata.version(_name(req))}")
        except metadata.PackageNotFoundError:
            out.append(req)
    return out


def dist_info(dest: str) -> None:
    """What an install of binkit records for importlib.metadata: name, version and entry points
    (the registry discovers the first-party plugins through them). The code itself is imported
    from the source tree, as with an editable install."""
    project = _project()
    info = Path(dest) / f"{project['name']}-{project['version']}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    groups = dict(project.get("entry-points", {}))
    if project.get("scripts"):
        groups["console_scripts"] = project["scripts"]
    lines = []
    for group, entries in groups.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in entries.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    (info / "top_level.txt").write_text("")


_ELF_MACHINES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64"}


def elf_machine(paths: list[str]) -> None:
    for path in paths:
        head = Path(path).read_bytes()[:20]
        if head[:4] != b"\x7fELF":
            print(f"{path}: not ELF")
            continue
        order = "little" if head[5] == 1 else "big"
        code = int.from_bytes(head[18:20], order)
        print(f"{path}: {_ELF_MACHINES.get(code, code)}")


def main(argv: list[str]) -> None:
    cmd, *args = argv
    if cmd == "requirements":
        print("\n".join(requirements()))
    elif cmd == "dist-info":
        dist_info(args[0])
    elif cmd == "elf-machine":
        elf_machine(args)
    else:
        raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
