"""attnspec: attention mechanisms as declarative specs, compiled to torch modules."""

from .api import build_ir, compile_file, compile_text, parse, shipped
from .api import load_spec as load
from .diagnostics import SpecError, UsageError

__all__ = ["parse", "build_ir", "compile_file", "compile_text", "load", "shipped",
           "SpecError", "UsageError"]
__version__ = "0.1.0"
