#!/usr/bin/env bash
# Set up, then run the tests; arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
status=0
.venv/bin/python -m pytest -q "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "test: error: pytest ran no tests (exit code 5: none collected, or all deselected)" >&2
fi
exit "$status"
