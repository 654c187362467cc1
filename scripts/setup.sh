#!/usr/bin/env bash
# Set up everything attnspec needs on a fresh Debian machine (as root): graphviz, .venv with
# a CPU build of torch, attnspec installed editable with its test extra. Safe to re-run:
# steps whose result is already there are skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=$VENV/bin/python
# torch first and pinned: this version's CPU wheel is on the machine's disk (pip's find-links);
# left to resolve `torch>=2.4` on its own, pip would download a CUDA build of several GB.
TORCH=2.13.0
STAMP=$VENV/.attnspec-setup

say() { echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

# graphviz's `dot` renders the diagrams.
if ! command -v dot >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "graphviz's 'dot' is missing and apt-get is not available; install graphviz"
    say "installing graphviz with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq graphviz >/dev/null || die "apt-get install graphviz failed"
    command -v dot >/dev/null 2>&1 || die "graphviz installed but 'dot' is still not on PATH"
fi

# The virtual environment; recreated if its interpreter no longer runs.
if ! "$PY" -c '' >/dev/null 2>&1; then
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
        || die "attnspec needs Python >= 3.11 as python3 (found: $(python3 --version 2>&1))"
    say "creating .venv"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    rm -f "$STAMP"
fi

# Some machines' pip config names local index folders that may be absent; pip warns once per
# package about each. Drop only those lines.
pip_install() {
    "$PY" -m pip install --quiet --disable-pip-version-check "$@" \
        2> >(grep -v "^WARNING: Location 'file://.*' is ignored" >&2)
}

if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
    say "installing torch==$TORCH"
    pip_install "torch==$TORCH" || die "pip install torch==$TORCH failed"
    say "torch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
fi

# attnspec itself, editable, with the test extra. Redone when pyproject.toml changes or the
# checkout moves (the editable install points at this directory).
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $ROOT"
if [[ ! -x $VENV/bin/attnspec || ! -f $STAMP || "$(cat "$STAMP")" != "$want" ]]; then
    say "installing attnspec (editable, with [test])"
    pip_install -e '.[test]' || die "pip install -e '.[test]' failed"
    [[ -x $VENV/bin/attnspec ]] || die "the install made no .venv/bin/attnspec console script"
    echo "$want" >"$STAMP"
fi
