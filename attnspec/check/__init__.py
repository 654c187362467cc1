"""Stage: Program → IR. Binds parameters, resolves names, checks types and infers every
tensor's named-axis type before any tensor exists, building the IR as it goes. Every
problem is collected; they are raised together as one SpecError.

The checker is one class in seven files: base (state, diagnostics, IR helpers,
parameters), expressions (values, arithmetic, `>>`), calls (operators, definitions applied
to tensors, layers and their modules), formulation (the attention's parts), terms (the
weight's terms and normalisers), positions (terms of relative position, their encodings,
position ranges) and blocks.
"""

from __future__ import annotations

from typing import Any

from ..diagnostics import SpecError, did_you_mean
from ..ir import IR
from ..program import Program
from .base import NORMALISERS, PUBLIC_OPS, RANGES, CheckerBase, raise_usage
from .blocks import Blocks
from .calls import Calls
from .expressions import Expressions
from .formulation import Formulation
from .positions import Positions
from .terms import Terms

__all__ = ["build_ir", "check_program", "Checker", "PUBLIC_OPS", "RANGES", "NORMALISERS"]


class Checker(Formulation, Terms, Positions, Expressions, Calls, Blocks, CheckerBase):
    """Checks one definition and builds its IR."""


def build_ir(program: Program, params: dict[str, Any], name: str | None = None,
             check_only: bool = False) -> IR:
    """Elaborate one definition of `program` with `params` into an IR."""
    if name is not None and name not in program.definitions:
        raise_usage(f"no definition `{name}` in {program.main.file}",
                    did_you_mean(name, program.definitions))
    definition = program.definitions[name] if name else program.main_definition()
    checker = Checker(program, check_only)
    ir = checker.top(definition, params)
    if checker.diagnostics:
        raise SpecError(checker.diagnostics, program.sources)
    return ir.prune()


def check_program(program: Program) -> None:
    """Check every definition of the main file with its defaults, unknowns left open."""
    diagnostics = []
    for d in program.main.definitions:
        checker = Checker(program, check_only=True)
        checker.top(d, {})
        diagnostics += checker.diagnostics
    if diagnostics:
        raise SpecError(diagnostics, program.sources)
