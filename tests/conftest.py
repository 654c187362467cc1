"""Shared test helpers: the `--update-golden` option and the `golden` fixture.

Golden files (DOT, generated code, error text, ...) live under tests/golden/ and change only
when the suite runs with `--update-golden`; every such change is read in review.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/ files with the actual output")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """`golden(relative_path, actual)`: compare `actual` with tests/golden/<relative_path>,
    or rewrite that file when pytest runs with --update-golden."""
    update = request.config.getoption("--update-golden")

    def check(relative_path: str, actual: str) -> None:
        path = GOLDEN / relative_path
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_file() or path.read_bytes() != actual.encode():
                path.write_bytes(actual.encode())  # bytes: no newline translation
            return
        if not path.is_file():
            pytest.fail(f"golden file tests/golden/{relative_path} is missing; run "
                        f"`pytest --update-golden` to create it, then review it", pytrace=False)
        expected = path.read_bytes().decode()
        if actual != expected:
            diff = difflib.unified_diff(
                expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                f"tests/golden/{relative_path} (expected)", "actual")
            pytest.fail(f"output differs from tests/golden/{relative_path} (run "
                        f"`pytest --update-golden` if the change is intended):\n"
                        + "".join(line if line.endswith("\n") else line + "\n"
                                  for line in diff), pytrace=False)

    return check
