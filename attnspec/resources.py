"""Locate the grammar and the shipped specs: inside the installed package, else the checkout."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _locate(name: str) -> Path:
    # A wheel carries attnspec/<name>; an editable install or a checkout has <name> beside
    # the package.
    for base in (_PACKAGE, _PACKAGE.parent):
        if (base / name).is_dir():
            return base / name
    raise FileNotFoundError(f"attnspec is installed without its {name}/ directory "
                            f"(looked in {_PACKAGE})")


def grammar_file() -> Path:
    """The lark grammar, grammar/attnspec.lark."""
    return _locate("grammar") / "attnspec.lark"


def specs_dir() -> Path:
    """The directory of shipped .attn specs."""
    return _locate("specs")
