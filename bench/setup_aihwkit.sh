#!/usr/bin/env bash
# Build IBM aihwkit 1.2.0 (CPU only) from its PyPI sdist into a virtualenv
# kept outside the repository, for the comparison benchmarks in bench/.
#
# Usage:  bash bench/setup_aihwkit.sh
#         AIHWKIT_HOME=/some/dir bash bench/setup_aihwkit.sh
#
# The venv is $AIHWKIT_HOME/venv (default ~/.cache/labctl-aihwkit/venv); the
# script prints its python path on the last line.  It is idempotent: when that
# python already imports aihwkit nothing is done.  aihwkit 1.2.0 has no cp311
# wheel, so pip compiles it (about 4 min on 2 cores) against the CPU torch
# wheel, which is installed first and pinned in every pip call so that pip
# never swaps in a CUDA build.  Needs Debian's libopenblas-dev (installed here
# with apt-get when running as root).
set -euo pipefail

AIHWKIT_VERSION=1.2.0
TORCH_SPEC="torch==2.13.0+cpu"
TORCHVISION_SPEC="torchvision==0.28.0"   # the release paired with torch 2.13
AIHWKIT_HOME=${AIHWKIT_HOME:-$HOME/.cache/labctl-aihwkit}
VENV=$AIHWKIT_HOME/venv
PY=$VENV/bin/python
BASE_PYTHON=${PYTHON:-python3}

log() { echo "[setup_aihwkit] $*" >&2; }

if [[ -x $PY ]] && "$PY" -c "import aihwkit" 2>/dev/null; then
    log "aihwkit already importable in $VENV"
    echo "$PY"
    exit 0
fi

if ! dpkg-query -W -f='${Status}' libopenblas-dev 2>/dev/null | grep -q "ok installed"; then
    if [[ $(id -u) -ne 0 ]]; then
        log "libopenblas-dev is missing; install it (apt-get install libopenblas-dev) and rerun"
        exit 1
    fi
    log "installing libopenblas-dev"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y libopenblas-dev
fi

if [[ ! -x $PY ]]; then
    log "creating $VENV with $BASE_PYTHON"
    mkdir -p "$AIHWKIT_HOME"
    "$BASE_PYTHON" -m venv "$VENV"
fi
# The build runs mypy's `stubgen` as a post-build step and reads VIRTUAL_ENV
# in CMakeLists.txt, so work as if the venv were activated.
export VIRTUAL_ENV=$VENV
export PATH=$VENV/bin:$PATH
PIP=("$PY" -m pip install --no-input)

log "installing $TORCH_SPEC and the build tools"
"${PIP[@]}" "$TORCH_SPEC" numpy
"${PIP[@]}" "$TORCH_SPEC" "setuptools>=77" wheel "scikit-build>=0.18.1" \
    "pybind11>=3.0.1" "cmake>=4.2.1" ninja mypy

log "building aihwkit $AIHWKIT_VERSION from its sdist (several minutes)"
jobs=$(nproc)
export CMAKE_BUILD_PARALLEL_LEVEL=$jobs MAKEFLAGS=-j$jobs
start=$(date +%s)
"${PIP[@]}" --no-build-isolation --no-binary aihwkit \
    "aihwkit==$AIHWKIT_VERSION" "$TORCH_SPEC" "$TORCHVISION_SPEC"
log "aihwkit built and installed in $(( $(date +%s) - start )) s"

"$PY" -c "import aihwkit, torch; print('aihwkit', aihwkit.__version__, 'torch', torch.__version__)" >&2
echo "$PY"
