# Shared helpers of the CI stages (.ci/simde, .ci/aarch64); sourced, not run.
# Environment:
#   BINKIT_VENV      the project venv (default .venv, as ./run)
#   BINKIT_CI_CACHE  downloads kept between runs (default ${XDG_CACHE_HOME:-$HOME/.cache}/binkit-ci):
#                    the arm64 root filesystem and the aarch64 site-packages; delete it to start over
#   BINKIT_CI_KEEP=1 keep the scratch build directory (its path is logged)

VENV=${BINKIT_VENV:-.venv}
case $VENV in /*) ;; *) VENV=$PWD/$VENV ;; esac  # sourced from the repository root
PY=$VENV/bin/python
CI_CACHE=${BINKIT_CI_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/binkit-ci}

log() { printf '[ci %s +%ds] %s\n' "${CI_STAGE:-?}" "$SECONDS" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# apt_install PKG...: install the named Debian packages (as root, never touching dpkg's
# architecture list). Callers pass only what is missing; nothing to do for an empty list.
apt_install() {
  (($#)) || return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing system packages: $* (install them with apt-get as root, then rerun)"
  fi
  log "installing system packages: $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# make_scratch: a fresh scratch directory in $SCRATCH, removed on exit unless BINKIT_CI_KEEP=1.
make_scratch() {
  SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/binkit-ci-${CI_STAGE}.XXXXXX")
  if [ "${BINKIT_CI_KEEP:-0}" = 1 ]; then
    log "scratch directory (kept): $SCRATCH"
  else
    trap 'rm -rf "$SCRATCH"' EXIT
  fi
}

# stage_sources DIR: copy setup.py and backends/ (sources only: no built .so, no generated .c)
# into DIR, so a build there never touches the working tree's own build.
stage_sources() {
  "$PY" - "$1" <<'PY' || die "copying the sources to $1"
import shutil, sys
from pathlib import Path

dest = Path(sys.argv[1])
dest.mkdir(parents=True, exist_ok=True)
shutil.copy2("setup.py", dest / "setup.py")


def ignore(directory, names):
    # Built or generated files stay behind; a .c file kept next to headers is a source.
    keep_c = Path(directory).name == "include"
    return [n for n in names if n in ("__pycache__", "build") or n.endswith((".so", ".pyc"))
            or (n.endswith(".c") and not keep_c)]


shutil.copytree("backends", dest / "backends", ignore=ignore, dirs_exist_ok=True)
PY
}

# build_packages SRC OUT [ENV=VALUE...]: `setup.py build_ext` of the sources staged in SRC, with the
# given environment, output in OUT; then the packages' own files (Python modules, headers) are
# copied beside the built modules, so OUT is an importable package root. Log in OUT.build.log.
build_packages() {
  local src=$1 out=$2
  shift 2
  (cd "$src" && env "$@" "$PY" setup.py -q build_ext --build-lib "$out" --build-temp "$out.tmp" \
     > "$out.build.log" 2>&1) || { cat "$out.build.log" >&2; die "building the extensions (log above)"; }
  grep -E 'warning:|error:' "$out.build.log" >&2 || true
  cp -a "$src/backends/." "$out/"
}

# The tests both stages run by default: the engine's and the bit conventions', and the torch-free
# runtime around them (artifact loading, audio, the torch-free import guarantees), which with
# backend "auto" run on the engine too.
CI_TESTS=(tests/backends/binkit_neon tests/runtime/test_bits.py tests/runtime/test_artifact.py
          tests/runtime/test_audio.py tests/runtime/test_torch_free.py tests/runtime/test_stream.py)

# pytest_args DEFAULT_PATHS... -- ARGS...: sets PYTEST_ARGS to ARGS when they name a test path
# (an argument not starting with '-'), else to the default paths followed by ARGS (options).
pytest_args() {
  local defaults=() arg
  while (($#)) && [ "$1" != -- ]; do defaults+=("$1"); shift; done
  (($#)) && shift
  PYTEST_ARGS=("$@")
  for arg in "$@"; do
    case $arg in -*) ;; *) return 0 ;; esac
  done
  PYTEST_ARGS=("${defaults[@]}" "$@")
}

# The in-process pytest plugin (.ci/binkit_ci_plugin.py) is imported from here.
CI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
