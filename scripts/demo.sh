#!/usr/bin/env bash
# Set up, then the main job: compile a spec, draw one, run a compiled spec on a tensor.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
BIN=.venv/bin

run() { echo "+ $*"; "$@"; }

mkdir -p out
run "$BIN/attnspec" compile specs/se.attn --param C=64 --input-shape 2,64,8,8
run "$BIN/attnspec" draw specs/cbam.attn -o out/cbam.svg
run "$BIN/python" -c "import attnspec, torch; print(attnspec.load('se', C=64)(torch.randn(2,64,8,8)).shape)"
